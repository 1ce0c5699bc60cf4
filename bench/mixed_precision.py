"""Test bits/dim of trained models computed in float32 and under mixed_bfloat16, with the same weights.

    python bench/mixed_precision.py --model_dirs=runs/q_float32,runs/q_mixed_bfloat16 [--eval_examples=N]

Separates what bfloat16 does to the likelihood computation itself (same weights, two dtype policies) from what it
does to training (models trained with `--mixed_precision=float32` and `mixed_bfloat16` for the same steps; their
float32 bits/dim are compared in BENCHMARKS.md). One JSON line per model directory.
"""

import json

import common  # the repository on sys.path, quiet logs
from absl import flags
import keras

from imagetransformer.training import checkpoints
from imagetransformer.evaluation.evaluator import evaluate

FLAGS = flags.FLAGS
flags.DEFINE_list("model_dirs", None, "Trained model directories.", required=True)
flags.DEFINE_integer("eval_examples", None, "Test images (default: the whole split).")


def main(argv):
    del argv
    for model_dir in FLAGS.model_dirs:
        result = {"model_dir": model_dir,
                  "trained_with": checkpoints.load_config(model_dir).get("train", {}).get("mixed_precision")}
        for policy in ("float32", "mixed_bfloat16"):
            keras.mixed_precision.set_global_policy(policy)
            try:
                model = checkpoints.load_model(model_dir)  # built under the policy, then the same weights
            finally:
                keras.mixed_precision.set_global_policy("float32")
            evaluated = evaluate(model_dir, "test", FLAGS.eval_examples, model=model)
            result[f"bits_per_dim_{policy}"] = round(evaluated.bits_per_dim, 4)
            result["images"] = evaluated.num_examples
        result["difference"] = round(result["bits_per_dim_mixed_bfloat16"] - result["bits_per_dim_float32"], 4)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    common.run_main(main)
