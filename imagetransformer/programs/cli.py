"""absl flags of the command-line tools, and their one-line error handling.

`define_train_flags()` and `define_evaluate_flags()` define the flags of `imagetransformer.train` and
`imagetransformer.evaluate`. Both may be called in one process (tests import both tools): a flag that the other
tool already defined (`--model_dir`, `--data_dir`, `--batch_size`) is not defined twice.

Model and training flags default to None, meaning "the value of the `--config`": their help text shows the value
of the default configuration.

Errors a user can fix (bad flag values, missing or corrupt model directories, unknown datasets) end the process
with exit status 1 and one line on stderr, `error: ...`, naming the flag or file and what would be valid: see
`run_program` (absl's `app.run` with one-line flag errors and a `--help` that lists the program's flags) and
`exit_on_user_errors`.
"""

import contextlib
import sys

from absl import app
from absl import flags
from absl import logging

from imagetransformer import presets

from imagetransformer.training import configs, distribute
from imagetransformer.layers.embedding import STARTS, VALUE_EMBEDDINGS
from imagetransformer.layers.feed_forward import NORMS
from imagetransformer.models.image_transformer import ATTENTIONS
from imagetransformer.ordering import DISTRIBUTIONS

FLAGS = flags.FLAGS

# Errors of the user's making (ValueError covers CheckpointError, PresetError, DatasetUnavailableError; the OSErrors
# are paths a user gave); anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
               NotADirectoryError)


def _define(kind, name, default, *args, **kwargs):
    """Defines flag `name` unless it already is (shared between the tools).

    `allow_override=True`: another tool imported later into the same process (a test session) may define a flag
    of the same name (`--model_dir`, `--seed`, ...) with plain `flags.DEFINE_*` without a DuplicateFlagError.
    """
    if name in FLAGS:
        return
    getattr(flags, f"DEFINE_{kind}")(name, default, *args, allow_override=True, **kwargs)


def _default(key):
    value = configs.CONFIGS[configs.DEFAULT_CONFIG].flags()[key]
    if isinstance(value, tuple):
        value = ",".join(map(str, value))
    return f"(default: from --config; {value} in {configs.DEFAULT_CONFIG})"


def _define_common():
    _define("string", "model_dir", None,
            "Model directory: config.json, model.weights.h5 (latest weights), backup/ (state of an interrupted "
            "run, for resuming), logs/ (TensorBoard). Training resumes in it when its config.json matches the "
            "model flags and refuses when it differs. Required.")
    _define("string", "data_dir", None,
            "tensorflow-datasets data directory (default: tfds' own, ~/tensorflow_datasets). Fashion-MNIST is "
            "read offline from Debian's /usr/share/datasets/fashion-mnist when tfds has not prepared it. "
            "evaluate: default from the model_dir's config.json.")
    _define("integer", "batch_size", None,
            "Images per batch. train: the global batch, split across the replicas of --strategy "
            f"{_default('batch_size')}; evaluate: 64 unless given.", lower_bound=1)


