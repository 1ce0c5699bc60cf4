#!/usr/bin/env bash
# The Python interpreter of the Bazel toolchain in this folder's BUILD: the checkout's .venv/bin/python, or
# $IMAGETRANSFORMER_PYTHON when set (.bazelrc passes it through to tests). Bazel runs this file from a runfiles
# tree, through symlinks that end at the file in the checkout; resolving them finds the checkout.
set -eu
python="${IMAGETRANSFORMER_PYTHON:-}"
if [ -z "$python" ]; then
  here="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
  python="$(cd "$here/../../.." && pwd)/.venv/bin/python"
fi
if [ ! -x "$python" ]; then
  echo "venv_python.sh: no Python at $python; create the virtual environment (.venv) or set IMAGETRANSFORMER_PYTHON" >&2
  exit 1
fi
exec "$python" "$@"
