"""Client for the exported model behind TensorFlow Serving (REST or gRPC).

```
python -m imagetransformer_serving.client --server=localhost:8501 --image=in.png --output=out.png            # REST
python -m imagetransformer_serving.client --server=localhost:8500 --grpc --image=in.png --output=out.png     # gRPC
python -m imagetransformer_serving.client --signature=complete --seed=3 --temperature=0.9 --image=in.png --output=out.png
python -m imagetransformer_serving.client --signature=sample --seed=0 --num_images=4 --output=samples.png
python -m imagetransformer_serving.client --signature=log_prob --image=in.png                               # prints JSON
python -m imagetransformer_serving.client --signature=super_resolve --image=small.png --output=big.png     # super-resolution model
python -m imagetransformer_serving.client --status                                                          # model status
python -m imagetransformer_serving.client --label=9 --image=in.png --output=out.png                        # class-conditional model
python -m imagetransformer_serving.client --signature=complete --image=in.png --write_request=request.json  # REST body, for curl
```
`--image` is a whole image of the model's size (H x W; grayscale images are sent with 1 channel, others as RGB,
or force with `--channels`): the client sends its top H//2 rows and writes the completed image as PNG. Several
images (`--num_images` for `sample`) are written side by side. For a super-resolution model's `super_resolve`,
`--image` is the low-resolution image itself (H/scale x W/scale), sent whole with `--seed` and `--temperature`.

REST: `POST /v1/models/NAME:predict` with `{"signature_name": ..., "inputs": {...}}` (TF Serving's columnar
format); gRPC: `tensorflow.serving.PredictionService/Predict` (needs `tensorflow-serving-api`). Only the gRPC
path imports TensorFlow; neither needs `imagetransformer`.
"""

import os

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import sys
import urllib.error
import urllib.request

import numpy as np

SIGNATURES = ("serving_default", "complete", "sample", "log_prob", "super_resolve")
DEFAULT_REST = "localhost:8501"
DEFAULT_GRPC = "localhost:8500"
MODEL_NAME = "imagetransformer"


class ClientError(Exception):
    """A problem worth one line to the user (bad input file, server error, unreachable server)."""


