"""Makes a preset folder (`imagetransformer/presets/<name>/`) from a trained model directory.

```
PYTHONPATH=. .venv/bin/python scripts/make_preset.py --model_dir=/work/runs/study/local_1d --name=fashion_mnist_local_1d \
    --description="..." --steps=6400 --train_minutes=40 --command="python -m imagetransformer.train ..."
```
Evaluates the model on the whole test split (and on the first 500 test images, the figure the tests reproduce),
draws its completion grid and writes `model.keras`, `config.json`, `metadata.json` and the model card `README.md`;
see `imagetransformer.presets`.
"""

from absl import app
from absl import flags

from imagetransformer import presets
from imagetransformer.programs import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Trained model directory.", required=True)
flags.DEFINE_string("name", None, "Preset name.", required=True)
flags.DEFINE_string("description", None, "One sentence: what the model is.", required=True)
flags.DEFINE_multi_string("command", [], "The commands that reproduce it (repeat the flag), for the card.")
flags.DEFINE_string("notes", "", "More Markdown for the card.")
flags.DEFINE_integer("steps", None, "Training steps (default: from the model directory's backup).")
flags.DEFINE_float("train_minutes", None, "Wall-clock minutes of training.")
flags.DEFINE_string("output_root", presets.PRESETS_DIR, "Where the preset folder goes.")
flags.DEFINE_integer("eval_examples", None, "Test images to evaluate (default: the whole test split).")


def main(argv):
    del argv
    cli.default_to_warnings()
    with cli.exit_on_user_errors():
        metadata = presets.write_preset(FLAGS.model_dir, FLAGS.name, FLAGS.description, FLAGS.command, FLAGS.notes,
                                        FLAGS.output_root, FLAGS.eval_examples, FLAGS.steps, FLAGS.train_minutes)
    print(f"preset {FLAGS.name}: test bits/dim {metadata['test_bits_per_dim']} on {metadata['test_images']} images")


if __name__ == "__main__":
    app.run(main)
