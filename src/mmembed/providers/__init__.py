"""The provider registry: built-in providers and plugins, found by name and loaded on first use.

:data:`PROVIDERS` maps a provider's name to its class. Built-ins are listed here, one line each; third-party
providers register through the entry-point group ``mmembed.providers`` (name = the provider's ``name``, value =
``package.module:ClassName``) and are read from it the first time the registry is used, so a plugin package with
one module and one entry point shows up everywhere mmembed derives from the registry: ``Embedder(name)``, the
Chroma, LlamaIndex and LangChain classes, the CLI's ``--provider`` and :mod:`mmembed.ray`.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from ..errors import TextTooLongWarning
from .base import Hosting, ModelFamily, ModelInfo, Provider, ProviderOptions, Ready, Task

if TYPE_CHECKING:
    from .bedrock import BedrockProvider
    from .cohere import CohereProvider
    from .gemini import GeminiProvider
    from .infinity import InfinityProvider
    from .jina import JinaProvider
    from .nim import NimProvider
    from .nomic import NomicProvider
    from .tei import TeiProvider
    from .twelvelabs import TwelveLabsProvider
    from .vertex import VertexProvider
    from .vllm import VllmProvider
    from .voyage import VoyageProvider

__all__ = [
    "ENTRY_POINT_GROUP",
    "PROVIDERS",
    "BedrockProvider",
    "CohereProvider",
    "GeminiProvider",
    "Hosting",
    "InfinityProvider",
    "JinaProvider",
    "ModelFamily",
    "ModelInfo",
    "NimProvider",
    "NomicProvider",
    "PluginWarning",
    "Provider",
    "ProviderOptions",
    "Ready",
    "Task",
    "TeiProvider",
    "TextTooLongWarning",
    "TwelveLabsProvider",
    "VertexProvider",
    "VllmProvider",
    "VoyageProvider",
]

ENTRY_POINT_GROUP = "mmembed.providers"

# The built-in providers: name -> "module:Class", imported on first use.
BUILTINS: dict[str, str] = {
    "nomic": "mmembed.providers.nomic:NomicProvider",
    "jina": "mmembed.providers.jina:JinaProvider",
    "vertex": "mmembed.providers.vertex:VertexProvider",
    "gemini": "mmembed.providers.gemini:GeminiProvider",
    "voyage": "mmembed.providers.voyage:VoyageProvider",
    "cohere": "mmembed.providers.cohere:CohereProvider",
    "bedrock": "mmembed.providers.bedrock:BedrockProvider",
    "twelvelabs": "mmembed.providers.twelvelabs:TwelveLabsProvider",
    "vllm": "mmembed.providers.vllm:VllmProvider",
    "infinity": "mmembed.providers.infinity:InfinityProvider",
    "nim": "mmembed.providers.nim:NimProvider",
    "tei": "mmembed.providers.tei:TeiProvider",
}


class PluginWarning(UserWarning):
    """A provider plugin could not be loaded (or does not declare itself rightly) and was left out."""


class _Registry(Mapping[str, type[Provider]]):
    """name -> provider class: the built-ins, then the entry-point plugins, each imported on first use."""

    def __init__(self, builtins: Mapping[str, str], group: str) -> None:
        self._builtins = dict(builtins)
        self._group = group
        self._sources: dict[str, str | EntryPoint] | None = None
        self._loaded: dict[str, type[Provider]] = {}
        self._broken: set[str] = set()
        self._lock = threading.RLock()

    def _names(self) -> dict[str, str | EntryPoint]:
        with self._lock:
            if self._sources is None:
                sources: dict[str, str | EntryPoint] = dict(self._builtins)
                for ep in sorted(entry_points(group=self._group), key=lambda e: e.name):
                    if ep.name in sources:
                        warnings.warn(f"provider plugin {ep.value!r} reuses the name {ep.name!r}; left out",
                                      PluginWarning, stacklevel=3)
                        continue
                    sources[ep.name] = ep
                self._sources = sources
            return self._sources

    def _load(self, name: str) -> type[Provider] | None:
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            if name in self._broken:
                return None
            source = self._names()[name]
            try:
                cls = _import(source)
            except Exception as exc:  # a third party's import error must not break every other provider
                self._broken.add(name)
                warnings.warn(f"provider plugin {name!r} could not be loaded: {exc!r}", PluginWarning, stacklevel=3)
                return None
            if not (isinstance(cls, type) and issubclass(cls, Provider)) or getattr(cls, "name", None) != name:
                self._broken.add(name)
                warnings.warn(f"provider plugin {name!r} is not a Provider subclass named {name!r}; left out",
                              PluginWarning, stacklevel=3)
                return None
            self._loaded[name] = cls
            return cls

    def __getitem__(self, name: str) -> type[Provider]:
        if name not in self._names():
            raise KeyError(name)
        cls = self._load(name)
        if cls is None:
            raise KeyError(name)
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter([name for name in self._names() if self._load(name) is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._names() and self._load(name) is not None

    def reload(self) -> None:
        """Read the entry points again (after installing a plugin in a running process)."""
        with self._lock:
            self._sources = None
            self._broken.clear()

    def __repr__(self) -> str:
        return f"<mmembed providers: {', '.join(self)}>"


def _import(source: str | EntryPoint) -> Any:
    if isinstance(source, EntryPoint):
        return source.load()
    module, _, attr = source.partition(":")
    return getattr(importlib.import_module(module), attr)


#: Every provider, by name: the built-ins and the plugins of the ``mmembed.providers`` entry-point group.
PROVIDERS: _Registry = _Registry(BUILTINS, ENTRY_POINT_GROUP)


def __getattr__(name: str) -> Any:
    """``mmembed.providers.JinaProvider`` and the like, imported when first asked for."""
    for key, source in BUILTINS.items():
        if name == source.partition(":")[2]:
            return PROVIDERS[key]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
