"""Tests of imagetransformer_serving/: the client against servers speaking TF Serving's gRPC and REST protocols, the
configuration files and start_server.sh.

TF Serving's binary cannot be installed here, so `imagetransformer_serving.reference_server` stands in for it: a
gRPC server built on tensorflow-serving-api's `PredictionService` definition and an HTTP server answering TF
Serving's REST JSON, both running the exported SavedModel on 127.0.0.1 with ephemeral ports, in a child process that
the module starts and stops. Every request has a timeout; the server exits by itself after a bounded lifetime.
"""

import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest
from PIL import Image

import imagetransformer as it
from imagetransformer import export as export_lib
from imagetransformer_serving import client, reference_server

from conftest import AS_EXPORTED, random_images, tiny_kwargs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVING = os.path.join(REPO, "imagetransformer_serving")
IMAGE_SHAPE = (8, 8, 3)
KNOWN_ROWS = 4
MODEL = "imagetransformer"
TIMEOUT = 60.0


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return env


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(2)
    return it.ImageTransformer(**tiny_kwargs("local_1d", image_shape=IMAGE_SHAPE, block_length=16, memory_length=8))


@pytest.fixture(scope="module")
def export_dir(model, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("serving") / "imagetransformer")
    export_lib.export_model(model, path)
    return path


@contextlib.contextmanager
def running_server(export_dir, workdir, *flags):
    """`{"grpc": "127.0.0.1:port", "rest": "127.0.0.1:port", "pid": ...}` of a reference server on the export (with
    extra command-line `flags`), while in use."""
    ready = os.path.join(workdir, "ready.json")
    log = open(ready + ".log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "imagetransformer_serving.reference_server", f"--model_base_path={export_dir}",
         f"--model_name={MODEL}",
         "--host=127.0.0.1", "--grpc_port=0", "--rest_port=0", f"--ready_file={ready}", "--lifetime_s=600", *flags],
        cwd=REPO, env=clean_env(PYTHONPATH=REPO), stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 120
        while not os.path.exists(ready):
            if process.poll() is not None or time.time() > deadline:
                log.seek(0)
                pytest.fail(f"reference server did not start (exit {process.poll()}):\n{log.read()[-3000:]}")
            time.sleep(0.2)
        with open(ready) as f:
            ports = json.load(f)
        yield {"grpc": f"127.0.0.1:{ports['grpc_port']}", "rest": f"127.0.0.1:{ports['rest_port']}",
               "pid": process.pid}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        log.close()


# The module's server runs with smaller limits than the defaults, which the load-and-abuse test reaches: REST
# connections, predictions admitted (more than the 32 clients of that test, which are all answered), one model call
# at a time; and with one TensorFlow thread per op and one running ops (TF Serving's thread flags, which suit
# decoding), which that test checks.
MAX_CONNECTIONS, MAX_ADMITTED = 80, 40


@pytest.fixture(scope="module")
def server(export_dir, tmp_path_factory):
    with running_server(export_dir, str(tmp_path_factory.mktemp("server")), f"--rest_max_connections={MAX_CONNECTIONS}",
                        f"--max_admitted_predictions={MAX_ADMITTED}", "--max_concurrent_calls=1",
                        "--rest_socket_timeout_s=120", "--tensorflow_intra_op_parallelism=1",
                        "--tensorflow_inter_op_parallelism=1") as addresses:
        yield addresses


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    """An RGB PNG of the model's size, and its pixels."""
    pixels = random_images(1, IMAGE_SHAPE, seed=3)[0]
    path = str(tmp_path_factory.mktemp("images") / "in.png")
    Image.fromarray(pixels).save(path)
    return path, pixels


def read_png(path):
    array = np.asarray(Image.open(path))
    return array[..., None] if array.ndim == 2 else array


def expected_completion(model, pixels, seed=0, temperature=1.0):
    return it.complete(model, pixels[None], KNOWN_ROWS, temperature=temperature, seed=np.array([seed], np.int64),
                       **AS_EXPORTED).numpy()[0]


def cli(*flags):
    return subprocess.run([sys.executable, "-m", "imagetransformer_serving.client", *flags], cwd=REPO,
                          env=clean_env(PYTHONPATH=REPO),
                          capture_output=True, text=True, timeout=120)


