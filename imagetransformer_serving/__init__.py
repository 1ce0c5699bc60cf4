"""Serving the exported model with TensorFlow Serving (a package apart from `imagetransformer`, so that its client
imports neither TensorFlow nor the model library and starts at once).

- `models.config`, `batching_parameters.txt`: TF Serving configuration (model name `imagetransformer`);
- `start_server.sh EXPORT_DIR`: starts `tensorflow_model_server` (or the `tensorflow/serving` docker image), gRPC on
  8500 and REST on 8501;
- `python -m imagetransformer_serving.client`: completes an image's bottom half over REST or gRPC and writes a PNG;
- `python -m imagetransformer_serving.reference_server`: a stand-in speaking TF Serving's REST and gRPC protocols,
  for tests and machines without TF Serving.
"""
