"""Export a trained model for TensorFlow Serving (SavedModel) and for `keras.models.load_model` (.keras).

The program `python -m imagetransformer.export` runs `main` below:

```
python -m imagetransformer.export --model_dir=runs/x --export_dir=exported/imagetransformer [--version=N] [--overwrite]
python -m imagetransformer.export --preset=fashion_mnist_local_1d --export_dir=exported/imagetransformer  # no training
python -m imagetransformer.export --preset=fashion_mnist_local_1d --export_dir=exported/xla --jit_compile  # XLA
```
It writes the next version of the TF Serving base path `--export_dir` (`imagetransformer.export.writer`) with the
signatures of `imagetransformer.export.signatures`, and prints what it wrote.
"""

from absl import flags

from imagetransformer.export import (
    CACHE_DTYPES,
    DEFAULT_MAX_BATCH,
    ExportError,
    export_model,
    signature_names,
)
from imagetransformer.programs import cli
from imagetransformer.training import checkpoints

FLAGS = flags.FLAGS
MODEL_SOURCE = "written by training: config.json + model.weights.h5"
cli.define_model_source_flags(MODEL_SOURCE)
flags.DEFINE_string("export_dir", None, "TF Serving model base path (required); the export goes to "
                    "<export_dir>/<version>/.")
flags.DEFINE_integer("version", None, "Version to write; default: one more than the highest existing, or 1.")
flags.DEFINE_bool("overwrite", False, "Replace an existing version.")
flags.DEFINE_integer("max_batch", DEFAULT_MAX_BATCH, "Most images one request to a signature may hold; larger "
                     "requests fail with a message (bounds the server's memory).", lower_bound=1)
flags.DEFINE_enum("cache_dtype", None, CACHE_DTYPES, "Dtype of the decoder's key/value caches in the generating "
                  "signatures (default float32, the model's distribution exactly); bfloat16 reads half the cache bytes per "
                  "step, which pays only where bfloat16 products are fast (on CPU both executors decode it slower).")
flags.DEFINE_bool("jit_compile", False, "Opt-in XLA export: the generating signatures' decoding loop must be compiled "
                  "with XLA (faster on CPU); TF Serving then needs --xla_cpu_compilation_enabled=true.")
flags.DEFINE_integer("parallel_loops", None, "The generating signatures decode a request's images in up to this many "
                     "groups side by side: the serving machine's CPU cores (decoding is bound by each core's memory "
                     "reads), 1 to serve on a GPU; default: this machine's cores, or 1 where it has a GPU.",
                     lower_bound=1)


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value (--helpfull lists them).", 2)
    if not FLAGS.export_dir:
        cli.fail("--export_dir is required: the TF Serving model base path to write the next version into.")
    cli.default_to_warnings()  # TF's INFO lines (fingerprints, ...) are noise here
    model_dir = cli.model_source(MODEL_SOURCE)
    try:
        model = checkpoints.load_model(model_dir)
        result = export_model(model, FLAGS.export_dir, FLAGS.version, FLAGS.overwrite, FLAGS.max_batch,
                              FLAGS.cache_dtype, FLAGS.jit_compile, FLAGS.parallel_loops)
    except (checkpoints.CheckpointError, ExportError) as e:
        cli.fail(e)
    print(f"exported version {result.version}: SavedModel {result.saved_model_dir} "
          f"(signatures: {', '.join(signature_names(model))}), Keras file {result.keras_path}")
    return 0


def run_main():
    cli.run_program(main)