# ----------------------------------------------------------------------------------------------------------------
# The client over both protocols.
# ----------------------------------------------------------------------------------------------------------------
def test_rest_cli_completes_the_image(server, model, image_file, tmp_path):
    path, pixels = image_file
    output = tmp_path / "out.png"
    result = cli(f"--server={server['rest']}", f"--image={path}", f"--output={output}")
    assert result.returncode == 0, result.stderr
    completed = read_png(output)
    np.testing.assert_array_equal(completed[:KNOWN_ROWS], pixels[:KNOWN_ROWS])
    np.testing.assert_array_equal(completed, expected_completion(model, pixels))


def test_grpc_cli_completes_the_image(server, model, image_file, tmp_path):
    path, pixels = image_file
    output = tmp_path / "out.png"
    result = cli(f"--server={server['grpc']}", "--grpc", f"--image={path}", f"--output={output}")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(read_png(output), expected_completion(model, pixels))


@pytest.mark.parametrize("use_grpc", [False, True], ids=["rest", "grpc"])
def test_complete_signature_with_seed_and_temperature(server, model, image_file, tmp_path, use_grpc):
    path, pixels = image_file
    outputs = client.run(server["grpc" if use_grpc else "rest"], "complete", path, str(tmp_path / "c.png"),
                         use_grpc=use_grpc, seed=5, temperature=0.8, timeout=TIMEOUT)
    assert outputs["images"].dtype == np.uint8
    expected = expected_completion(model, pixels, seed=5, temperature=0.8)
    np.testing.assert_array_equal(outputs["images"][0], expected)
    np.testing.assert_array_equal(read_png(tmp_path / "c.png"), expected)


@pytest.mark.parametrize("use_grpc", [False, True], ids=["rest", "grpc"])
def test_sample_and_log_prob_signatures(server, model, image_file, tmp_path, use_grpc):
    path, pixels = image_file
    address = server["grpc" if use_grpc else "rest"]
    outputs = client.run(address, "sample", output=str(tmp_path / "s.png"), use_grpc=use_grpc, seed=7, num_images=2,
                         timeout=TIMEOUT)
    expected = it.sample(model, 2, seed=np.array([7, 8], np.int64), **AS_EXPORTED).numpy()
    np.testing.assert_array_equal(outputs["images"], expected)
    np.testing.assert_array_equal(read_png(tmp_path / "s.png"), np.concatenate(list(expected), axis=1))
    scores = client.run(address, "log_prob", path, use_grpc=use_grpc, timeout=TIMEOUT)
    np.testing.assert_allclose(scores["log_prob"], model.log_prob(pixels[None]).numpy(), rtol=1e-4)
    np.testing.assert_allclose(scores["bits_per_dim"], model.bits_per_dim(pixels[None]).numpy(), rtol=1e-4)


@pytest.mark.parametrize("use_grpc", [False, True], ids=["rest", "grpc"])
def test_wrong_sized_image_gets_the_expected_shape_back(server, tmp_path, use_grpc):
    small = tmp_path / "small.png"
    Image.fromarray(random_images(1, (6, 8, 3))[0]).save(small)
    gray = tmp_path / "gray.png"
    Image.fromarray(random_images(1, (8, 8, 1))[0][..., 0]).save(gray)
    address = server["grpc" if use_grpc else "rest"]
    for path in (small, gray):
        with pytest.raises(client.ClientError, match=r"top_half must be \[batch, 4, 8, 3\] uint8"):
            client.run(address, image_path=str(path), output=str(tmp_path / "x.png"), use_grpc=use_grpc,
                       timeout=TIMEOUT)
    assert not (tmp_path / "x.png").exists()


def test_cli_error_is_one_line(server, tmp_path):
    small = tmp_path / "small.png"
    Image.fromarray(random_images(1, (6, 8, 3))[0]).save(small)
    result = cli(f"--server={server['rest']}", f"--image={small}", f"--output={tmp_path / 'x.png'}")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "top_half must be [batch, 4, 8, 3] uint8" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("content", [b"this is not an image", b""], ids=["text", "empty"])
def test_non_image_file_is_a_clear_error(tmp_path, content):
    bad = tmp_path / "notes.png"
    bad.write_bytes(content)
    result = cli("--server=127.0.0.1:9", f"--image={bad}", f"--output={tmp_path / 'x.png'}")
    assert result.returncode == 1
    assert f"error: --image={bad} is not an image file" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(client.ClientError, match="does not exist"):
        client.run("127.0.0.1:9", image_path=str(tmp_path / "missing.png"), output=str(tmp_path / "x.png"))


def test_unreachable_server_is_a_clear_error(image_file, tmp_path):
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(client.ClientError, match="cannot reach"):
        client.run(f"127.0.0.1:{port}", image_path=image_file[0], output=str(tmp_path / "x.png"), timeout=5)
    with pytest.raises(client.ClientError, match="cannot reach"):
        client.run(f"127.0.0.1:{port}", image_path=image_file[0], output=str(tmp_path / "x.png"), use_grpc=True,
                   timeout=5)


