#!/usr/bin/env bash
# The demo: sets up .venv and the data (scripts/setup.sh), then, on Fashion-MNIST,
#   0. shows what a trained model does, without training: completions and samples of the pretrained preset
#      fashion_mnist_local_1d (runs/demo/preset_completions.png, runs/demo/preset_samples.png), within a minute,
#   1. trains the default small local-1D Image Transformer for a few minutes (DEMO_STEPS steps, default 300),
#   2. evaluates its bits/dim on the whole test split,
#   3. completes the bottom half of 8 test images from their top half (runs/demo/completions.png) and draws
#      16 unconditional samples (runs/demo/samples.png),
#   4. exports it for TF Serving and load_model (runs/demo/export/).
# Running it again resumes or reuses the trained model in runs/demo (delete the folder to start over).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
py=.venv/bin/python
dir=${DEMO_DIR:-runs/demo}
steps=${DEMO_STEPS:-300}

preset=${DEMO_PRESET:-fashion_mnist_local_1d}
mkdir -p "$dir"
echo "== 0/4 the pretrained preset $preset: complete test images and sample (no training)"
$py -m imagetransformer.evaluate --preset="$preset" --split="test[:500]"
$py -m imagetransformer.complete --preset="$preset" --output="$dir/preset_completions.png" --num_images=8
$py -m imagetransformer.complete --preset="$preset" --output="$dir/preset_samples.png" --num_images=8 --unconditional
echo "== 1/4 train your own small model ($steps steps) into $dir"
$py -m imagetransformer.train --model_dir="$dir" --train_steps="$steps" --steps_per_epoch=100 --verbose=2
echo "== 2/4 evaluate on the test split"
$py -m imagetransformer.evaluate --model_dir="$dir" --split=test
echo "== 3/4 complete test images and sample"
$py -m imagetransformer.complete --model_dir="$dir" --output="$dir/completions.png" --num_images=8
$py -m imagetransformer.complete --model_dir="$dir" --output="$dir/samples.png" --num_images=16 --unconditional
echo "== 4/4 export"
$py -m imagetransformer.export --model_dir="$dir" --export_dir="$dir/export" --version=1 --overwrite
echo "Done: $dir/preset_completions.png and $dir/preset_samples.png (the preset), $dir/completions.png (given top half | completion | original), $dir/samples.png, $dir/export/"
