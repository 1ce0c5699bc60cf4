"""The examples in the docstrings run and print what they say."""

import doctest
import importlib
import pkgutil

import pytest
import tensorflow as tf

import imagetransformer

MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(imagetransformer.__path__, "imagetransformer.")
    # The programs: importing them would rebind the functions imagetransformer.complete / .super_resolve.
    if name not in ("imagetransformer.complete", "imagetransformer.super_resolve")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"tf": tf}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