@pytest.mark.parametrize("use_grpc", [False, True], ids=["rest", "grpc"])
def test_model_status(server, use_grpc):
    status = (client.status_grpc if use_grpc else client.status_rest)(server["grpc" if use_grpc else "rest"], MODEL)
    (version,) = status["model_version_status"]
    assert version["version"] == "1" and version["state"] == "AVAILABLE"
    with pytest.raises(client.ClientError, match="NOT_FOUND|HTTP 404"):
        (client.status_grpc if use_grpc else client.status_rest)(server["grpc" if use_grpc else "rest"], "other")


# ----------------------------------------------------------------------------------------------------------------
# TF Serving's REST JSON, spoken directly (what curl users send).
# ----------------------------------------------------------------------------------------------------------------
def post(server, payload, model=MODEL):
    request = urllib.request.Request(f"http://{server['rest']}/v1/models/{model}:predict",
                                     data=json.dumps(payload).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_rest_row_and_columnar_formats(server, model, image_file):
    _, pixels = image_file
    top = pixels[:KNOWN_ROWS].tolist()
    expected = expected_completion(model, pixels)
    status, body = post(server, {"instances": [top]})  # row format, single input; serving_default by default
    assert status == 200
    np.testing.assert_array_equal(np.array(body["predictions"])[0], expected)
    status, body = post(server, {"signature_name": "complete",
                                 "instances": [{"top_half": top, "seed": 0, "temperature": 1.0}]})
    assert status == 200
    np.testing.assert_array_equal(np.array(body["predictions"])[0], expected)
    status, body = post(server, {"signature_name": "log_prob", "inputs": {"images": [pixels.tolist()]}})
    assert status == 200 and set(body["outputs"]) == {"log_prob", "bits_per_dim"}
    status, body = post(server, {"signature_name": "log_prob", "instances": [{"images": pixels.tolist()}]})
    assert status == 200 and set(body["predictions"][0]) == {"log_prob", "bits_per_dim"}


def test_rest_errors(server, image_file):
    _, pixels = image_file
    status, body = post(server, {"signature_name": "complete", "inputs": {
        "top_half": [pixels[:KNOWN_ROWS].tolist()] * 2, "seed": [1], "temperature": [1.0, 1.0]}})
    assert status == 400 and "seed must be [batch]" in body["error"]
    status, body = post(server, {"signature_name": "complete", "inputs": {
        "top_half": [pixels[:KNOWN_ROWS].tolist()], "seed": [1], "temperature": [-1.0]}})
    assert status == 400 and "temperature must be finite and > 0" in body["error"]
    status, body = post(server, {"signature_name": "nope", "instances": [1]})
    assert status == 400 and "nope" in body["error"]
    status, body = post(server, {"instances": [1]}, model="other")
    assert status == 404
    # Integer inputs take integers only, as TF Serving: 1.7, true or "1" for the int64 seed are refused, not rounded.
    for seed, kind in ((1.7, "fractional"), (True, "boolean"), ("1", "string")):
        status, body = post(server, {"signature_name": "complete", "inputs": {
            "top_half": [pixels[:KNOWN_ROWS].tolist()], "seed": [seed], "temperature": [1.0]}})
        assert status == 400 and f"{kind} values where int64 numbers are expected" in body["error"], body
    status, body = post(server, {"signature_name": "complete", "inputs": {
        "top_half": [pixels[:KNOWN_ROWS].tolist()], "seed": [1], "temperature": [1]}})  # an int for a float: fine
    assert status == 200, body


def test_rest_other_methods_get_a_json_error(server):
    import http.client  # pylint: disable=import-outside-toplevel

    host, port = server["rest"].split(":")
    for method in ("PUT", "DELETE", "PATCH"):
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        connection.request(method, f"/v1/models/{MODEL}:predict", body=b"{}")
        response = connection.getresponse()
        assert response.status == 501 and response.getheader("Content-Type") == "application/json", method
        assert "error" in json.loads(response.read())
        connection.close()


# ----------------------------------------------------------------------------------------------------------------
# Configuration files and start_server.sh.
# ----------------------------------------------------------------------------------------------------------------
def test_models_config_parses_as_tf_serving_config():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    with open(os.path.join(SERVING, "models.config")) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == MODEL and model.model_platform == "tensorflow"
    assert model.base_path == "/models/imagetransformer"


def test_batching_parameters_name_known_fields():
    known = {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
             "thread_pool_name", "allowed_batch_sizes", "pad_variable_length_inputs", "enable_large_batch_splitting"}
    with open(os.path.join(SERVING, "batching_parameters.txt")) as f:
        fields = [line.split()[0].rstrip(":") for line in f if line.strip() and not line.startswith("#")]
    assert fields and set(fields) <= known, fields
    assert "max_batch_size" in fields


def test_batching_parameters_file_is_read_as_tf_serving_reads_it(tmp_path):
    parameters = reference_server.BatchingParameters.from_file(os.path.join(SERVING, "batching_parameters.txt"))
    assert parameters == reference_server.BatchingParameters(max_batch_size=16, batch_timeout_micros=5000,
                                                             max_enqueued_batches=64, num_batch_threads=2)
    bad = tmp_path / "bad.txt"
    bad.write_text("max_batch_size { value: 0 }\n")
    with pytest.raises(ValueError, match="max_batch_size.*out of range"):
        reference_server.BatchingParameters.from_file(str(bad))


def test_batching_merges_concurrent_requests_and_keeps_each_answer(export_dir, model, image_file):
    # Requests at once are merged into batches (fewer signature calls than requests) and get exactly the images
    # they get alone (per-image seeds); a bad request among them gets its own error and the others their images.
    parameters = reference_server.BatchingParameters(max_batch_size=8, batch_timeout_micros=300_000,
                                                     num_batch_threads=1)
    servable = reference_server.Servable(export_dir, MODEL, parameters)
    _, pixels = image_file
    top = pixels[None, :KNOWN_ROWS].tolist()

    def concurrently(seeds, bad=()):
        start, answers = threading.Barrier(len(seeds)), {}

        def request(seed):
            inputs = {"top_half": top, "seed": [seed], "temperature": [float("nan") if seed in bad else 1.0]}
            start.wait()
            try:
                answers[seed] = servable.run("complete", inputs, reference_server._json_value)[1]["images"][0]
            except reference_server.ServingError as e:
                answers[seed] = e

        threads = [threading.Thread(target=request, args=(seed,)) for seed in seeds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert sorted(answers) == sorted(seeds)
        for seed in seeds:
            if seed in bad:
                assert isinstance(answers[seed], reference_server.ServingError), seed
                assert "temperature" in str(answers[seed])
            else:
                np.testing.assert_array_equal(answers[seed], expected_completion(model, pixels, seed=seed))

    concurrently([0, 1, 2, 3, 4, 5])
    assert servable.batcher.requests == 6 and servable.batcher.batches < 6  # merged: one call for several
    concurrently([6, 7, 8], bad=(7,))
    assert servable.batcher.requests == 9


def fake_binary(directory, name):
    """An executable that records its arguments and, for a server, the config file it was given."""
    path = directory / name
    path.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > "{directory}/{name}.args"\n'
        'for a in "$@"; do case "$a" in --model_config_file=*) '
        f'cat "${{a#--model_config_file=}}" > "{directory}/{name}.config";; esac; done\n'
    )
    path.chmod(0o755)
    return path


def run_start_server(export_dir, bin_dir, **env):
    environment = clean_env(PATH=f"{bin_dir}:/usr/bin:/bin", **env)
    return subprocess.run(["bash", os.path.join(SERVING, "start_server.sh"), export_dir], env=environment,
                          capture_output=True, text=True, timeout=60)


def test_start_server_runs_tensorflow_model_server(export_dir, tmp_path):
    fake_binary(tmp_path, "tensorflow_model_server")
    result = run_start_server(export_dir, tmp_path)
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "tensorflow_model_server.args").read_text().split("\n")
    assert "--port=8500" in args and "--rest_api_port=8501" in args and "--enable_batching" in args
    assert f"--batching_parameters_file={SERVING}/batching_parameters.txt" in args
    assert f'base_path: "{export_dir}"' in (tmp_path / "tensorflow_model_server.config").read_text()


