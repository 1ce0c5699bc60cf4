"""Does a class-conditional model use its labels? Bits/dim of test images given their true class, the next class
and shuffled classes, and a grid of samples of the classes 0..9 in turn.

```
PYTHONPATH=. .venv/bin/python bench/class_conditional_check.py --model_dir=runs/study_class/local_1d_class \
    --images=2000 --grid=docs/study_class_samples.png
```
Prints one JSON line: `{"images", "true_labels", "next_class", "shuffled"}` (mean bits/dim of each).
"""

import json

import common  # the repository on sys.path, quiet logs
from absl import flags
import numpy as np
import tensorflow as tf

from imagetransformer import data
from imagetransformer.programs import complete as complete_program

from imagetransformer.training import checkpoints

flags.DEFINE_string("model_dir", "runs/study_class/local_1d_class", "A class-conditional model directory.",
                    allow_override=True)  # imagetransformer.completions defines it too
flags.DEFINE_integer("images", 2000, "Test images to score.")
flags.DEFINE_string("grid", None, "PNG of 20 samples, the classes 0, 1, ... in turn (rows of 5); none if unset.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    model = checkpoints.load_model(FLAGS.model_dir)
    if not model.condition.needs_labels:
        raise SystemExit(f"{FLAGS.model_dir} holds an unconditional model.")
    dataset = checkpoints.load_config(FLAGS.model_dir)["data"]["dataset"]
    pairs = list(data.load_images(dataset, "test", with_labels=True).dataset.take(FLAGS.images).as_numpy_iterator())
    images, labels = np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    bits = tf.function(lambda x, y: model.bits_per_dim(x, y))

    def mean_bits(given):
        return float(np.mean(np.concatenate([bits(images[i:i + 100], given[i:i + 100]).numpy()
                                             for i in range(0, len(images), 100)])))

    result = dict(images=len(images), true_labels=round(mean_bits(labels), 4),
                  next_class=round(mean_bits((labels + 1) % model.num_classes), 4),
                  shuffled=round(mean_bits(np.random.RandomState(0).permutation(labels)), 4))
    print(json.dumps(result), flush=True)
    if FLAGS.grid:
        complete_program.run(FLAGS.model_dir, FLAGS.grid, num_images=20, seed=0, unconditional=True, progress=False)


if __name__ == "__main__":
    common.run_main(main)
