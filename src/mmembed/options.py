"""The Embedder's options, declared once, where they belong.

Options are ``TypedDict`` s whose fields are ``Annotated[T | None, Doc(...)]``: the type, the default, what it does
and how adapters treat it. The **common** options every provider takes are declared here
(:class:`EmbedderOptions`, with ``model``). A provider declares its own in its module (``Provider.settings``, a
``TypedDict`` such as a cloud provider's project and location), and a model family its own
(``ModelFamily.settings``, e.g. prompt templates); a provider takes the options of the families it hosts. Every
adapter derives from these declarations through :func:`options_for`: the Chroma functions take the same
keyword arguments, the LlamaIndex and LangChain classes get one pydantic field per option, the CLI a flag per
provider string option. This module never names a provider.

``None`` always means "not given": the provider's default applies.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypedDict, get_args, get_origin, get_type_hints

from .cache import VectorCache
from .mediainfo import MediaLimits

if TYPE_CHECKING:
    from .providers.base import Provider

__all__ = [
    "COMMON_OPTIONS",
    "Doc",
    "EmbedderOptions",
    "ModelOptions",
    "OptionSpec",
    "option_specs",
    "options_for",
    "specs_of",
]


@dataclass(frozen=True)
class Doc:
    """What an option does, and how adapters must treat it (inside ``Annotated``)."""

    text: str
    default: Any = None
    secret: bool = False  # never serialised, shown, persisted or pickled
    local: bool = False  # belongs to this process (not persisted in a Chroma collection's config)
    model: bool = False  # names a model: persisted, and frozen once a collection holds vectors


class ModelOptions(TypedDict, total=False):
    """The ``model`` option, which most providers take (a provider with several model roles declares its own)."""

    model: Annotated[str | None, Doc("The model (default: the provider's default model).", model=True)]


class EmbedderOptions(ModelOptions, total=False):
    """The options every provider takes, plus ``model``; providers and model families declare the rest."""

    dimensions: Annotated[int | None, Doc("Output size for every modality (default: the model's native size).")]
    api_key: Annotated[
        str | None,
        Doc("The provider's API key; kept in memory only. Default: the api_key_env_var variable.", secret=True),
    ]
    api_key_env_var: Annotated[
        str | None, Doc("Environment variable holding the key (default: the provider's usual one).")
    ]
    base_url: Annotated[str | None, Doc("Scheme and host to send requests to instead of the provider's (a gateway).")]
    timeout: Annotated[float | None, Doc("Seconds one request attempt may take in all.", default=60.0, local=True)]
    max_retries: Annotated[int | None, Doc("Retries after 429, 5xx and network errors.", default=5, local=True)]
    max_concurrency: Annotated[
        int | None, Doc("Most requests in flight at once (default: the provider's documented limit).", local=True)
    ]
    requests_per_minute: Annotated[
        float | None, Doc("Client-side rate limit (default: the provider's documented limit).", local=True)
    ]
    rate_limiter: Annotated[
        Any, Doc("An object with acquire() and pause(seconds) shared by several clients (one API key).", local=True)
    ]
    cache: Annotated[
        str | os.PathLike[str] | VectorCache | None,
        Doc(
            "Path of a SQLite embedding cache, or any VectorCache (get_many/put_many): items embedded before "
            "are not sent again.",
            local=True,
        ),
    ]
    allow_private_urls: Annotated[
        bool | None, Doc("Let client-side downloads reach loopback and private addresses.", default=False, local=True)
    ]
    image_side: Annotated[
        int | None, Doc("Shortest side images are shrunk to before upload (default: the model's input).")
    ]
    media_limits: Annotated[
        MediaLimits | None,
        Doc("Caps and settings for PDFs, video and audio (mmembed.MediaLimits; default: the documented limits).",
            local=True),
    ]


@dataclass(frozen=True)
class OptionSpec:
    """One option as adapters see it: name, type, default, description and how it is kept."""

    name: str
    annotation: Any  # the declared type (``T | None``), without Annotated
    doc: str
    default: Any
    secret: bool
    local: bool
    model: bool = False

    @property
    def simple_type(self) -> type | None:
        """``str``, ``int``, ``float`` or ``bool`` when the option is one of those (or None), else None."""
        members = [a for a in get_args(self.annotation) if a is not type(None)] or [self.annotation]
        return members[0] if len(members) == 1 and members[0] in (str, int, float, bool) else None

    @property
    def persisted(self) -> bool:
        """Whether a Chroma collection's config keeps it (what decides the vectors, never a secret)."""
        return not (self.secret or self.local)


@functools.cache
def specs_of(declaration: type) -> tuple[OptionSpec, ...]:
    """The options a ``TypedDict`` declares, in declaration order (inherited ones first)."""
    specs: list[OptionSpec] = []
    for name, hint in get_type_hints(declaration, include_extras=True).items():
        if get_origin(hint) is not Annotated:
            raise TypeError(f"option {name} of {declaration.__name__} lacks its Doc")  # a bug in a declaration
        annotation, *extras = get_args(hint)
        doc = next(e for e in extras if isinstance(e, Doc))
        specs.append(OptionSpec(name, annotation, doc.text, doc.default, doc.secret, doc.local, doc.model))
    return tuple(specs)


#: The common options, by name (``model`` aside: a provider takes it unless it declares its own model roles).
COMMON_OPTIONS: tuple[str, ...] = tuple(s.name for s in specs_of(EmbedderOptions) if s.name != "model")


def options_for(provider: type[Provider]) -> list[OptionSpec]:
    """The options ``provider`` takes: its own and its model families' first, then the common ones."""
    common = [s for s in specs_of(EmbedderOptions) if s.name != "model"]
    return _unique([*provider.own_option_specs(), *common])


def option_specs() -> dict[str, OptionSpec]:
    """Every option of every registered provider (plugins included), by name."""
    from .providers import PROVIDERS

    return {spec.name: spec for cls in PROVIDERS.values() for spec in options_for(cls)}


def _unique(specs: Iterable[OptionSpec]) -> list[OptionSpec]:
    seen: dict[str, OptionSpec] = {}
    for spec in specs:
        seen.setdefault(spec.name, spec)
    return list(seen.values())