def test_start_server_falls_back_to_docker(export_dir, tmp_path):
    fake_binary(tmp_path, "docker")
    result = run_start_server(export_dir, tmp_path, TENSORFLOW_MODEL_SERVER="no-such-tensorflow-model-server")
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "docker.args").read_text().split("\n")
    assert args[:2] == ["run", "--rm"]
    assert f"{export_dir}:/models/imagetransformer:ro" in args
    assert "8500:8500" in args and "8501:8501" in args
    assert "--model_config_file=/serving-config/models.config" in args and "--enable_batching" in args


def test_start_server_points_to_the_reference_server_when_dockers_daemon_is_down(export_dir, tmp_path):
    docker = tmp_path / "docker"
    docker.write_text('#!/bin/sh\necho "Cannot connect to the Docker daemon" >&2\nexit 1\n')
    docker.chmod(0o755)
    result = run_start_server(export_dir, tmp_path, TENSORFLOW_MODEL_SERVER="no-such-tensorflow-model-server")
    assert result.returncode == 1
    assert "daemon does not answer" in result.stderr and "imagetransformer_serving.reference_server" in result.stderr


def test_start_server_refuses_a_directory_without_versions(tmp_path):
    (tmp_path / "empty").mkdir()
    fake_binary(tmp_path, "tensorflow_model_server")
    result = run_start_server(str(tmp_path / "empty"), tmp_path)
    assert result.returncode == 1 and "no version directory" in result.stderr
    assert not (tmp_path / "tensorflow_model_server.args").exists()


