"""A small stand-in for TensorFlow Serving: runs an exported SavedModel behind TF Serving's two protocols.

TF Serving's own binary (`tensorflow_model_server`) is not installable with pip, so the tests (and anyone without
it or docker) use this server to check `imagetransformer_serving.client` end to end. It speaks:

- gRPC: `tensorflow.serving.PredictionService/Predict` and `/GetModelMetadata` (signature defs), and
  `tensorflow.serving.ModelService/GetModelStatus`, built on `tensorflow-serving-api`'s generated service
  definitions (no version labels: asking for one is an error);
- REST, as TF Serving documents it: `GET /v1/models/NAME[/versions/N]` (status), `GET /v1/models/NAME/metadata`,
  `POST /v1/models/NAME[/versions/N]:predict` with `signature_name` and either `instances` (row format, answered
  with `predictions`) or `inputs` (columnar format, answered with `outputs`); errors as `{"error": "..."}`.

It serves the highest integer version under `--model_base_path` that loads (TF Serving's default version
policy). It only needs TensorFlow: the SavedModel runs without `imagetransformer`.

```
python -m imagetransformer_serving.reference_server --model_base_path=exported/imagetransformer --grpc_port=8500 --rest_port=8501
```
Port 0 picks a free port; `--ready_file` receives `{"grpc_port": ..., "rest_port": ...}` once both listen.
With `--enable_batching` (and `--batching_parameters_file`, TF Serving's flags) concurrent requests are
merged into batches (`Batcher`). Not a production server: no version hot-reload.

What a client can make it hold is bounded: a REST body (`MAX_REQUEST_BYTES`, by `Content-Length` or chunked) and a
gRPC tensor's declared values (`MAX_TENSOR_VALUES`) are checked before anything is built; REST connections get a
thread each up to `--rest_max_connections` (one more is answered 503 at once) and are closed after
`--rest_socket_timeout_s` of silence; at most `--max_admitted_predictions` predictions are in the server at once
(one more is answered UNAVAILABLE / 503) and `--max_concurrent_calls` of them run; the gRPC server keeps threads
for status and metadata calls beyond those, so they are answered however busy the model is.
"""

import os

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import dataclasses
import http
import http.server
import json
import re
import signal
import sys
import threading
import time
from concurrent import futures

import numpy as np

# Request limits, checked before any tensor is built: the bytes of a REST body, and the values a gRPC tensor may
# declare (a 63-byte request can otherwise declare a [1024, 28, 28, 1] tensor that make_ndarray expands).
MAX_REQUEST_BYTES = 32 << 20
MAX_TENSOR_VALUES = 4 << 20
# Seconds a REST connection may stay silent before the server drops it (a stalled client holds its thread no longer).
SOCKET_TIMEOUT_S = 30.0
# REST connections served at once (a thread each); one more is answered 503 at once, without a thread.
MAX_CONNECTIONS = 128
# Model calls running at once, and predictions admitted in all (running or waiting their turn); one more is
# answered UNAVAILABLE (HTTP 503) at once. The gRPC server has a thread for each admitted prediction and
# `RESERVED_GRPC_THREADS` more, so status and metadata calls are answered however busy the model is.
MAX_CONCURRENT_CALLS = 2
MAX_ADMITTED_PREDICTIONS = 64
RESERVED_GRPC_THREADS = 4


