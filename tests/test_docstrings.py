"""The examples in docstrings run (those marked +SKIP need a live key)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "mmembed",
    "mmembed.embedder",
    "mmembed.late",
    "mmembed.testing.emulator",
    "mmembed.testing.faults",
    "mmembed.testing.multivectors",
    "mmembed.testing.samples",
    "mmembed.testing.space",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