def define_train_flags():
    """Defines the flags of `python -m imagetransformer.train`."""
    _define_common()
    _define("enum", "config", configs.DEFAULT_CONFIG, list(configs.CONFIGS),
            "Named configuration (imagetransformer/training/configs.py) that the flags below start from: "
            "fashion_mnist_small (small local 1D model, minutes on a CPU), fashion_mnist_pixelcnnpp (PixelCNN++ of "
            "about its size), fashion_mnist_super_resolution (7x7 -> 28x28), cifar10_local_1d / cifar10_local_2d / "
            "cifar10_global / cifar10_pixelcnnpp / cifar10_super_resolution (the papers' CIFAR-10 sizes), tiny "
            "(tests). A flag given on the command line overrides it.")
    # Data.
    _define("string", "dataset", None,
            "tensorflow-datasets image dataset: fashion_mnist, mnist, cifar10, imagenet_resized/32x32, ... "
            f"{_default('dataset')}")
    _define("list", "image_shape", None,
            "H,W,C to crop and resize the images to (needed for datasets without a fixed image shape) "
            "(default: the dataset's own shape).")
    _define("enum", "conditional", None, list(configs.CONDITIONAL),
            "none: model the images alone; class: a class-conditional Image Transformer trained on the dataset's "
            "labels (a learned class embedding added at every position; completion and sampling then take labels) "
            f"{_default('conditional')}")
    _define("enum", "task", None, list(configs.TASKS),
            "generation: model images (completion, sampling); super_resolution: model each image given its version "
            "downsampled by --scale (an encoder over the low-resolution pixels, cross-attended by every decoder "
            f"block; python -m imagetransformer.super_resolve draws samples) {_default('task')}")
    _define("integer", "scale", None,
            f"super_resolution: downsampling factor; divides H and W (4: 28x28 from 7x7) {_default('scale')}",
            lower_bound=2)
    _define("integer", "encoder_layers", None,
            "super_resolution: encoder blocks over the low-resolution image (default: as many as --num_layers).",
            lower_bound=1)
    # Model.
    _define("enum", "model", None, list(configs.ARCHITECTURES),
            "Architecture: image_transformer (the --attention flags below) or pixelcnnpp (PixelCNN++, the "
            f"convolutional baseline: --num_filters, --num_resnets, --num_scales) {_default('model')}")
    _define("integer", "num_filters", None, f"pixelcnnpp: channels of both streams {_default('num_filters')}",
            lower_bound=1)
    _define("integer", "num_resnets", None,
            f"pixelcnnpp: gated residual blocks per scale {_default('num_resnets')}", lower_bound=1)
    _define("integer", "num_scales", None,
            f"pixelcnnpp: resolutions (each halves H and W) {_default('num_scales')}", lower_bound=1)
    _define("enum", "attention", None, list(ATTENTIONS),
            "Self-attention: local_1d (raster-order query blocks with a memory of earlier positions), local_2d "
            f"(2D query blocks with a memory flange above, left and right), global (full causal) "
            f"{_default('attention')}")
    _define("integer", "num_layers", None, f"Decoder blocks {_default('num_layers')}", lower_bound=1)
    _define("integer", "hidden_size", None,
            f"Model width; a multiple of --num_heads {_default('hidden_size')}", lower_bound=1)
    _define("integer", "num_heads", None, f"Attention heads {_default('num_heads')}", lower_bound=1)
    _define("integer", "filter_size", None, f"Feed-forward hidden units {_default('filter_size')}", lower_bound=1)
    _define("float", "dropout", None, f"Dropout rate of the residual branches, in [0, 1) {_default('dropout')}",
            lower_bound=0.0, upper_bound=0.999)
    _define("integer", "block_length", None,
            "local_1d: query block length in positions; must divide the number of positions (H*W for dmol, "
            f"H*W*C for categorical) {_default('block_length')}", lower_bound=1)
    _define("integer", "memory_length", None,
            f"local_1d: earlier positions each query block also attends to {_default('memory_length')}",
            lower_bound=0)
    _define("list", "query_shape", None,
            "local_2d: query block rows,cols; must divide the grid (H x W for dmol, H x W*C for categorical) "
            f"{_default('query_shape')}")
    _define("list", "memory_flange", None,
            f"local_2d: memory rows above, cols on each side of a query block {_default('memory_flange')}")
    _define("enum", "distribution", None, list(DISTRIBUTIONS),
            "Output head: dmol (discretized mixture of logistics, one position per pixel) or categorical "
            f"(256-way softmax, one position per sub-pixel) {_default('distribution')}")
    _define("integer", "num_mixtures", None, f"dmol mixture components {_default('num_mixtures')}", lower_bound=1)
    _define("float", "initializer_gain", None,
            "Variance scale of the attention and feed-forward kernels, VarianceScaling(gain, fan_avg, uniform); 1.0 "
            f"is glorot_uniform, tensor2tensor uses 0.2 {_default('initializer_gain')}", lower_bound=1e-12)
    _define("float", "head_initializer_gain", None,
            "The same for the output head's projection (default: --initializer_gain).", lower_bound=1e-12)
    _define("enum", "value_embedding", None, list(VALUE_EMBEDDINGS),
            "How a pixel value becomes a vector: table (256 learned vectors per channel) or projection (relu of a "
            f"linear map of the value scaled to [-1, 1]) {_default('value_embedding')}")
    _define("enum", "start", None, list(STARTS),
            f"Input of the first position: learned or zeros {_default('start')}")
    _define("integer", "conv_stem_layers", None,
            "Masked convolutions over earlier pixels added to the embedding (local_1d and global attention); 0: "
            f"none {_default('conv_stem_layers')}", lower_bound=0)
    _define("list", "conv_stem_kernel", None,
            f"Stem convolution: rows above,cols on each side {_default('conv_stem_kernel')}")
    _define("enum", "norm", None, list(NORMS),
            "Layer norm placement: pre (before each branch, final layer norm) or post (after each residual sum, "
            f"the paper's and tensor2tensor's image_transformer_base) {_default('norm')}")
    _define("float", "max_log_scale", None,
            "Upper clip of the DMoL log-scales in [-1, 1] units; inf removes the clip "
            f"{_default('max_log_scale')}")
    # Optimization.
    _define("integer", "train_steps", None,
            "Total optimizer steps; a resumed run trains until the model has taken this many "
            f"{_default('train_steps')}", lower_bound=1)
    _define("float", "train_minutes", None,
            "Wall-clock budget: stop after this many minutes of training even before --train_steps (the weights "
            "of the last step are saved; a later run with the same flags resumes). Default: no budget.",
            lower_bound=0.0)
    _define("integer", "summary_images", 4,
            "At each epoch end, complete this many validation images (bottom half from the top half) and show "
            "the grid in TensorBoard's images tab (model_dir/logs/images); 0 disables.", lower_bound=0)
    _define("float", "learning_rate", None,
            f"Peak Adam learning rate, reached after the warm-up {_default('learning_rate')}", lower_bound=1e-12)
    _define("integer", "warmup_steps", None,
            "Steps of linear learning-rate warm-up, then --lr_decay "
            f"{_default('warmup_steps')}", lower_bound=0)
    _define("enum", "lr_decay", None, list(configs.LR_DECAYS),
            "After the warm-up: rsqrt (inverse square root of the step, the paper's) or cosine (to 0 at "
            f"--train_steps, Keras' CosineDecay) {_default('lr_decay')}")
    _define("float", "clipnorm", None,
            f"Clip each gradient to this L2 norm; 0 disables {_default('clipnorm')}", lower_bound=0.0)
    _define("enum", "mixed_precision", None, list(configs.MIXED_PRECISION),
            "Keras dtype policy: float32, mixed_bfloat16 (CPU/TPU/recent GPUs) or mixed_float16 (GPUs; with "
            f"dynamic loss scaling); the output head always computes in float32 {_default('mixed_precision')}")
    _define("boolean", "jit_compile", None,
            "Compile the training step with XLA (default: Keras' choice: on GPU/TPU, not on CPU).")
    _define("integer", "steps_per_execution", None,
            f"Training steps per tf.function call (larger helps TPUs) {_default('steps_per_execution')}",
            lower_bound=1)
    _define("integer", "seed", None, f"Seed of initialization, dropout and shuffling {_default('seed')}")
    _define("integer", "shuffle_buffer", None, f"Shuffle buffer (images) {_default('shuffle_buffer')}",
            lower_bound=1)
    # Checkpoints, validation, logs.
    _define("integer", "steps_per_epoch", None,
            "Steps per Keras epoch. At every epoch end: validation, model.weights.h5 and TensorBoard epoch "
            f"summaries {_default('steps_per_epoch')}", lower_bound=1)
    _define("integer", "save_every", None,
            "BackupAndRestore: back up the training state to model_dir/backup every this many steps; running "
            f"the same command again after a crash resumes there {_default('save_every')}", lower_bound=1)
    _define("string", "train_split", None, f"Split to train on (tfds syntax) {_default('train_split')}")
    _define("string", "val_split", None,
            "Split to validate on each epoch (tfds syntax); keep it apart from --train_split "
            f"{_default('val_split')}")
    _define("integer", "val_examples", None,
            f"Images of --val_split to validate on each epoch (val_bits_per_dim); 0 disables "
            f"{_default('val_examples')}", lower_bound=0)
    # Devices.
    _define("enum", "strategy", "default", list(distribute.STRATEGIES),
            "tf.distribute strategy: default (one device), mirrored (all local GPUs, or all logical CPUs), "
            "multi_worker (MultiWorkerMirroredStrategy over the cluster in TF_CONFIG; run the same command on every "
            "worker, the chief writes --model_dir), tpu (with --tpu).")
    _define("string", "tpu", None, "--strategy=tpu: TPU name or grpc:// address (default: the local TPU).")
    _define("enum", "verbose", "1", ["0", "1", "2"], "Keras fit verbosity: 0 silent, 1 progress bar, 2 one line "
            "per epoch.")


