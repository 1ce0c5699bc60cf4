"""Cached vs naive decoding vs one forward pass, on the paper-sized CIFAR-10 model (random weights).

Completes the bottom half (16 rows = 512 pixels) of a batch of 32x32x3 images and prints one JSON line per
attention type:

    python bench/sampling_speed.py [--attention=local_1d,local_2d,global] [--batch_size=4] [--repeats=3]

`cached_graph_bf16_s` is the graph executor with bfloat16 key/value caches, as the exported signatures decode by
default (`python -m export.export --cache_dtype`). Timings are medians of `--repeats` runs after a warm-up
(compilation excluded). The naive decoder re-runs the whole network once per generated pixel; unless `--naive_steps=512`, its time is measured on `--naive_steps`
pixels and scaled to 512 (each naive step costs the same full forward pass).
"""

import json

import common  # noqa: F401  (the repository on sys.path, quiet logs)
from absl import app, flags
import numpy as np
import tensorflow as tf

import imagetransformer as it
from imagetransformer.generation.sampling import get_decoder, per_image_seeds

FLAGS = flags.FLAGS
flags.DEFINE_list("attention", ["local_1d", "local_2d", "global"], "Attention types to time.")
flags.DEFINE_integer("batch_size", 4, "Images per batch.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (median reported).")
flags.DEFINE_integer("naive_steps", 8, "Naive decoder steps timed (scaled to all generated pixels).")
flags.DEFINE_integer("num_layers", 6, "Decoder blocks.")

PAPER = common.paper_model_kwargs()  # the paper's CIFAR-10 model (configs.CIFAR10_LOCAL_1D)


def main(argv):
    del argv
    tf.random.set_seed(0)
    known_rows = 16
    for attention in FLAGS.attention:
        model = it.ImageTransformer(**{**PAPER, "attention": attention, "num_layers": FLAGS.num_layers})
        images = np.random.RandomState(0).randint(0, 256, (FLAGS.batch_size, 32, 32, 3)).astype(np.uint8)
        forward = tf.function(lambda x: model(x, training=False))
        forward_s = common.median_time(lambda: forward(images).numpy(), FLAGS.repeats)
        result = {"attention": attention, "batch_size": FLAGS.batch_size, "num_layers": FLAGS.num_layers,
                  "generated_pixels": 32 * 32 - known_rows * 32, "forward_s": round(forward_s, 4)}
        for jit in (False, True):
            result[f"cached_{'xla' if jit else 'graph'}_s"] = round(common.median_time(
                lambda: it.complete(model, images, known_rows, seed=0, jit_compile=jit).numpy(), FLAGS.repeats), 4)
        # bfloat16 key/value caches on the graph executor: what the exported signatures run by default.
        result["cached_graph_bf16_s"] = round(common.median_time(
            lambda: it.complete(model, images, known_rows, seed=0, jit_compile=False,
                                cache_dtype="bfloat16").numpy(), FLAGS.repeats), 4)
        result["graph_bf16_over_xla"] = round(result["cached_graph_bf16_s"] / result["cached_xla_s"], 2)
        # Naive: one full forward pass per generated pixel.
        decoder = get_decoder(model)
        order = model.order
        tokens = order.to_sequence(tf.cast(images, tf.int32))
        noise = decoder.noise(per_image_seeds(0, FLAGS.batch_size))
        temperature = tf.ones([FLAGS.batch_size])
        steps = min(FLAGS.naive_steps, result["generated_pixels"])
        known = order.known_length(known_rows)

        def naive():  # the first `steps` generated pixels; every naive step is one full forward pass
            return decoder.run(tokens, known, noise, temperature, use_cache=False, stop=known + steps)[0].numpy()

        naive_s = common.median_time(naive, max(1, FLAGS.repeats // 2)) * result["generated_pixels"] / steps
        best_cached = min(result["cached_graph_s"], result["cached_xla_s"])
        result.update(
            naive_s=round(naive_s, 2), naive_steps_timed=steps,
            speedup_vs_naive=round(naive_s / best_cached, 1),
            cached_over_forward=round(best_cached / forward_s, 2),
        )
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main)
