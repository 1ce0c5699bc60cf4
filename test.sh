#!/usr/bin/env bash
# The test command: sets up .venv and the data (scripts/setup.sh), then runs the default pytest suite.
# Extra arguments go to pytest, e.g. `./test.sh -m slow` for the long tests, `./test.sh tests/test_model.py`.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
# Two test processes (pytest-xdist; one file per process at a time): on two cores about twice as fast as one.
# TEST_WORKERS=0 runs them in this process.
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