def define_evaluate_flags():
    """Defines the flags of `python -m imagetransformer.evaluate`."""
    define_model_source_flags()
    _define_common()
    _define("string", "split", "test", "Split to evaluate, in tfds syntax: test, train, test[:1000], ...")
    _define("integer", "eval_examples", None, "Evaluate only the first N images of --split (default: all).",
            lower_bound=1)
    _define("integer", "sr_examples", 100,
            "Super-resolution models: super-resolve this many images of --split at temperatures 0.8 and 1.0 and "
            "report PSNR/SSIM against the originals beside bicubic upsampling; 0 skips.", lower_bound=0)


def define_model_source_flags(what="a directory written by imagetransformer.train"):
    """`--model_dir` and `--preset` of the programs that read a trained model (see `model_source`)."""
    _define("string", "model_dir", None, f"Model directory: {what}.")
    _define("string", "preset", None,
            "A pretrained preset shipped with the package instead of --model_dir (imagetransformer.list_presets() "
            "names them, e.g. fashion_mnist_local_1d).")


def model_source(what="a directory written by imagetransformer.train"):
    """The model directory of `--model_dir` or `--preset` (a preset's folder); exits with one line unless exactly
    one of them is given or the preset is unknown."""
    if FLAGS.model_dir and FLAGS.preset:
        fail("give --model_dir or --preset, not both.")
    if FLAGS.preset:
        try:
            return presets.path(FLAGS.preset)
        except presets.PresetError as e:
            fail(f"--preset: {e}")
    if not FLAGS.model_dir:
        fail(f"--model_dir is required ({what}), or --preset=NAME for a pretrained model.")
    return FLAGS.model_dir