# ----------------------------------------------------------------------------------------------------------------
# A super-resolution model behind the server.
# ----------------------------------------------------------------------------------------------------------------
def test_super_resolve_signature_from_the_cli_over_rest_and_grpc(tmp_path):
    from imagetransformer.data import resize  # pylint: disable=import-outside-toplevel

    keras.utils.set_random_seed(3)
    model = it.SuperResolutionTransformer(scale=2, **tiny_kwargs("local_1d", image_shape=(4, 4, 1)))
    export_dir = str(tmp_path / "sr")
    export_lib.export_model(model, export_dir)
    small = resize.downsample(random_images(1, model.image_shape, seed=4), 2).numpy()[0]  # [2, 2, 1]
    Image.fromarray(small[..., 0]).save(tmp_path / "small.png")
    expected = it.super_resolve(model, small[None], temperature=0.7, seed=np.array([5], np.int64),
                                **AS_EXPORTED).numpy()[0]
    with running_server(export_dir, str(tmp_path)) as addresses:
        for flags in ([f"--server={addresses['rest']}"], ["--grpc", f"--server={addresses['grpc']}"]):
            output = tmp_path / f"big{len(flags)}.png"
            run = cli(*flags, "--signature=super_resolve", f"--image={tmp_path / 'small.png'}", "--seed=5",
                      "--temperature=0.7", f"--output={output}")
            assert run.returncode == 0, run.stderr[-2000:]
            np.testing.assert_array_equal(read_png(output), expected, err_msg=str(flags))
            run = cli(*flags, "--signature=super_resolve", f"--image={output}", f"--output={tmp_path / 'x.png'}")
            assert run.returncode == 1 and "low_res must be [batch, 2, 2, 1]" in run.stderr, run.stderr[-2000:]


