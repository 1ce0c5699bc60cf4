#!/usr/bin/env bash
# Starts TensorFlow Serving on an export written by `python -m imagetransformer.export`:
#   imagetransformer_serving/start_server.sh EXPORT_DIR [extra tensorflow_model_server flags...]
# Model name "imagetransformer", gRPC on $GRPC_PORT (8500), REST on $REST_PORT (8501), request batching with
# imagetransformer_serving/batching_parameters.txt. Uses `tensorflow_model_server` when it is on PATH, otherwise the
# tensorflow/serving docker image ($TF_SERVING_IMAGE, default tensorflow/serving:latest).
set -euo pipefail

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
  echo "usage: $0 EXPORT_DIR [extra tensorflow_model_server flags...]" >&2
  exit 2
fi
if [[ ! -d "$1" ]]; then
  echo "error: EXPORT_DIR=$1 is not a directory (write one with: python -m imagetransformer.export --model_dir=... --export_dir=$1)" >&2
  exit 1
fi
EXPORT_DIR="$(cd "$1" && pwd)"
shift
if ! ls "$EXPORT_DIR" | grep -qE '^[0-9]+$'; then
  echo "error: $EXPORT_DIR has no version directory (<export_dir>/<integer>/saved_model.pb); run python -m imagetransformer.export first" >&2
  exit 1
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GRPC_PORT="${GRPC_PORT:-8500}"
REST_PORT="${REST_PORT:-8501}"
SERVER="${TENSORFLOW_MODEL_SERVER:-tensorflow_model_server}"

if command -v "$SERVER" >/dev/null 2>&1; then
  config_dir="$(mktemp -d)"
  trap 'rm -rf "$config_dir"' EXIT
  escaped="$(printf '%s' "$EXPORT_DIR" | sed -e 's/[\\&#]/\\&/g')"
  sed -e "s#\"/models/imagetransformer\"#\"${escaped}\"#" "$HERE/models.config" > "$config_dir/models.config"
  echo "starting $SERVER on $EXPORT_DIR (gRPC :$GRPC_PORT, REST :$REST_PORT)" >&2
  "$SERVER" \
    --port="$GRPC_PORT" \
    --rest_api_port="$REST_PORT" \
    --model_config_file="$config_dir/models.config" \
    --enable_batching \
    --batching_parameters_file="$HERE/batching_parameters.txt" \
    "$@"
elif command -v docker >/dev/null 2>&1; then
  if ! docker info >/dev/null 2>&1; then
    echo "error: docker is installed but its daemon does not answer (docker info failed); start it, or without" \
         "docker, python -m imagetransformer_serving.reference_server --model_base_path=$EXPORT_DIR serves the" \
         "same protocols for testing." >&2
    exit 1
  fi
  image="${TF_SERVING_IMAGE:-tensorflow/serving:latest}"
  echo "tensorflow_model_server not found; starting docker image $image on $EXPORT_DIR (gRPC :$GRPC_PORT, REST :$REST_PORT)" >&2
  exec docker run --rm --init \
    -p "$GRPC_PORT:8500" -p "$REST_PORT:8501" \
    -v "$EXPORT_DIR:/models/imagetransformer:ro" \
    -v "$HERE:/serving-config:ro" \
    --entrypoint tensorflow_model_server \
    "$image" \
    --port=8500 \
    --rest_api_port=8501 \
    --model_config_file=/serving-config/models.config \
    --enable_batching \
    --batching_parameters_file=/serving-config/batching_parameters.txt \
    "$@"
else
  echo "error: neither tensorflow_model_server nor docker is installed. Install TF Serving" \
       "(https://www.tensorflow.org/tfx/serving/setup) or docker; without either," \
       "python -m imagetransformer_serving.reference_server --model_base_path=$EXPORT_DIR serves the same protocols for testing." >&2
  exit 1
fi
