"""The Bazel launcher of the programs (`build_defs/python.bzl`), run without Bazel: the Python that its genrule
writes, generated here from the same lines and run as `bazel run` runs it."""

import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launcher_source(module):
    """The launcher `py_module_binary(module=module)` generates: the genrule's heredoc, its lines evaluated."""
    with open(os.path.join(REPO, "build_defs", "python.bzl")) as f:
        bzl = f.read()
    lines = eval(re.search(r'cmd = "\\n"\.join\((\[.*?\])\),', bzl, re.S).group(1),  # pylint: disable=eval-used
                 {"__builtins__": {}}, {"module": module})
    assert lines[0] == "cat > $@ <<'EOF'" and lines[-1] == "EOF", lines
    return "\n".join(lines[1:-1]) + "\n"


def test_bazel_run_resolves_relative_paths_in_the_users_directory(tmp_path):
    # `bazel run` starts the program inside its runfiles and names the user's directory in BUILD_WORKING_DIRECTORY:
    # relative paths on the command line (here json.tool's output file) must land there, as with `python -m`.
    runfiles, user = tmp_path / "runfiles", tmp_path / "user"
    runfiles.mkdir()
    user.mkdir()
    launcher = runfiles / "tool_launcher.py"
    launcher.write_text(launcher_source("json.tool"))
    (user / "in.json").write_text('{"a": 1}')
    env = dict(os.environ, BUILD_WORKING_DIRECTORY=str(user))
    result = subprocess.run([sys.executable, str(launcher), "in.json", "out.json"], cwd=runfiles, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads((user / "out.json").read_text()) == {"a": 1}
    assert not (runfiles / "out.json").exists()
