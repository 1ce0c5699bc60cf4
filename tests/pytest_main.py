"""Runs pytest on the test files given as arguments: the `main` of the Bazel py_test targets in tests/BUILD.

Not a test module itself (pytest collects test_*.py only). Under `bazel test` it runs in the test's runfiles tree,
whose top folder holds pyproject.toml (pytest's configuration) and tests/conftest.py; results go to Bazel's
XML_OUTPUT_FILE as JUnit XML, pytest's temporary folders to TEST_TMPDIR, and no .pytest_cache is written.
"""

import os
import sys

import pytest


def main(argv):
    args = list(argv)
    if os.environ.get("XML_OUTPUT_FILE"):
        args.append("--junitxml=" + os.environ["XML_OUTPUT_FILE"])
    if os.environ.get("TEST_TMPDIR"):
        args.append("--basetemp=" + os.path.join(os.environ["TEST_TMPDIR"], "pytest"))
    return pytest.main(["-p", "no:cacheprovider", *args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