def test_written_request_body_posted_with_curl_completes_like_the_client(server, model, image_file, tmp_path):
    """`--write_request` writes the REST body a user can POST themselves (curl -d @request.json ...)."""
    path, pixels = image_file
    body = tmp_path / "request.json"
    result = cli("--signature=complete", "--seed=3", f"--image={path}", f"--write_request={body}")
    assert result.returncode == 0 and "request body" in result.stdout, result.stderr
    request = urllib.request.Request(f"http://{server['rest']}/v1/models/imagetransformer:predict",
                                     data=body.read_bytes(), method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    images = np.asarray(answer["outputs"]["images"] if isinstance(answer["outputs"], dict) else answer["outputs"],
                        np.uint8)
    np.testing.assert_array_equal(images[0], expected_completion(model, pixels, seed=3))


def test_label_goes_with_every_image_of_a_request():
    image = np.zeros([8, 8, 1], np.uint8)
    inputs = client.build_inputs("complete", image, seed=1, label=7)
    assert inputs["label"].tolist() == [7] and inputs["label"].dtype == np.int64
    assert client.build_inputs("sample", seed=0, num_images=3, label=2)["label"].tolist() == [2, 2, 2]
    assert "label" not in client.build_inputs("log_prob", image)
    with pytest.raises(client.ClientError, match="--label is for class-conditional models"):
        client.build_inputs("super_resolve", image, label=1)


def _raw_post(server, headers, body=b""):
    """Status and JSON error of a POST written byte by byte (headers a client library would not send)."""
    import http.client  # pylint: disable=import-outside-toplevel

    host, port = server["rest"].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", f"/v1/models/{MODEL}:predict", skip_accept_encoding=True)
    for key, value in headers.items():
        connection.putheader(key, value)
    connection.endheaders(body)
    response = connection.getresponse()
    status, answer = response.status, json.loads(response.read())
    connection.close()
    return status, answer.get("error", "")


@pytest.mark.parametrize("length, status, message", [
    ("abc", 400, "Content-Length must be a non-negative integer"),
    ("-5", 400, "Content-Length must be a non-negative integer"),
    (str(1 << 40), 413, "exceeds the server's limit"),
])
def test_rest_bad_or_huge_content_length_is_answered_before_reading(server, length, status, message):
    got_status, error = _raw_post(server, {"Content-Length": length, "Content-Type": "application/json"})
    assert got_status == status and message in error, (got_status, error)


def test_grpc_tensor_declaring_a_huge_shape_is_refused_before_it_is_built(server):
    """A tiny request declaring a huge tensor (a gigabyte of zeros once built) is refused from its declared shape."""
    import grpc  # pylint: disable=import-outside-toplevel
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2  # pylint: disable=import-outside-toplevel
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # pylint: disable=import-outside-toplevel

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "log_prob"
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s)
                                                  for s in (1 << 20, 28, 28, 1)])
    request.inputs["images"].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, tensor_shape=shape))
    with grpc.insecure_channel(server["grpc"]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(request, timeout=60)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "exceeds the server's limit" in error.value.details()


def test_grpc_model_metadata_and_version_labels(server):
    """GetModelMetadata answers the export's signature defs, as TF Serving does; a version label (this server
    configures none) is refused instead of ignored."""
    import grpc  # pylint: disable=import-outside-toplevel
    from tensorflow_serving.apis import (  # pylint: disable=import-outside-toplevel
        get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc, prediction_service_pb2_grpc)

    with grpc.insecure_channel(server["grpc"]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = MODEL
        response = stub.GetModelMetadata(request, timeout=60)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        assert response.metadata["signature_def"].Unpack(signatures)
        assert set(signatures.signature_def) == set(export_lib.SIGNATURES)
        assert set(signatures.signature_def["complete"].inputs) == {"top_half", "seed", "temperature"}
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = MODEL
        status_request.model_spec.version_label = "stable"
        with pytest.raises(grpc.RpcError) as error:
            model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request, timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "stable" in error.value.details()


def test_client_scales_16_bit_images_and_refuses_float_ones(tmp_path):
    """A 16-bit PNG keeps its grey levels (scaled by bit depth, not clipped at 255); a float TIFF is refused."""
    wide = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(wide).save(tmp_path / "wide.png")  # mode I;16
    image = client.read_image(str(tmp_path / "wide.png"))
    assert image.shape == (8, 8, 1) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], np.round(wide.astype(np.int64) * 255 / 65535).astype(np.uint8))
    assert client.read_image(str(tmp_path / "wide.png"), channels=3).shape == (8, 8, 3)
    Image.fromarray(np.full([8, 8], 0.5, np.float32), "F").save(tmp_path / "float.tiff")
    with pytest.raises(client.ClientError, match="floating-point pixels"):
        client.read_image(str(tmp_path / "float.tiff"))


def test_client_bad_output_server_and_seed_are_one_line_errors(tmp_path):
    with pytest.raises(client.ClientError, match="is a directory"):
        client.write_image(str(tmp_path), np.zeros([1, 4, 4, 1], np.uint8))
    assert not any(name.endswith(".tmp.png") for name in os.listdir(tmp_path.parent))
    with pytest.raises(client.ClientError, match="port 'notaport' must be a number"):
        client.predict_rest("localhost:notaport", MODEL, "sample", {"seed": np.zeros([1], np.int64)})
    with pytest.raises(client.ClientError, match="must fit in int64"):
        client.build_inputs("sample", seed=2**70)


def test_server_serves_the_highest_version_that_loads(export_dir, tmp_path):
    # An empty or half-copied newer version folder is skipped, as TF Serving does; no loadable version at all, or a
    # missing base path, is one line and exit status 1.
    base = tmp_path / "base"
    shutil.copytree(os.path.join(export_dir, "1"), base / "1")
    (base / "2").mkdir()  # empty
    (base / "3").mkdir()
    (base / "3" / "saved_model.pb").write_bytes(b"half copied")
    servable = reference_server.Servable(str(base), MODEL)
    assert servable.version == 1 and "serving_default" in servable.signatures
    for broken in (tmp_path / "none", tmp_path / "empty_versions"):
        if broken.name == "empty_versions":
            (broken / "1").mkdir(parents=True)
        result = subprocess.run([sys.executable, "-m", "imagetransformer_serving.reference_server",
                                 f"--model_base_path={broken}", "--grpc_port=-1", "--rest_port=0"], cwd=REPO,
                                env=clean_env(PYTHONPATH=REPO), capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1].startswith(f"error: --model_base_path={broken}")