def run_program(main):
    """`app.run(main)` with one-line flag errors (`parse_flags`), and `--help` listing the program's flags: those
    defined by `main`'s module and, through this module, for it (absl's `--help` shows only the main module's key
    flags, and the main module of `python -m imagetransformer.NAME` is the two-line launcher), under the program
    module's docstring as its usage text."""
    program = sys.modules[main.__module__]
    if program.__doc__:
        sys.modules["__main__"].__doc__ = program.__doc__  # what absl prints as the usage
    for module in (program, sys.modules[__name__]):
        for flag in FLAGS.get_key_flags_for_module(module):
            FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(main, flags_parser=parse_flags)


def parse_flags(argv):
    """`app.run` flags parser: like absl's, but a bad flag is one line on stderr (and exit status 1)."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        fail(f"{e} (--helpfull lists the flags)")


def default_to_warnings():
    """Shows absl/tfds INFO logs only when asked for with `--verbosity=0` (or `-v 0`): the tools print what matters
    on stdout, and an error is then the only line on stderr."""
    if "verbosity" in FLAGS and not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def fail(message, exit_code=1):
    """Prints `error: message` as one line on stderr and exits."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    sys.exit(exit_code)


@contextlib.contextmanager
def exit_on_user_errors():
    """Turns `USER_ERRORS` raised in the block into one line on stderr and exit status 1 (no traceback)."""
    try:
        yield
    except USER_ERRORS as e:
        fail(e)
