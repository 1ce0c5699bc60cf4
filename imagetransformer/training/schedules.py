"""Learning-rate schedules.

`WarmupRsqrtDecay` is the schedule of the Image Transformer paper (and of Tensor2Tensor's
`linear_warmup * rsqrt_decay`): the learning rate rises linearly to its peak over `warmup_steps` updates, then
decays with the inverse square root of the update number.

```python
schedule = WarmupRsqrtDecay(peak_learning_rate=1e-3, warmup_steps=100)
optimizer = keras.optimizers.Adam(learning_rate=schedule, clipnorm=1.0)
```
It is registered with Keras, so optimizers (and models) that use it save and load with `safe_mode=True`.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="imagetransformer")
class WarmupRsqrtDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak_learning_rate`, then inverse-square-root decay.

    Keras calls a schedule with `step = optimizer.iterations`, the number of updates already applied (0 for the
    first update). With `n = step + 1`, the number of the update being computed, and `w = max(warmup_steps, 1)`:

        lr(step) = peak_learning_rate * min(n / w, sqrt(w / n))

    - warm-up: `n <= w` gives `peak * n / w`, rising linearly from `peak / w` (the first update is never wasted
      with a zero learning rate) to `peak` at update `n = w` (`step = warmup_steps - 1`);
    - decay: `n >= w` gives `peak * sqrt(w / n)`, so the rate halves every time the update number quadruples.

    `warmup_steps=0` (or 1) means no warm-up: `peak / sqrt(n)` from the first update on.

    Args:
        peak_learning_rate: the largest learning rate, reached at the end of the warm-up.
        warmup_steps: number of updates of linear warm-up (>= 0).
        name: optional name of the schedule.
    """

    def __init__(self, peak_learning_rate, warmup_steps, name=None):
        super().__init__()
        peak_learning_rate = float(peak_learning_rate)
        if not peak_learning_rate > 0:
            raise ValueError(f"learning_rate={peak_learning_rate!r} must be positive.")
        if int(warmup_steps) != warmup_steps or warmup_steps < 0:
            raise ValueError(f"warmup_steps={warmup_steps!r} must be an integer >= 0.")
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = int(warmup_steps)
        self.name = name

    def __call__(self, step):
        n = ops.cast(step, "float32") + 1.0
        w = float(max(self.warmup_steps, 1))
        factor = ops.minimum(n / w, ops.sqrt(w / n))
        return self.peak_learning_rate * factor

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "name": self.name,
        }