# ----------------------------------------------------------------------------------------------------------------
# Malformed bodies, load and abuse.
# ----------------------------------------------------------------------------------------------------------------
def _exchange(address, raw, timeout=60):
    """Writes `raw` on one connection and reads every answer until the server closes it: [(status, JSON body)]."""
    import socket  # pylint: disable=import-outside-toplevel

    host, port = address.split(":")
    answers = []
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(raw)
        stream = sock.makefile("rb")
        while True:
            status_line = stream.readline()
            if not status_line:
                return answers
            headers = {}
            for line in iter(stream.readline, b"\r\n"):
                key, _, value = line.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            answers.append((int(status_line.split()[1]), json.loads(stream.read(int(headers["content-length"])))))


def _chunked(data, size=100):
    return b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size]) for i in range(0, len(data), size))


def test_rest_chunked_bodies_and_deep_nesting_get_one_answer_each(server, model, image_file):
    _, pixels = image_file
    address = server["rest"]
    head = f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\n".encode()
    body = json.dumps({"signature_name": "log_prob", "instances": [{"images": pixels.tolist()}]}).encode()
    status_request = f"GET /v1/models/{MODEL} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    # A chunked body is read whole; the next request on the connection is answered as itself.
    answers = _exchange(address, head + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(body) + b"0\r\n\r\n"
                        + status_request)
    assert [status for status, _ in answers] == [200, 200], answers
    np.testing.assert_allclose(answers[0][1]["predictions"][0]["log_prob"], model.log_prob(pixels[None]).numpy()[0],
                               rtol=1e-4)
    assert answers[1][1]["model_version_status"][0]["state"] == "AVAILABLE"
    # A malformed or oversized chunked body: one answer, then the connection is closed (what follows is not taken
    # for a request).
    for raw, status, message in (
        (b"zz\r\n{}\r\n0\r\n\r\n", 400, "malformed chunked body"),
        (b"%x\r\n" % (64 << 20), 413, "exceeds the server's limit"),
    ):
        answers = _exchange(address, head + b"Transfer-Encoding: chunked\r\n\r\n" + raw + status_request)
        assert len(answers) == 1 and answers[0][0] == status and message in answers[0][1]["error"], answers
    # JSON nested deeper than Python's recursion limit: a 400 answer, not a dropped connection.
    deep = b"[" * 100_000 + b"]" * 100_000
    answers = _exchange(address, head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(deep) + deep)
    assert answers == [(400, {"error": "JSON Parse error: nesting too deep"})], answers


def _thread_names(pid):
    """How many threads of process `pid` have each name (Linux truncates names to 15 characters)."""
    names = collections.Counter()
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                names[f.read().strip()] += 1
    return names


def test_reference_server_thread_flags_are_checked():
    for flag in ("--tensorflow_intra_op_parallelism=-1", "--tensorflow_inter_op_parallelism=-2"):
        process = subprocess.run([sys.executable, "-m", "imagetransformer_serving.reference_server",
                                  "--model_base_path=/nonexistent", flag], cwd=REPO, env=clean_env(PYTHONPATH=REPO),
                                 capture_output=True, text=True, timeout=60)
        assert process.returncode == 2, process.stderr
        assert f"{flag.split('=')[0]}={flag.split('=')[1]} must be 0 (one thread per core) or more" in process.stderr