# ----------------------------------------------------------------------------------------------------------------
# Images.
# ----------------------------------------------------------------------------------------------------------------
def read_image(path, channels=None):
    """uint8 `[H, W, C]` from an image file; C = 1 for grayscale files, 3 otherwise (or `channels`)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "F":
                raise ClientError(f"--image={path} holds floating-point pixels, whose scale is ambiguous; save it "
                                  "as an 8-bit image (values 0..255)")
            if image.mode.startswith("I"):  # 16-bit (or 32-bit) grayscale: scaled by its bit depth, not clipped
                wide = np.asarray(image, np.int64)
                bits = 16 if image.mode.startswith("I;16") or wide.max(initial=0) <= 65535 else 32
                array = np.round(wide * (255.0 / (2**bits - 1))).astype(np.uint8)[..., None]
                return np.repeat(array, 3, axis=-1) if channels == 3 else array
            if channels is None:
                channels = 1 if image.mode in ("1", "L", "LA") else 3
            image = image.convert("L" if channels == 1 else "RGB")
    except FileNotFoundError:
        raise ClientError(f"--image={path} does not exist")
    except IsADirectoryError:
        raise ClientError(f"--image={path} is a directory, not an image file")
    except Image.DecompressionBombError as e:
        raise ClientError(f"--image={path} is too large to decode safely ({e})")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ClientError(f"--image={path} is not an image file that Pillow can read (PNG, JPEG, ...): {e}")
    array = np.asarray(image, np.uint8)
    return array[..., None] if array.ndim == 2 else array


def write_image(path, images):
    """Writes uint8 `[N, H, W, C]` side by side as one PNG."""
    from PIL import Image

    images = np.asarray(images, np.uint8)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ClientError(f"the server returned images of shape {list(images.shape)}, expected [N, H, W, 1 or 3]")
    strip = np.concatenate(list(images), axis=1)
    strip = strip[..., 0] if strip.shape[-1] == 1 else strip
    if os.path.isdir(path):
        raise ClientError(f"--output={path} is a directory; name a .png file")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise ClientError(f"cannot create the folder of --output={path}: {e}")
    tmp = f"{path}.tmp.png"
    try:
        Image.fromarray(strip).save(tmp, format="PNG")
        os.replace(tmp, path)
    except OSError as e:
        raise ClientError(f"cannot write --output={path}: {e}")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def top_half(image):
    """The first H//2 rows of `[H, W, C]`, with a batch dimension."""
    return image[None, : image.shape[0] // 2]


# ----------------------------------------------------------------------------------------------------------------
# Transports.
# ----------------------------------------------------------------------------------------------------------------
def _rest_base(server):
    server = server if "://" in server else f"http://{server}"
    netloc = server.split("://", 1)[1].split("/", 1)[0]
    port = netloc.rsplit(":", 1)[1] if ":" in netloc else "80"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ClientError(f"--server={server}: the port {port!r} must be a number in 1..65535 (host:port)")
    return server.rstrip("/")


def _rest_call(url, payload=None, timeout=60.0):
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            message = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = body.decode(errors="replace").strip() or e.reason
        raise ClientError(f"server error (HTTP {e.code}) from {url}: {short_message(message)}")
    except TimeoutError:
        raise ClientError(f"{url} did not answer within {timeout:g} s (the server is busy or the model slow; raise "
                          "--timeout)")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, TimeoutError):
            raise ClientError(f"{url} did not answer within {timeout:g} s (the server is busy or the model slow; "
                              "raise --timeout)")
        raise ClientError(f"cannot reach {url}: {reason}")
    except ValueError as e:
        raise ClientError(f"{url} did not answer with JSON: {e}")


def rest_body(signature, inputs):
    """The JSON body of a REST `:predict` request (TF Serving's columnar format) for `inputs` {name: np.ndarray}."""
    return {"signature_name": signature, "inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()}}


def predict_rest(server, model_name, signature, inputs, timeout=60.0):
    """`inputs` {name: np.ndarray} -> {output: np.ndarray} via TF Serving's REST API (columnar format)."""
    url = f"{_rest_base(server)}/v1/models/{model_name}:predict"
    payload = rest_body(signature, inputs)
    outputs = _rest_call(url, payload, timeout)
    if not isinstance(outputs, dict) or "outputs" not in outputs:
        raise ClientError(f"unexpected answer from {url}: {str(outputs)[:200]}")
    outputs = outputs["outputs"]
    if not isinstance(outputs, dict):  # a single output comes back without its name
        outputs = {"images": outputs}
    # JSON loses dtypes: restore the signatures' (uint8 images, float32 scores).
    return {k: np.asarray(v, np.uint8 if k == "images" else np.float32) for k, v in outputs.items()}


def status_rest(server, model_name, timeout=10.0):
    return _rest_call(f"{_rest_base(server)}/v1/models/{model_name}", timeout=timeout)


def _grpc_stub(server, service):
    try:
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc
    except ImportError as e:
        raise ClientError(f"--grpc needs `pip install tensorflow-serving-api grpcio` ({e})")
    target = server.split("://", 1)[-1]
    channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20),
                                                     ("grpc.max_send_message_length", 64 << 20)])
    module = prediction_service_pb2_grpc if service == "predict" else model_service_pb2_grpc
    stub = module.PredictionServiceStub(channel) if service == "predict" else module.ModelServiceStub(channel)
    return grpc, channel, stub


def short_message(message):
    """TF's graph errors span lines; keep the line of a failed input check (`assertion failed: ...`) if present."""
    for line in str(message).splitlines():
        if "assertion failed:" in line:
            return line[line.index("assertion failed:"):].strip()
    return " ".join(str(message).split())


