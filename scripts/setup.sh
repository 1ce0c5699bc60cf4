#!/usr/bin/env bash
# Sets up everything the demo and the tests need, on a fresh machine, idempotently:
#   - a virtual environment in .venv with TensorFlow (the CPU build where no NVIDIA driver is present) and the
#     pinned packages of requirements.txt;
#   - Fashion-MNIST from Debian's package dataset-fashion-mnist (offline data), when it can be installed.
# Re-running it is cheap: packages are reinstalled only when requirements.txt or the TensorFlow build changes.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv .venv
fi
# TensorFlow: the CPU build where no NVIDIA driver is present (the CUDA build logs its failed driver search on
# every start, before any log level applies), the CUDA build where one is. TF_PACKAGE overrides the choice.
TF_VERSION=2.21.0
if [ -z "${TF_PACKAGE:-}" ]; then
  if [ -e /proc/driver/nvidia/version ] || command -v nvidia-smi >/dev/null 2>&1; then
    TF_PACKAGE="tensorflow[and-cuda]"
  else
    TF_PACKAGE=tensorflow-cpu
  fi
fi
stamp=.venv/.requirements.sha256
want=$( (cat requirements.txt; echo "$TF_PACKAGE==$TF_VERSION") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing $TF_PACKAGE and requirements.txt into .venv (first time: a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  # Another TensorFlow build left by an earlier setup would share the `tensorflow` import package: remove it.
  for other in tensorflow tensorflow-cpu; do
    if [ "$other" != "${TF_PACKAGE%%[*}" ] && .venv/bin/python -m pip show --quiet "$other" >/dev/null 2>&1; then
      .venv/bin/python -m pip uninstall --quiet --yes "$other"
    fi
  done
  .venv/bin/python -m pip install --quiet "$TF_PACKAGE==$TF_VERSION" -r requirements.txt
  # These two declare a dependency on the distribution `tensorflow` (which would pull the CUDA build in beside
  # tensorflow-cpu); their other dependencies are in requirements.txt.
  .venv/bin/python -m pip install --quiet --no-deps "tf_keras==$TF_VERSION" "tensorflow-serving-api==$TF_VERSION"
  echo "$want" > "$stamp"
fi

data=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -e "$data" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian's dataset-fashion-mnist"
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    echo "setup: installing Debian's dataset-fashion-mnist (sudo)"
    sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
      || { sudo apt-get update -qq >/dev/null && sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
  else
    echo "setup: warning: cannot install dataset-fashion-mnist (not root); tensorflow-datasets will download" \
         "Fashion-MNIST instead, and the tests that need the real data are skipped" >&2
  fi
fi