class ServingError(Exception):
    """A request error with its gRPC status name and HTTP status code."""

    def __init__(self, message, code="INVALID_ARGUMENT", http_status=400):
        super().__init__(message)
        self.code = code
        self.http_status = http_status


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's `--batching_parameters_file` fields that this server uses (see `batching_parameters.txt`)."""

    max_batch_size: int = 16
    batch_timeout_micros: int = 5000
    max_enqueued_batches: int = 64
    num_batch_threads: int = 2

    @classmethod
    def from_file(cls, path):
        """Reads the `name { value: N }` fields of a TF Serving batching parameters file (text protobuf); fields
        this server does not use (`pad_variable_length_inputs`, ...) are ignored."""
        with open(path) as f:
            text = f.read()
        values = {name: int(value) for name, value in re.findall(r"(\w+)\s*\{\s*value:\s*(-?\d+)\s*\}", text)}
        known = {field.name for field in dataclasses.fields(cls)}
        parameters = cls(**{k: v for k, v in values.items() if k in known})
        bad = {k: v for k, v in dataclasses.asdict(parameters).items() if v < (0 if k == "batch_timeout_micros" else 1)}
        if bad:
            raise ValueError(f"{path}: {bad} out of range (batch_timeout_micros >= 0, the others >= 1)")
        return parameters


class _Pending:
    """One request waiting in the `Batcher`: its inputs, and its outputs or error once the batch ran."""

    def __init__(self, key, arrays, size):
        self.key, self.arrays, self.size = key, arrays, size
        self.arrival = time.monotonic()
        self.done = threading.Event()
        self.outputs = self.error = None


class Batcher:
    """Request batching as TF Serving's `--enable_batching` does it: concurrent calls of one signature whose inputs
    agree beyond the batch dimension (axis 0 of every input) are merged into one call of at most `max_batch_size`
    images, the first request waiting at most `batch_timeout_micros` for others; the outputs (batch-major too) are
    split back per request. The exported signatures generate image i from its own seed, so a merged request gets
    exactly the images it would get alone, only sooner: a completion runs its H*W/2 sequential steps whatever the
    batch size. A merged call that fails runs again request by request, so each request gets its own answer.

    Args:
        call: `(signature_name, {input: np.ndarray}) -> {output: np.ndarray}`, raising `ServingError`.
        parameters: `BatchingParameters`.
    """

    def __init__(self, call, parameters):
        self._call = call
        self.parameters = parameters
        self._timeout_s = parameters.batch_timeout_micros / 1e6
        self._queue = []
        self._ready = threading.Condition()
        self.batches = self.requests = 0  # calls made and requests answered (merged requests count once each)
        for i in range(parameters.num_batch_threads):
            threading.Thread(target=self._work, name=f"batch-{i}", daemon=True).start()

    def __call__(self, signature_name, arrays):
        sizes = {len(a) if a.ndim else -1 for a in arrays.values()}
        size = sizes.pop() if len(sizes) == 1 else -1
        if size < 1 or size >= self.parameters.max_batch_size:  # nothing to merge (or the signature's check answers)
            return self._call(signature_name, arrays)
        key = (signature_name, tuple(sorted((k, a.dtype.str, a.shape[1:]) for k, a in arrays.items())))
        pending = _Pending(key, arrays, size)
        with self._ready:
            if len(self._queue) >= self.parameters.max_enqueued_batches * self.parameters.max_batch_size:
                raise ServingError("the request batching queue is full; retry later", "UNAVAILABLE", 503)
            self._queue.append(pending)
            self._ready.notify_all()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.outputs

    def _take(self):
        """The next batch: the oldest request and the later ones of the same key that fit, once the batch is full or
        the oldest request has waited `batch_timeout_micros`."""
        with self._ready:
            while True:
                while not self._queue:
                    self._ready.wait()
                head = self._queue[0]
                group, total = [], 0
                for pending in self._queue:
                    if pending.key == head.key and total + pending.size <= self.parameters.max_batch_size:
                        group.append(pending)
                        total += pending.size
                wait = head.arrival + self._timeout_s - time.monotonic()
                if total >= self.parameters.max_batch_size or wait <= 0:
                    for pending in group:
                        self._queue.remove(pending)
                    return group
                self._ready.wait(wait)

    def _work(self):
        while True:
            group = self._take()
            self._run(group)

    def _run(self, group):
        if len(group) > 1:
            try:
                merged = {k: np.concatenate([p.arrays[k] for p in group]) for k in group[0].arrays}
                outputs = self._call(group[0].key[0], merged)
                ends = np.cumsum([p.size for p in group])[:-1]
                parts = {k: np.split(v, ends) for k, v in outputs.items()}
                for i, pending in enumerate(group):
                    pending.outputs = {k: v[i] for k, v in parts.items()}
                self.batches += 1
                self.requests += len(group)
                for pending in group:
                    pending.done.set()
                return
            except ServingError:
                pass  # some request is bad: answer each on its own
        for pending in group:
            try:
                pending.outputs = self._call(pending.key[0], pending.arrays)
            except ServingError as e:
                pending.error = e
            except Exception as e:  # pylint: disable=broad-except  (the waiting request must get an answer)
                pending.error = ServingError(f"{type(e).__name__}: {e}", "INTERNAL", 500)
            self.batches += 1
            self.requests += 1
            pending.done.set()