def _grpc_error(grpc, error, server, timeout):
    """One line for a failed gRPC call: unreachable, no answer in time (busy), or the server's own error."""
    code, details = error.code(), error.details() or ""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ClientError(f"gRPC server {server} did not answer within {timeout:g} s (the server is busy or the model "
                           "slow; raise --timeout)")
    if code == grpc.StatusCode.UNAVAILABLE and ("connect" in details.lower() or "unreachable" in details.lower()):
        return ClientError(f"cannot reach gRPC server {server}: {code.name}: {details}")
    return ClientError(f"server error (gRPC {code.name}) from {server}: {short_message(details)}")


def predict_grpc(server, model_name, signature, inputs, timeout=60.0):
    """`inputs` {name: np.ndarray} -> {output: np.ndarray} via `PredictionService.Predict`."""
    grpc, channel, stub = _grpc_stub(server, "predict")
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    try:
        response = stub.Predict(request, timeout=timeout)
    except grpc.RpcError as e:
        raise _grpc_error(grpc, e, server, timeout)
    finally:
        channel.close()
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def status_grpc(server, model_name, timeout=10.0):
    grpc, channel, stub = _grpc_stub(server, "status")
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_status_pb2

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model_name
    try:
        return json_format.MessageToDict(stub.GetModelStatus(request, timeout=timeout))
    except grpc.RpcError as e:
        raise _grpc_error(grpc, e, server, timeout)
    finally:
        channel.close()


# ----------------------------------------------------------------------------------------------------------------
# Requests per signature.
# ----------------------------------------------------------------------------------------------------------------
def build_inputs(signature, image=None, seed=0, temperature=1.0, num_images=1, label=None):
    """The signature's inputs (numpy, with their exact dtypes) for one image or `num_images` samples; `label`: the
    class, for a class-conditional model's signatures (input `label`, one per image)."""
    if signature in ("serving_default", "complete", "log_prob", "super_resolve") and image is None:
        raise ClientError(f"--signature={signature} needs --image")
    if not -2**63 <= seed <= 2**63 - num_images:
        raise ClientError(f"--seed={seed} must fit in int64 (the signatures' seed dtype)")
    inputs = _inputs(signature, image, seed, temperature, num_images)
    if label is not None:
        if signature == "super_resolve":
            raise ClientError("--label is for class-conditional models; a super-resolution model takes none")
        inputs["label"] = np.full([len(next(iter(inputs.values())))], label, np.int64)
    return inputs


def _inputs(signature, image, seed, temperature, num_images):
    if signature == "serving_default":
        return {"top_half": top_half(image)}
    if signature == "complete":
        return {"top_half": top_half(image), "seed": np.array([seed], np.int64),
                "temperature": np.array([temperature], np.float32)}
    if signature == "sample":
        return {"seed": np.arange(seed, seed + num_images, dtype=np.int64)}
    if signature == "log_prob":
        return {"images": image[None]}
    if signature == "super_resolve":  # the image is the low-resolution input
        return {"low_res": image[None], "seed": np.array([seed], np.int64),
                "temperature": np.array([temperature], np.float32)}
    raise ClientError(f"--signature={signature} is not one of {', '.join(SIGNATURES)}")


def run(server, signature="serving_default", image_path=None, output=None, use_grpc=False, model_name=MODEL_NAME,
        seed=0, temperature=1.0, num_images=1, channels=None, timeout=60.0, label=None):
    """Sends one request; writes `output` (PNG) for image signatures; returns the outputs {name: np.ndarray}."""
    if signature not in SIGNATURES:
        raise ClientError(f"--signature={signature} is not one of {', '.join(SIGNATURES)}")
    if signature != "log_prob" and not output:
        raise ClientError(f"--signature={signature} needs --output=FILE.png")
    image = read_image(image_path, channels) if image_path else None
    inputs = build_inputs(signature, image, seed, temperature, num_images, label)
    server = server or (DEFAULT_GRPC if use_grpc else DEFAULT_REST)
    outputs = (predict_grpc if use_grpc else predict_rest)(server, model_name, signature, inputs, timeout)
    if "images" in outputs and output:
        write_image(output, outputs["images"])
    return outputs


