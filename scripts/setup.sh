#!/usr/bin/env bash
# Sets up everything the demo and the tests need, on a fresh machine, idempotently:
#   - a virtual environment in .venv with the pinned packages of requirements.txt;
#   - Fashion-MNIST from Debian's package dataset-fashion-mnist (offline data), when it can be installed.
# Re-running it is cheap: packages are reinstalled only when requirements.txt changes.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing requirements.txt into .venv (first time: a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt
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