class Servable:
    """The latest version of a SavedModel base path, with TF Serving's input/output checks; with `batching`
    (`BatchingParameters`), concurrent requests are merged by a `Batcher`.

    At most `max_concurrent_calls` signature calls run at once and `max_admitted` predictions are in the server at
    once (running, batching or waiting to run); one more is refused with UNAVAILABLE at once, so memory and threads
    stay bounded however many clients call."""

    def __init__(self, model_base_path, model_name, batching=None, max_concurrent_calls=MAX_CONCURRENT_CALLS,
                 max_admitted=MAX_ADMITTED_PREDICTIONS, intra_op_threads=0, inter_op_threads=0):
        import tensorflow as tf

        self.tf = tf
        # TF Serving's --tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism (0: one per core). They
        # take effect only before TensorFlow's runtime starts, so before the first load.
        if intra_op_threads:
            tf.config.threading.set_intra_op_parallelism_threads(int(intra_op_threads))
        if inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(int(inter_op_threads))
        versions = [int(n) for n in os.listdir(model_base_path) if n.isdigit()]
        if not versions:
            raise ValueError(f"no integer-named version directory in {model_base_path}")
        self.name = model_name
        # TF Serving serves the highest version it can load: an empty or half-copied newer folder is skipped.
        errors = []
        for version in sorted(versions, reverse=True):
            try:
                self.loaded = tf.saved_model.load(os.path.join(model_base_path, str(version)))  # keep a reference
            except (OSError, ValueError, tf.errors.OpError) as e:
                errors.append(f"version {version}: {type(e).__name__}: {' '.join(str(e).split())[:200]}")
                print(f"skipping version {version} of {model_base_path}: it does not load ({errors[-1]})",
                      file=sys.stderr, flush=True)
                continue
            self.version = version
            self.saved_model_dir = os.path.join(model_base_path, str(version))
            break
        else:
            raise ValueError(f"no version in {model_base_path} loads: {'; '.join(errors)}")
        self.signatures = dict(self.loaded.signatures)
        self.batcher = Batcher(self._call, batching) if batching is not None else None
        if batching is not None:
            max_admitted = max(max_admitted, batching.max_batch_size)  # a whole batch can gather
        self.max_admitted = int(max_admitted)
        self._admitted = threading.BoundedSemaphore(self.max_admitted)
        self._running = threading.BoundedSemaphore(max_concurrent_calls)

    def check_model(self, name, version=None):
        if name != self.name:
            raise ServingError(f"Servable not found for request: Latest({name})", "NOT_FOUND", 404)
        if version is not None and int(version) != self.version:
            raise ServingError(f"Servable not found for request: Specific({name}, {version})", "NOT_FOUND", 404)

    def signature(self, signature_name):
        name = signature_name or "serving_default"
        if name not in self.signatures:
            raise ServingError(
                f"Serving signature name: \"{name}\" not found in signature def (available: "
                f"{', '.join(sorted(self.signatures))})", "INVALID_ARGUMENT", 400,
            )
        return name, self.signatures[name]

    def input_specs(self, signature):
        return signature.structured_input_signature[1]  # {name: TensorSpec}

    def run(self, signature_name, inputs, convert):
        """`inputs`: {name: value}; `convert(value, spec)` -> np.ndarray. Returns {output: np.ndarray}."""
        if not self._admitted.acquire(blocking=False):
            raise ServingError(f"the server is busy ({self.max_admitted} predictions running or waiting); retry "
                               "later", "UNAVAILABLE", 503)
        try:
            return self._run(signature_name, inputs, convert)
        finally:
            self._admitted.release()

    def _run(self, signature_name, inputs, convert):
        name, signature = self.signature(signature_name)
        specs = self.input_specs(signature)
        if set(inputs) != set(specs):
            raise ServingError(
                f"input size does not match signature: {len(inputs)}!={len(specs)} len({{{', '.join(sorted(inputs))}}})"
                f" != len({{{', '.join(sorted(specs))}}}). Sent extra: {sorted(set(inputs) - set(specs))}. "
                f"Missing but required: {sorted(set(specs) - set(inputs))}."
            )
        arrays = {}
        for key, spec in specs.items():
            array = convert(inputs[key], spec)
            if array.dtype != spec.dtype.as_numpy_dtype:
                raise ServingError(f"Expects arg[{key}] to be {spec.dtype.name} but {array.dtype.name} is provided")
            if not spec.shape.is_compatible_with(array.shape):
                raise ServingError(f"input {key} of shape {list(array.shape)} does not match the signature's "
                                   f"{spec.shape}")
            arrays[key] = array
        return name, (self.batcher or self._call)(name, arrays)

    def _call(self, name, arrays):
        """One call of signature `name` on checked numpy inputs; numpy outputs."""
        tf = self.tf
        try:
            with self._running:
                outputs = self.signatures[name](**{k: tf.constant(v) for k, v in arrays.items()})
        except tf.errors.OpError as e:
            invalid = isinstance(e, tf.errors.InvalidArgumentError)
            raise ServingError(e.message, "INVALID_ARGUMENT" if invalid else "INTERNAL", 400 if invalid else 500)
        return {k: v.numpy() for k, v in outputs.items()}


