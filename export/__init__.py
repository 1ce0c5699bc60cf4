"""Export for TensorFlow Serving (SavedModel signatures) and Keras (`.keras`): see `export.export`.

`python -m export.export --model_dir=... --export_dir=...`; from Python:

```python
from export import export_model
export_model(model, "exported/imagetransformer")        # -> ExportResult(version, saved_model_dir, keras_path)
```
Importing this package does not import TensorFlow; the names below load `export.export` on first use.
"""

_NAMES = ("ExportError", "ExportResult", "SIGNATURES", "export_archive", "export_model", "existing_versions",
          "known_rows_for", "signature_functions")

__all__ = list(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        import importlib

        _export = importlib.import_module("export.export")

        return getattr(_export, name)
    raise AttributeError(f"module 'export' has no attribute {name!r}")