def _define_flags():
    from absl import flags

    flags.DEFINE_string("server", None, f"host:port of TF Serving (default {DEFAULT_REST} for REST, "
                        f"{DEFAULT_GRPC} with --grpc); http:// prefix optional")
    flags.DEFINE_bool("grpc", False, "Use gRPC PredictionService instead of the REST API.")
    flags.DEFINE_string("image", None, "Image file (PNG, JPEG, ...) of the model's size; its top half is sent "
                        "(super_resolve: the low-resolution image, sent whole).")
    flags.DEFINE_string("output", None, "PNG file for the completed (or sampled) image(s).")
    flags.DEFINE_enum("signature", "serving_default", list(SIGNATURES), "Signature to call.")
    flags.DEFINE_string("model_name", "imagetransformer", "Model name in TF Serving's model config.")
    flags.DEFINE_integer("seed", 0, "Seed for `complete` / `super_resolve` (one image) and first seed for `sample`.")
    flags.DEFINE_float("temperature", 1.0, "Temperature for `complete` / `super_resolve` (> 0).")
    flags.DEFINE_integer("num_images", 1, "Images to draw with `sample` (seeds seed, seed+1, ...).", lower_bound=1)
    flags.DEFINE_enum("channels", None, ["1", "3"], "Send the image as grayscale (1) or RGB (3); default: as stored.")
    flags.DEFINE_float("timeout", 120.0, "Request timeout in seconds.")
    flags.DEFINE_bool("status", False, "Print the model's version status and exit.")
    flags.DEFINE_integer("label", None, "Class of the image(s), for a class-conditional model's signatures.",
                         lower_bound=0)
    flags.DEFINE_string("write_request", None, "Write the REST request body (JSON) to this file instead of sending "
                        "it: `curl -d @FILE http://host:8501/v1/models/NAME:predict`.")


def main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    server = FLAGS.server or (DEFAULT_GRPC if FLAGS.grpc else DEFAULT_REST)
    try:
        if FLAGS.write_request:
            image = read_image(FLAGS.image, int(FLAGS.channels) if FLAGS.channels else None) if FLAGS.image else None
            inputs = build_inputs(FLAGS.signature, image, FLAGS.seed, FLAGS.temperature, FLAGS.num_images,
                                  FLAGS.label)
            with open(FLAGS.write_request, "w") as f:
                json.dump(rest_body(FLAGS.signature, inputs), f)
            print(f"wrote {FLAGS.write_request}: the {FLAGS.signature} request body")
            return 0
        if FLAGS.status:
            status = (status_grpc if FLAGS.grpc else status_rest)(server, FLAGS.model_name, FLAGS.timeout)
            print(json.dumps(status))
            return 0
        outputs = run(server, FLAGS.signature, FLAGS.image, FLAGS.output, FLAGS.grpc, FLAGS.model_name, FLAGS.seed,
                      FLAGS.temperature, FLAGS.num_images, int(FLAGS.channels) if FLAGS.channels else None,
                      FLAGS.timeout, FLAGS.label)
    except ClientError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if "images" in outputs:
        print(f"wrote {FLAGS.output}: {outputs['images'].shape[0]} image(s) of shape "
              f"{list(outputs['images'].shape[1:])}")
    else:
        print(json.dumps({k: np.asarray(v).tolist() for k, v in outputs.items()}))
    return 0


def run_main():
    from absl import app

    _define_flags()
    app.run(main)


if __name__ == "__main__":
    run_main()