# --------------------------------------------------------------------------------------------------------------------
# REST.
# --------------------------------------------------------------------------------------------------------------------
_MODEL_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?(?:/(metadata))?(?::(predict))?$")


def _json_value(value, spec):
    """The JSON `value` of input `spec` as an array of its dtype. Integer inputs take integers only (TF Serving
    refuses 1.7, true or "1" for an int64 input rather than rounding); float inputs take numbers."""
    dtype = np.dtype(spec.dtype.as_numpy_dtype)
    try:
        raw = np.asarray(value)
        if raw.dtype == object or raw.dtype.kind in "USb" or (dtype.kind in "iu" and raw.dtype.kind not in "iu"):
            kind = {"f": "fractional", "b": "boolean", "U": "string", "S": "string"}.get(raw.dtype.kind, "mixed")
            raise ValueError(f"{kind} values where {spec.dtype.name} numbers are expected")
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as e:
        raise ServingError(f"could not parse the JSON value for {spec.name} as {spec.dtype.name}: {e}")


def rest_predict(servable, body):
    if not isinstance(body, dict):
        raise ServingError("JSON object expected")
    signature_name, signature = servable.signature(body.get("signature_name"))
    specs = servable.input_specs(signature)
    if ("instances" in body) == ("inputs" in body):
        raise ServingError("JSON Value: must have exactly one of 'instances' (row format) or 'inputs' (columnar)")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise ServingError("'instances' must be a non-empty list")
        if len(specs) == 1 and not all(isinstance(i, dict) for i in instances):
            inputs = {next(iter(specs)): instances}
        else:
            if not all(isinstance(i, dict) for i in instances):
                raise ServingError("each instance must be a JSON object naming the signature's inputs")
            keys = set(instances[0])
            if any(set(i) != keys for i in instances):
                raise ServingError("every instance must have the same named inputs")
            inputs = {k: [i[k] for i in instances] for k in keys}
    else:
        inputs = body["inputs"]
        if len(specs) == 1 and not isinstance(inputs, dict):
            inputs = {next(iter(specs)): inputs}
        if not isinstance(inputs, dict):
            raise ServingError("'inputs' must be a JSON object naming the signature's inputs")
    _, outputs = servable.run(signature_name, inputs, _json_value)
    if "instances" in body:
        batch = {len(v) for v in outputs.values()}
        if len(batch) != 1:
            raise ServingError("outputs do not share the batch dimension; use the columnar 'inputs' format", "INTERNAL",
                               500)
        n = batch.pop()
        if len(outputs) == 1:
            (value,) = outputs.values()
            return {"predictions": value.tolist()}
        return {"predictions": [{k: v[i].tolist() for k, v in outputs.items()} for i in range(n)]}
    if len(outputs) == 1:
        (value,) = outputs.values()
        return {"outputs": value.tolist()}
    return {"outputs": {k: v.tolist() for k, v in outputs.items()}}


