#!/usr/bin/env bash
# The test command: sets up .venv and the data (scripts/setup.sh), then runs the default pytest suite.
# Extra arguments go to pytest, e.g. `./test.sh -m slow` for the long tests, `./test.sh tests/test_model.py`.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
# One thread per TensorFlow op in the test processes and the programs and servers they start: two workers on two
# cores, each also starting subprocesses, otherwise oversubscribe the cores (tests stalled up to 15x their alone time),
# and the tests' tiny ops gain nothing from being split across threads.
export TF_NUM_INTRAOP_THREADS=${TF_NUM_INTRAOP_THREADS:-1}
# Two test processes (pytest-xdist; one file per process at a time): on two cores about twice as fast as one.
# TEST_WORKERS=0 runs them in this process.
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
