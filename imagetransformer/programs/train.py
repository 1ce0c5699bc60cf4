"""Train an Image Transformer (or the PixelCNN++ baseline, `--model=pixelcnnpp`) with `model.fit`, driven by absl
flags.

```
python -m imagetransformer.train --model_dir=runs/demo --train_steps=300          # Fashion-MNIST, small model
python -m imagetransformer.train --config=cifar10_local_2d --model_dir=runs/c2d --strategy=mirrored
python -m imagetransformer.train --config=fashion_mnist_pixelcnnpp --model_dir=runs/pcnn
python -m imagetransformer.train --helpfull
```
The flags start from a named configuration (`--config`, see `imagetransformer/training/configs.py`); flags given
on the command line override it. `imagetransformer.training.trainer.train` does the work (model, optimizer,
`model.fit`, backups, resuming); this module maps the flags to a configuration and turns user errors into one
line on stderr (exit status 1), before anything in `--model_dir` is written.
"""

from absl import flags

from imagetransformer.programs import cli
from imagetransformer.training import checkpoints, configs, trainer

FLAGS = flags.FLAGS
cli.define_train_flags()
flags.adopt_module_key_flags(cli)  # --help lists them


def config_from_flags():
    """The configuration (`configs.Config`) of `--config` with every flag given on the command line applied.

    Only flags given (`present`) override it: another program imported into the same process may define a flag of
    the same name with its own default (`--seed`, `--jit_compile`), which must not stand in for the config's value.
    """
    return configs.get_config(FLAGS.config, **{key: FLAGS[key].value for key in configs.KEYS if FLAGS[key].present})


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value (--helpfull lists them).")
    cli.default_to_warnings()
    with cli.exit_on_user_errors():
        try:
            result = trainer.train(config_from_flags(), FLAGS.model_dir, strategy=FLAGS.strategy, tpu=FLAGS.tpu,
                                   verbose=int(FLAGS.verbose), train_minutes=FLAGS.train_minutes,
                                   summary_images=FLAGS.summary_images)
        except FloatingPointError as e:
            cli.fail(e)
        except KeyboardInterrupt:
            cli.fail(f"interrupted; run the same command again to resume from {FLAGS.model_dir}/"
                     f"{checkpoints.BACKUP_DIR}.", exit_code=130)
    speed = f", {result.steps_per_second:.2f} steps/s" if result.steps_per_second else ""
    print(f"Trained steps {result.initial_step}..{result.final_step}{speed}; model in {result.model_dir}.")


def run_main():
    cli.run_program(main)