def rest_status(servable):
    return {"model_version_status": [{
        "version": str(servable.version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""},
    }]}


def rest_metadata(servable):
    def tensor_info(spec):
        dims = [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape.as_list()]
        return {"dtype": "DT_" + spec.dtype.name.upper(), "tensor_shape": {"dim": dims, "unknown_rank": False},
                "name": spec.name}

    signature_def = {}
    for name, signature in servable.signatures.items():
        signature_def[name] = {
            "inputs": {k: tensor_info(s) for k, s in servable.input_specs(signature).items()},
            "outputs": {k: tensor_info(s) for k, s in signature.structured_outputs.items()},
            "method_name": "tensorflow/serving/predict",
        }
    return {
        "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
        "metadata": {"signature_def": {"signature_def": signature_def}},
    }


def _content_length(header, limit):
    """The body size a REST request declares, checked against `limit` before anything is read."""
    try:
        length = int(header or 0)
    except ValueError:
        length = -1
    if length < 0:
        raise ServingError(f"Content-Length must be a non-negative integer, got {header!r}")
    if length > limit:
        raise ServingError(f"request body of {length} bytes exceeds the server's limit of {limit} bytes; send "
                           "fewer images per request", "RESOURCE_EXHAUSTED", 413)
    return length


def _read_chunked(rfile, limit):
    """A `Transfer-Encoding: chunked` body (RFC 9112 section 7.1), at most `limit` bytes in all."""
    body = bytearray()
    while True:
        line = rfile.readline(1026)
        try:
            size = int(line.split(b";")[0].strip(), 16) if line.endswith(b"\n") else -1
        except ValueError:
            size = -1
        if size < 0:
            raise ServingError(f"malformed chunked body: chunk size line {bytes(line[:40])!r}")
        if len(body) + size > limit:
            raise ServingError(f"request body of more than {limit} bytes exceeds the server's limit of {limit} bytes; "
                               "send fewer images per request", "RESOURCE_EXHAUSTED", 413)
        if size == 0:
            break
        chunk = rfile.read(size)
        if len(chunk) != size or rfile.readline(3) not in (b"\r\n", b"\n"):
            raise ServingError("malformed chunked body: a chunk is shorter than its size or not followed by CRLF")
        body += chunk
    for _ in range(64):  # trailer fields, up to the empty line
        if rfile.readline(8192) in (b"\r\n", b"\n", b""):
            return bytes(body)
    raise ServingError("malformed chunked body: too many trailer lines")


