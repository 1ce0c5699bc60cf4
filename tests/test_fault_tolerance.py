"""Training in real processes: two multi-worker processes on loopback, and a run killed with SIGKILL that resumes.

Each test runs `python -m imagetransformer.train` as the user would, on Fashion-MNIST (Debian's files).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from imagetransformer.training import trainer
from imagetransformer.training import callbacks
from imagetransformer import data

from imagetransformer.training import checkpoints, configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(data.DEBIAN_FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz")),
    reason="Debian package dataset-fashion-mnist is not installed")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _env(**extra):
    return dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", **extra)


def _train_flags(model_dir, *flags):
    return ["--config=tiny", f"--model_dir={model_dir}", "--summary_images=0", *flags]


def _train_command(model_dir, *flags):
    return [sys.executable, "-m", "imagetransformer.train", *_train_flags(model_dir, *flags)]


def test_two_workers_on_loopback_train_the_same_weights(tmp_path):
    model_dir = tmp_path / "run"
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            _train_command(model_dir, "--strategy=multi_worker", "--train_steps=6", "--steps_per_epoch=3",
                           "--save_every=2", "--batch_size=4", "--verbose=2"),
            cwd=ROOT, env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
        assert "Trained steps 0..6" in output, output[-2000:]
        assert "on 2 replica(s)" in output
    # Each says where it wrote its model.
    assert f"model in {model_dir}." in outputs[0]
    assert f"model in {model_dir / checkpoints.WORKERS_DIR / 'worker_1'}." in outputs[1]

    # The chief (worker 0) writes model_dir; worker 1 only its private directory.
    assert checkpoints.load_config(str(model_dir))["train"]["replicas"] == 2
    chief = checkpoints.load_model(str(model_dir))
    other = checkpoints.load_model(str(model_dir / checkpoints.WORKERS_DIR / "worker_1"))
    initial = checkpoints.build_model(str(model_dir))  # fresh weights of the same configuration
    for a, b, c in zip(chief.get_weights(), other.get_weights(), initial.get_weights()):
        np.testing.assert_array_equal(a, b)  # synchronous training: identical weights on both workers
    assert any(not np.array_equal(a, c) for a, c in zip(chief.get_weights(), initial.get_weights()))


def test_multi_worker_without_tf_config_is_one_clear_line(tmp_path):
    env = _env()
    env.pop("TF_CONFIG", None)
    process = subprocess.run(_train_command(tmp_path / "run", "--strategy=multi_worker"), cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 1
    lines = process.stderr.strip().splitlines()
    assert "Traceback" not in process.stderr
    assert "--strategy=multi_worker needs TF_CONFIG" in lines[-1]
    assert not (tmp_path / "run").exists()


def test_sigkill_mid_training_resumes_from_the_last_backup(tmp_path):
    model_dir = tmp_path / "run"
    save_every, train_steps = 3, 24
    # One step per Keras epoch, so that each finished step prints a line ("1/1 - ...") as it ends.
    command = _train_command(model_dir, f"--train_steps={train_steps}", "--steps_per_epoch=1",
                             f"--save_every={save_every}", "--val_examples=0", "--verbose=2")
    process = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    finished, lines = 0, []
    deadline = time.monotonic() + 240
    for line in process.stdout:
        lines.append(line)
        finished += bool(re.match(r"1/1 - ", line))
        if finished >= 8 or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGKILL)  # no chance to clean up
    process.wait(timeout=60)
    assert finished >= 8, "".join(lines)[-2000:]
    steps_before_kill = finished  # at least these steps had ended when it was killed

    resumed = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    match = re.search(r"Resuming at step (\d+) of 24 from \S+backup", resumed.stdout)
    assert match, resumed.stdout[-2000:]
    resumed_at = int(match.group(1))
    assert resumed_at % save_every == 0
    # It lost at most one save interval (plus the steps that may have ended between the last line and the kill).
    assert steps_before_kill - save_every <= resumed_at <= steps_before_kill + 1
    assert f"Trained steps {resumed_at}..{train_steps}" in resumed.stdout
    model = trainer.build_model(configs.get_config("tiny"), (28, 28, 1), tf.distribute.get_strategy())
    model.load_weights(os.path.join(model_dir, checkpoints.WEIGHTS_FILE))
    assert callbacks.optimizer_step(model) == train_steps  # the optimizer state saved with the weights


def test_a_diverging_run_stops_with_one_line_and_keeps_the_last_good_weights(tmp_path, run_program):
    model_dir = tmp_path / "run"
    # In this process (`run_program`): the kills and restarts above and below need real processes, this does not.
    good = run_program("train", *_train_flags(model_dir, "--train_steps=2", "--verbose=0"), cwd=ROOT)
    assert good.returncode == 0, good.stderr[-2000:]
    weights = model_dir / checkpoints.WEIGHTS_FILE
    before = weights.read_bytes()

    diverging = run_program("train", *_train_flags(model_dir, "--train_steps=8", "--steps_per_epoch=4",
                                                   "--save_every=2", "--learning_rate=1e30", "--verbose=0"), cwd=ROOT)
    assert diverging.returncode == 1
    assert "Traceback" not in diverging.stderr
    last = diverging.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Training diverged") and "--learning_rate" in last, last
    assert weights.read_bytes() == before  # the last good checkpoint, untouched
    assert not (model_dir / checkpoints.BACKUP_DIR).exists()  # no diverged state to resume from

    # The same directory trains on with a sane learning rate, from the good weights' step 2.
    again = run_program("train", *_train_flags(model_dir, "--train_steps=4", "--verbose=0"), cwd=ROOT)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Resuming at step 2 of 4" in again.stdout and "Trained steps 2..4" in again.stdout


def test_multi_worker_run_with_a_killed_worker_resumes_when_restarted(tmp_path):
    model_dir = tmp_path / "run"
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    save_every, train_steps = 3, 18
    flags = ["--strategy=multi_worker", f"--train_steps={train_steps}", "--steps_per_epoch=1",
             f"--save_every={save_every}", "--batch_size=4", "--val_examples=0", "--verbose=2"]

    def start(index):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        return subprocess.Popen(_train_command(model_dir, *flags), cwd=ROOT, env=_env(TF_CONFIG=tf_config),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    processes = [start(0), start(1)]
    finished, deadline = 0, time.monotonic() + 240
    for line in processes[1].stdout:
        finished += bool(re.match(r"1/1 - ", line))
        if finished >= 7 or time.monotonic() > deadline:
            break
    assert finished >= 7
    processes[1].send_signal(signal.SIGKILL)  # worker 1 dies
    processes[1].wait(timeout=60)
    # The chief cannot go on without its peer; the cluster manager (here: the test) restarts both tasks.
    try:
        processes[0].wait(timeout=20)
    except subprocess.TimeoutExpired:
        processes[0].send_signal(signal.SIGKILL)
        processes[0].wait(timeout=60)

    restarted = [start(0), start(1)]
    outputs = [p.communicate(timeout=300)[0] for p in restarted]
    steps = []
    for process, output in zip(restarted, outputs):
        assert process.returncode == 0, output[-3000:]
        match = re.search(rf"Resuming at step (\d+) of {train_steps}", output)
        assert match, output[-2000:]
        steps.append(int(match.group(1)))
        assert f"Trained steps {steps[-1]}..{train_steps}" in output
    assert steps[0] == steps[1] and steps[0] % save_every == 0
    assert finished - save_every <= steps[0] <= finished + 1  # at most one save interval repeated
    chief = checkpoints.load_model(str(model_dir))
    other = checkpoints.load_model(str(model_dir / checkpoints.WORKERS_DIR / "worker_1"))
    for a, b in zip(chief.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