def _proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["Threads"]), int(fields["VmHWM"].split()[0]) // 1024  # threads, peak RSS in MiB


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads threads and memory from /proc")
def test_reference_server_under_load_and_abuse(server, model, image_file, request):
    """32 concurrent clients over REST and gRPC, 40 stalled connections, and oversized, malformed and deeply nested
    requests at once: every normal request gets its exact answer and every bad one its error; gRPC status calls are
    answered while predictions queue; REST connections beyond the limit are refused without a thread; the
    server's threads stay within their bound. The peak RSS is printed (docs/robustness.md records it)."""
    import socket  # pylint: disable=import-outside-toplevel
    from concurrent import futures  # pylint: disable=import-outside-toplevel

    _, pixels = image_file
    max_connections, admitted = MAX_CONNECTIONS, MAX_ADMITTED
    expected = {seed: expected_completion(model, pixels, seed=seed) for seed in range(4)}
    log_prob = model.log_prob(pixels[None]).numpy()[0]
    top = pixels[None, :KNOWN_ROWS]
    stalled = []
    request.addfinalizer(lambda: [sock.close() for sock in stalled])  # the module's server serves the next tests
    pid = server["pid"]
    client.predict_rest(server["rest"], MODEL, "log_prob", {"images": pixels[None]})  # warm up both paths
    client.predict_grpc(server["grpc"], MODEL, "log_prob", {"images": pixels[None]})
    base_threads, _ = _proc_status(pid)
    # --tensorflow_inter_op_parallelism=1 took effect: TensorFlow's inter-op pool has one thread (one per core by
    # default).
    assert _thread_names(pid)["tf_Compute"] == 1, _thread_names(pid)

    def stall():
        host, port = server["rest"].split(":")
        sock = socket.create_connection((host, int(port)), timeout=60)
        sock.sendall(f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{{".encode())
        stalled.append(sock)

    def normal(i):
        seed = i % 4
        address, predict = ((server["grpc"], client.predict_grpc) if i % 2 else (server["rest"], client.predict_rest))
        if i % 3:
            images = predict(address, MODEL, "complete", {"top_half": top, "seed": np.array([seed], np.int64),
                                                           "temperature": np.ones([1], np.float32)})["images"]
            np.testing.assert_array_equal(images[0], expected[seed])
        else:
            scores = predict(address, MODEL, "log_prob", {"images": pixels[None]})
            np.testing.assert_allclose(scores["log_prob"][0], log_prob, rtol=1e-4)

    def abusive(i):
        kind = i % 4
        if kind == 0:
            status, error = _raw_post(server, {"Content-Length": str(1 << 40)})
            assert status == 413 and "exceeds the server's limit" in error
        elif kind == 1:
            status, error = _raw_post(server, {"Content-Length": "9"}, b"{not json")
            assert status == 400 and "JSON Parse error" in error
        elif kind == 2:
            deep = b"[" * 50_000
            status, error = _raw_post(server, {"Content-Length": str(len(deep))}, deep)
            assert status == 400 and "nesting too deep" in error, error
        else:
            with pytest.raises(client.ClientError, match="INVALID_ARGUMENT"):
                client.predict_grpc(server["grpc"], MODEL, "log_prob", {"images": np.zeros([1, 3, 8, 3], np.uint8)})

    for _ in range(40):
        stall()
    peak_threads = 0
    with futures.ThreadPoolExecutor(32) as pool:
        jobs = [pool.submit(normal, i) for i in range(64)] + [pool.submit(abusive, i) for i in range(32)]
        while not all(job.done() for job in jobs):
            peak_threads = max(peak_threads, _proc_status(pid)[0])
            time.sleep(0.05)
        for job in jobs:
            job.result()  # every normal request answered exactly, every bad one with its error

        # gRPC status while predictions queue (one runs at a time): answered before they have all run.
        batch = np.repeat(top, 64, axis=0)
        busy = [pool.submit(client.predict_grpc, server["grpc"], MODEL, "complete",
                            {"top_half": batch, "seed": np.arange(64, dtype=np.int64),
                             "temperature": np.ones([64], np.float32)}) for _ in range(20)]
        time.sleep(0.1)
        client.status_grpc(server["grpc"], MODEL, timeout=TIMEOUT)
        done_at_status = sum(job.done() for job in busy)
        for job in busy:
            job.result()
    assert done_at_status < len(busy), "the status call waited for every queued prediction"

    # REST connections beyond the limit: refused at once with 503, no thread; the server keeps answering
    # once connections close.
    while len(stalled) < max_connections:
        stall()
    time.sleep(0.5)
    peak_threads = max(peak_threads, _proc_status(pid)[0])
    status, body = _exchange(server["rest"], b"GET /v1/models/imagetransformer HTTP/1.1\r\n\r\n")[0]
    assert status == 503 and "retry later" in body["error"]
    for sock in stalled:
        sock.close()
    stalled.clear()
    deadline = time.time() + 30
    while True:
        try:
            assert client.status_rest(server["rest"], MODEL)["model_version_status"][0]["state"] == "AVAILABLE"
            break
        except client.ClientError:
            assert time.time() < deadline, "the server did not take new connections after the stalled ones closed"
            time.sleep(0.2)
    _, peak_rss_mib = _proc_status(pid)
    # Threads: one per REST connection (at most max_connections) and per admitted gRPC prediction (+4 reserved).
    bound = base_threads + max_connections + admitted + 4
    print(f"reference server under load: {peak_threads} threads at most (bound {bound}, {base_threads} idle), "
          f"peak RSS {peak_rss_mib} MiB")
    assert peak_threads <= bound