def _read_json(rfile, headers, limit):
    """The JSON body of a POST: by its Content-Length, or chunked; at most `limit` bytes."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        data = _read_chunked(rfile, limit)
    else:
        data = rfile.read(_content_length(headers.get("Content-Length"), limit))
    try:
        return json.loads(data or b"null")
    except (ValueError, RecursionError) as e:  # RecursionError: nesting deeper than Python's recursion limit
        raise ServingError(f"JSON Parse error: {'nesting too deep' if isinstance(e, RecursionError) else e}")


_BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n%s")


class BoundedHTTPServer(http.server.ThreadingHTTPServer):
    """`ThreadingHTTPServer` with at most `max_connections` connection threads: one more connection is answered
    503 from the accepting thread and closed, so stalled or many clients cannot grow the server's threads."""

    daemon_threads = True

    def __init__(self, address, handler, max_connections=MAX_CONNECTIONS):
        super().__init__(address, handler)
        self.max_connections = int(max_connections)
        self._slots = threading.BoundedSemaphore(self.max_connections)

    def process_request(self, request, client_address):
        if self._slots.acquire(blocking=False):
            try:
                super().process_request(request, client_address)  # the thread releases the slot
            except BaseException:
                self._slots.release()
                raise
            return
        body = json.dumps({"error": f"the server is serving {self.max_connections} connections; retry later"})
        try:
            request.settimeout(1.0)
            request.sendall(_BUSY_RESPONSE % (len(body), body.encode()))
        except OSError:
            pass
        self.shutdown_request(request)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def make_rest_server(servable, port, host="127.0.0.1", max_request_bytes=MAX_REQUEST_BYTES,
                     max_connections=MAX_CONNECTIONS, socket_timeout_s=SOCKET_TIMEOUT_S):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = socket_timeout_s  # applied to each connection's socket

        def log_message(self, *args):
            pass

        def send_error(self, code, message=None, explain=None):
            # http.server's own errors (an unsupported method, a malformed request line) as TF Serving's JSON.
            del explain
            self.close_connection = True
            self._reply(code, {"error": message or http.HTTPStatus(code).phrase})

        def _reply(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _route(self, method):
            match = _MODEL_PATH.match(self.path.split("?")[0])
            body_read = method == "GET"
            try:
                if not match:
                    raise ServingError(f"Malformed request: {method} {self.path}", "INVALID_ARGUMENT", 404)
                name, version, metadata, predict = match.groups()
                servable.check_model(name, version)
                if method == "GET" and not predict:
                    return self._reply(200, rest_metadata(servable) if metadata else rest_status(servable))
                if method == "POST" and predict and not metadata:
                    body = _read_json(self.rfile, self.headers, max_request_bytes)
                    body_read = True
                    return self._reply(200, rest_predict(servable, body))
                raise ServingError(f"Malformed request: {method} {self.path}", "INVALID_ARGUMENT", 404)
            except Exception as e:  # pylint: disable=broad-except  (every request gets an answer)
                if not isinstance(e, ServingError):
                    print(f"error: {method} {self.path}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                    e = ServingError(f"{type(e).__name__}: {e}", "INTERNAL", 500)
                if not body_read:
                    self.close_connection = True  # an unread body must not be taken for the next request
                return self._reply(e.http_status, {"error": str(e)})

        def do_GET(self):
            self._route("GET")

        def do_POST(self):
            self._route("POST")

    return BoundedHTTPServer((host, port), Handler, max_connections)


# --------------------------------------------------------------------------------------------------------------------
# gRPC.
# --------------------------------------------------------------------------------------------------------------------
def _declared_values(tensor_proto, limit):
    """Checks the shape a `TensorProto` declares (before `make_ndarray` allocates it): known, non-negative
    dimensions of at most `limit` values in all."""
    dims = [d.size for d in tensor_proto.tensor_shape.dim]
    if tensor_proto.tensor_shape.unknown_rank or any(d < 0 for d in dims):
        raise ServingError(f"tensor shape {dims} must be fully known and non-negative")
    count = int(np.prod(dims, dtype=np.float64)) if dims else 1
    if count > limit:
        raise ServingError(f"tensor of shape {dims} ({count} values) exceeds the server's limit of {limit} values; "
                           "send fewer images per request", "RESOURCE_EXHAUSTED", 413)
    return count


def make_grpc_server(servable, port, host="127.0.0.1", max_tensor_values=MAX_TENSOR_VALUES):
    """A gRPC server with a thread for each prediction `servable` admits and `RESERVED_GRPC_THREADS` more, so that
    status and metadata calls never wait behind predictions; calls beyond twice that are refused by gRPC
    (RESOURCE_EXHAUSTED) instead of queueing without bound."""
    import grpc
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    tf = servable.tf

    def abort(context, error):
        context.abort(getattr(grpc.StatusCode, error.code), str(error))

    def proto_value(value, spec):
        del spec
        _declared_values(value, max_tensor_values)
        try:
            return tf.make_ndarray(value)
        except (TypeError, ValueError) as e:
            raise ServingError(f"malformed tensor: {e}")

    def check_spec(model_spec):
        if model_spec.HasField("version_label"):  # labels need a model config that names them; this has none
            raise ServingError(f"Unrecognized servable version label: {model_spec.version_label} (this server has "
                               "no version labels; ask for a version number or none)")
        servable.check_model(model_spec.name, model_spec.version.value if model_spec.HasField("version") else None)

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        def GetModelMetadata(self, request, context):
            try:
                check_spec(request.model_spec)
                if list(request.metadata_field) != ["signature_def"]:
                    raise ServingError(f"Metadata field(s) {list(request.metadata_field)} not supported; ask for "
                                       "['signature_def']")
            except ServingError as e:
                abort(context, e)
            saved_model = saved_model_pb2.SavedModel()
            with open(os.path.join(servable.saved_model_dir, "saved_model.pb"), "rb") as f:
                saved_model.ParseFromString(f.read())
            signatures = get_model_metadata_pb2.SignatureDefMap()
            for name, signature_def in saved_model.meta_graphs[0].signature_def.items():
                if name != "__saved_model_init_op":
                    signatures.signature_def[name].CopyFrom(signature_def)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(signatures)
            return response

        def Predict(self, request, context):
            try:
                check_spec(request.model_spec)
                name, outputs = servable.run(request.model_spec.signature_name, dict(request.inputs), proto_value)
                wanted = list(request.output_filter) or list(outputs)
                missing = [k for k in wanted if k not in outputs]
                if missing:
                    raise ServingError(f"output tensor alias not found in signature: {missing}")
            except ServingError as e:
                abort(context, e)
            except Exception as e:  # pylint: disable=broad-except  (INTERNAL with its message, not UNKNOWN)
                print(f"error: Predict: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                abort(context, ServingError(f"{type(e).__name__}: {e}", "INTERNAL", 500))
            response = predict_pb2.PredictResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = name
            for key in wanted:
                response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
            return response

    class ModelService(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):
            try:
                check_spec(request.model_spec)
            except ServingError as e:
                abort(context, e)
            response = get_model_status_pb2.GetModelStatusResponse()
            status = response.model_version_status.add()
            status.version = servable.version
            status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            return response

    threads = servable.max_admitted + RESERVED_GRPC_THREADS
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc"),
                         maximum_concurrent_rpcs=2 * threads,
                         options=[("grpc.max_receive_message_length", 64 << 20),
                                  ("grpc.max_send_message_length", 64 << 20)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    return server, bound


# --------------------------------------------------------------------------------------------------------------------
# Main.
# --------------------------------------------------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_base_path", required=True, help="export directory with integer version subdirectories")
    parser.add_argument("--model_name", default="imagetransformer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--grpc_port", type=int, default=8500, help="0: any free port; -1: no gRPC")
    parser.add_argument("--rest_port", type=int, default=8501, help="0: any free port; -1: no REST")
    parser.add_argument("--ready_file", help="written (atomically) with the bound ports once serving")
    parser.add_argument("--lifetime_s", type=float, default=0, help="exit after this many seconds (0: never)")
    parser.add_argument("--enable_batching", action="store_true",
                        help="merge concurrent requests into batches, as TF Serving's flag of this name does")
    parser.add_argument("--batching_parameters_file", help="TF Serving batching parameters (text protobuf); "
                        "default with --enable_batching: max_batch_size 16, batch_timeout_micros 5000")
    parser.add_argument("--max_concurrent_calls", type=int, default=MAX_CONCURRENT_CALLS,
                        help="signature calls that run at once")
    parser.add_argument("--max_admitted_predictions", type=int, default=MAX_ADMITTED_PREDICTIONS,
                        help="predictions running or waiting at once; one more is answered UNAVAILABLE (503)")
    parser.add_argument("--rest_max_connections", type=int, default=MAX_CONNECTIONS,
                        help="REST connections served at once; one more is answered 503")
    parser.add_argument("--rest_socket_timeout_s", type=float, default=SOCKET_TIMEOUT_S,
                        help="seconds a REST connection may stay silent before it is closed")
    parser.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0,
                        help="threads one op may use (0: one per core), as TF Serving's flag of this name; 1 "
                        "answers small completion requests faster (README, Export)")
    parser.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0,
                        help="threads running independent ops (0: one per core), as TF Serving's flag of this name")
    args = parser.parse_args(argv)
    for name in ("tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism"):
        if getattr(args, name) < 0:
            parser.error(f"--{name}={getattr(args, name)} must be 0 (one thread per core) or more")
    for name in ("max_concurrent_calls", "max_admitted_predictions", "rest_max_connections"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)} must be at least 1")
    if not args.rest_socket_timeout_s > 0:
        parser.error(f"--rest_socket_timeout_s={args.rest_socket_timeout_s} must be positive")

    batching = None
    if args.enable_batching or args.batching_parameters_file:
        try:
            batching = (BatchingParameters.from_file(args.batching_parameters_file) if args.batching_parameters_file
                        else BatchingParameters())
        except (OSError, ValueError) as e:
            parser.error(f"--batching_parameters_file: {e}")
    try:
        servable = Servable(args.model_base_path, args.model_name, batching,
                            max_concurrent_calls=args.max_concurrent_calls, max_admitted=args.max_admitted_predictions,
                            intra_op_threads=args.tensorflow_intra_op_parallelism,
                            inter_op_threads=args.tensorflow_inter_op_parallelism)
    except (OSError, ValueError) as e:
        print(f"error: --model_base_path={args.model_base_path}: {e}", file=sys.stderr, flush=True)
        return 1
    ports = {}
    grpc_server = rest_server = None
    if args.grpc_port >= 0:
        grpc_server, ports["grpc_port"] = make_grpc_server(servable, args.grpc_port, args.host)
        grpc_server.start()
    if args.rest_port >= 0:
        rest_server = make_rest_server(servable, args.rest_port, args.host, max_connections=args.rest_max_connections,
                                       socket_timeout_s=args.rest_socket_timeout_s)
        ports["rest_port"] = rest_server.server_address[1]
        threading.Thread(target=rest_server.serve_forever, daemon=True).start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({**ports, "version": servable.version, "pid": os.getpid()}, f)
        os.replace(tmp, args.ready_file)
    print(f"serving {args.model_name} version {servable.version} on {args.host}: {ports}", file=sys.stderr, flush=True)
    stop.wait(args.lifetime_s or None)
    if rest_server is not None:
        rest_server.shutdown()
        rest_server.server_close()
    if grpc_server is not None:
        grpc_server.stop(grace=1).wait(5)
    return 0


def run_main():
    sys.exit(main())


if __name__ == "__main__":
    run_main()
