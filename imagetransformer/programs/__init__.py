"""The command-line programs: absl flags, one-line user errors (`cli`), and a `main` that drives the library.

Each runs as `python -m imagetransformer.<name>` (`train`, `evaluate`, `complete`, `super_resolve`, `export`): the
modules of those names beside this package (and `export/__main__.py`) are two-line entry points, so that importing
the package never binds a program where `imagetransformer.complete` or `imagetransformer.super_resolve` (the
functions) belong.
"""
