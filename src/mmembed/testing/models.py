"""The models the emulator answers for: one declarative row per model, limits included, kept by its endpoint.

Each row says which vector space a model embeds into (models that share a space can be compared, like a text
model and the vision model trained into its space), its full dimension, which modalities it takes, which ``task``
values it accepts and which of them mark a query, which output sizes can be requested and how many inputs one
request may carry. The rows live on the endpoint classes (``Endpoint.models``), each beside the API it emulates;
the endpoints themselves are found through the provider registry (each provider's ``emulator`` class paths), so
a plugin's endpoint is served and searched like a built-in one.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..providers.base import Provider
    from .wire import Endpoint

__all__ = ["ModelSpec", "endpoint_classes", "endpoint_providers", "find_model", "registered_models"]


@dataclass(frozen=True)
class ModelSpec:
    """What one emulated model accepts and returns."""

    provider: str
    name: str
    space: str
    dim: int
    modalities: frozenset[str]
    tasks: frozenset[str] = frozenset()
    query_tasks: frozenset[str] = frozenset()
    # Sizes a request may ask for (None: the request may not ask); vectors are Matryoshka-truncated.
    dimensions: tuple[int, ...] | range | None = None
    max_inputs: int = 1
    aliases: tuple[str, ...] = ()
    # How far apart texts and images sit: CLIP-style models have a large gap, natively multimodal ones less.
    modality_weight: float = 2.0
    embed_content: bool = False  # Google's Content wire (:embedContent / :batchEmbedContents), not :predict
    prompt_tasks: bool = False  # tasks arrive as prompt prefixes ("task: … | query: …"), not as a field
    default_dim: int | None = None  # what a request that names no size gets (None: dim)
    text_tokens: int | None = None  # the server silently keeps only the first this many tokens of a text
    multivector_dim: int | None = None  # width of each row of a multi-vector answer (None: the model has none)

    def is_query(self, task: str | None) -> bool:
        """Whether ``task`` marks a search query (the emulator then nudges text vectors toward a query axis)."""
        return task is not None and task in self.query_tasks


def endpoint_classes() -> tuple[type[Endpoint], ...]:
    """The endpoint classes of every registered provider (its ``emulator`` paths), each once, in registry order.

    A provider that subclasses another inherits its ``emulator`` paths, so both are served by one endpoint.
    """
    from ..providers import PROVIDERS

    return _load(tuple(PROVIDERS.values()))


@functools.lru_cache(maxsize=8)
def _load(providers: tuple[type[Provider], ...]) -> tuple[type[Endpoint], ...]:
    from ..providers import PluginWarning

    paths = dict.fromkeys(path for cls in providers for path in cls.emulator)
    classes: list[type[Endpoint]] = []
    for path in paths:
        module, _, name = path.partition(":")
        try:
            classes.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError) as exc:  # one broken plugin must not take the emulator down
            warnings.warn(f"emulator endpoint {path!r} could not be loaded: {exc!r}", PluginWarning, stacklevel=2)
    return tuple(classes)


def endpoint_providers() -> tuple[str, ...]:
    """The providers the registered endpoints emulate (what :meth:`Emulator.inject` takes)."""
    return tuple(dict.fromkeys(cls.provider for cls in endpoint_classes()))


def registered_models() -> tuple[ModelSpec, ...]:
    """Every row of every registered endpoint."""
    return tuple(spec for cls in endpoint_classes() for spec in cls.models)


def find_model(provider: str, name: str) -> ModelSpec | None:
    """The row for ``name`` (or one of its aliases) at ``provider``, or None when the emulator does not know it."""
    return _index(endpoint_classes()).get((provider, name))


@functools.lru_cache(maxsize=8)
def _index(classes: tuple[type[Endpoint], ...]) -> dict[tuple[str, str], ModelSpec]:
    rows = [spec for cls in classes for spec in cls.models]
    index: dict[tuple[str, str], ModelSpec] = {}
    for spec in rows:
        for name in (spec.name, *spec.aliases):
            index.setdefault((spec.provider, name), spec)
    return index

