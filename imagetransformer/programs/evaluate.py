"""Evaluate a trained model's bits per dimension on a dataset split.

```
python -m imagetransformer.evaluate --model_dir=runs/demo --split=test [--eval_examples=N] [--batch_size=64]
python -m imagetransformer.evaluate --preset=fashion_mnist_local_1d   # a pretrained model
...
test bits/dim: 3.412
```
The model and its dataset come from `--model_dir` alone (`config.json` + `model.weights.h5`). Every image of the
split counts once (the last, partial batch included): the result is the mean over images of
`-log2 p(image) / (H * W * C)` (given its class for a class-conditional model, given its downsampled version for
a super-resolution model). The last line printed is `<split> bits/dim: <value>`.

For a super-resolution model (`--task=super_resolution`) the first `--sr_examples` images are also
super-resolved at temperatures 0.8 and 1.0 and scored against the originals, beside bicubic upsampling:
PSNR, SSIM and the share of samples consistent with their input (`imagetransformer.evaluation.super_resolution_metrics`).
"""

import math

from absl import flags

from imagetransformer.evaluation import evaluator
from imagetransformer.programs import cli

FLAGS = flags.FLAGS
cli.define_evaluate_flags()
flags.adopt_module_key_flags(cli)  # --help lists them


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value (--helpfull lists them).")
    cli.default_to_warnings()
    model_dir = cli.model_source()
    with cli.exit_on_user_errors():
        result = evaluator.evaluate(model_dir, split=FLAGS.split, eval_examples=FLAGS.eval_examples,
                                    batch_size=FLAGS.batch_size or evaluator.DEFAULT_BATCH_SIZE,
                                    data_dir=FLAGS.data_dir, sr_examples=FLAGS.sr_examples, progress=True)
    if not math.isfinite(result.bits_per_dim):
        cli.fail(f"{result.split} bits/dim is {result.bits_per_dim}: the weights in {model_dir} are "
                 "not finite.")
    print(f"Evaluated {result.num_examples} images of {result.dataset} ({result.split}).")
    if result.super_resolution:
        count = min(FLAGS.sr_examples, result.num_examples)
        print(f"Super-resolution of the first {count} images (PSNR dB / SSIM against the originals; consistent: "
              "share whose downsampled version is within one grey level of the input on average):")
        for name, scores in result.super_resolution.items():
            print(f"  {name:>16}: PSNR {scores['psnr']:.2f}  SSIM {scores['ssim']:.4f}  "
                  f"consistent {scores['consistent']:.2f}  downsampled error {scores['downsampled_error']:.2f}")
    print(f"{result.split} bits/dim: {result.bits_per_dim:.3f}")


def run_main():
    cli.run_program(main)
