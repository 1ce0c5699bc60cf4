#!/usr/bin/env bash
# The test command: sets up .venv and the data (scripts/setup.sh), then runs the default pytest suite.
# Extra arguments go to pytest, e.g. `./test.sh -m slow` for the long tests, `./test.sh tests/test_model.py`.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
# Three test processes (pytest-xdist; one file per process at a time) on this project's 2-core machines: many tests
# wait on the programs and servers they start, and two processes kept the cores busy only about 1.6 of 2 on average,
# three 1.8 (the default suite took 785 and 842 s with three processes, 849-950 s in three runs with two; 2026-12-06
# and 12-07). TEST_WORKERS=0 runs them in this process.
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-3}" --dist loadfile "$@"
