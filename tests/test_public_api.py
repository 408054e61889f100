"""The public surface: ``mmembed.__all__`` is complete, sorted, and every name in it imports (as httpx checks)."""

from __future__ import annotations

import importlib
import types

import pytest

import mmembed

# Modules whose __all__ must name only things they define or import.
MODULES = [
    "mmembed",
    "mmembed.cache",
    "mmembed.cpus",
    "mmembed.documents",
    "mmembed.download",
    "mmembed.embedder",
    "mmembed.errors",
    "mmembed.fallbacks",
    "mmembed.images",
    "mmembed.inputs",
    "mmembed.mediainfo",
    "mmembed.providers",
    "mmembed.ray",
    "mmembed.transport",
    "mmembed.testing",
]


def public_names(module: types.ModuleType) -> list[str]:
    """Public names bound in a package's namespace, minus submodules and ``from __future__`` features."""
    return [
        name
        for name, value in vars(module).items()
        if (not name.startswith("_") or name == "__version__")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    ]


def test_all_is_complete_and_sorted() -> None:
    assert mmembed.__all__ == sorted(public_names(mmembed))


def test_every_name_in_all_imports() -> None:
    namespace: dict[str, object] = {}
    exec("from mmembed import *", namespace)
    missing = [name for name in mmembed.__all__ if name not in namespace]
    assert not missing
    assert len(set(mmembed.__all__)) == len(mmembed.__all__)


@pytest.mark.parametrize("name", MODULES)
def test_submodule_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"
    assert [n for n in exported if not hasattr(module, n)] == []


def test_every_error_is_public_and_derives_from_the_root() -> None:
    errors = importlib.import_module("mmembed.errors")
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, mmembed.EmbeddingError) or issubclass(cls, Warning)  # TextTooLongWarning lives here too
        assert getattr(mmembed, name) is cls


def test_version_matches_the_package_metadata() -> None:
    from importlib.metadata import version

    assert mmembed.__version__ == version("mmembed")
