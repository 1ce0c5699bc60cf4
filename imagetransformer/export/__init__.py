"""Exports for TensorFlow Serving (SavedModel signatures) and for Keras (`.keras`).

```python
from imagetransformer.export import export_model
export_model(model, "exported/imagetransformer")      # -> ExportResult(version, saved_model_dir, keras_path)
```
`python -m imagetransformer.export --model_dir=... | --preset=NAME --export_dir=...` does the same from the command
line (`imagetransformer.programs.export`).

- `signatures`: the signatures TF Serving runs (`serving_default`, `complete`, `sample`, `log_prob`, `serve`; a
  super-resolution model's `super_resolve`), graph-only, with their input checks and the cached decoder;
- `writer`: `export_model`, which claims the next version of a base path and writes it atomically.
"""

from imagetransformer.export.signatures import (
    CACHE_DTYPES,
    DEFAULT_CACHE_DTYPE,
    DEFAULT_MAX_BATCH,
    SERVING_SEED,
    SERVING_TEMPERATURE,
    SIGNATURES,
    SUPER_RESOLUTION_SIGNATURES,
    ExportError,
    export_archive,
    known_rows_for,
    signature_functions,
    signature_names,
)
from imagetransformer.export.writer import KERAS_DIR, ExportResult, existing_versions, export_model

__all__ = [
    "CACHE_DTYPES", "DEFAULT_CACHE_DTYPE", "DEFAULT_MAX_BATCH", "ExportError", "ExportResult", "KERAS_DIR",
    "SERVING_SEED", "SERVING_TEMPERATURE", "SIGNATURES", "SUPER_RESOLUTION_SIGNATURES",
    "existing_versions", "export_archive", "export_model", "known_rows_for", "signature_functions",
    "signature_names",
]
