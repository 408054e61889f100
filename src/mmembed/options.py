"""The Embedder's options, declared once.

:class:`EmbedderOptions` is the single declaration: each option's type, its default and what it does.
:class:`mmembed.Embedder` takes ``**options: Unpack[EmbedderOptions]``, and every adapter derives from it:
the Chroma functions take the same ``**options``, the LlamaIndex and LangChain classes get one pydantic
field per option, and the CLI maps its flags onto it. Which options a provider takes beyond the common
ones is declared by the provider class (``option_names``), so a new provider or a new option is one edit.

``None`` always means "not given": the provider's default applies.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypedDict, get_args, get_origin, get_type_hints

from .cache import VectorCache
from .mediainfo import MediaLimits

if TYPE_CHECKING:
    from .providers.base import Provider

__all__ = ["COMMON_OPTIONS", "Doc", "EmbedderOptions", "OptionSpec", "option_specs", "options_for"]


@dataclass(frozen=True)
class Doc:
    """What an option does, and how adapters must treat it (inside ``Annotated``)."""

    text: str
    default: Any = None
    secret: bool = False  # never serialised, shown, persisted or pickled
    local: bool = False  # belongs to this process (not persisted in a Chroma collection's config)


class EmbedderOptions(TypedDict, total=False):
    """Every option of :class:`mmembed.Embedder`; providers take the common ones plus their own."""

    model: Annotated[str | None, Doc("The model (default: the provider's default model).")]
    text_model: Annotated[str | None, Doc("Nomic's text model (default nomic-embed-text-v1.5).")]
    vision_model: Annotated[str | None, Doc("Nomic's vision model (default: the one sharing text_model's space).")]
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
    project_id: Annotated[str | None, Doc("Google Cloud project (default: GOOGLE_CLOUD_PROJECT, else ADC's).")]
    location: Annotated[str | None, Doc("Google Cloud location (default: GOOGLE_CLOUD_LOCATION, else the model's).")]
    credentials: Annotated[
        Any, Doc("google-auth credentials to use instead of an API key or ADC.", secret=True, local=True)
    ]
    media_limits: Annotated[
        MediaLimits | None,
        Doc("Caps and settings for PDFs, video and audio (mmembed.MediaLimits; default: the documented limits).",
            local=True),
    ]
    query_template: Annotated[
        str | None,
        Doc("The prompt a query text is wrapped in, {text} once (Gemini models; default "
            "'task: search result | query: {text}'; images go bare)."),
    ]
    document_template: Annotated[
        str | None,
        Doc("The prompt a document text is wrapped in (Gemini models; default 'title: none | text: {text}')."),
    ]
    truncation: Annotated[
        bool | None,
        Doc("Let the server shorten inputs over the model's length (Voyage, Cohere).", default=True, local=True),
    ]
    images_per_minute: Annotated[
        float | None,
        Doc("Cohere: images per minute (default 400, a production key's limit; trial keys allow 5).", local=True),
    ]


# Options every provider takes; the others are taken by the providers that name them in ``option_names``.
COMMON_OPTIONS = (
    "dimensions",
    "api_key",
    "api_key_env_var",
    "base_url",
    "timeout",
    "max_retries",
    "max_concurrency",
    "requests_per_minute",
    "rate_limiter",
    "cache",
    "allow_private_urls",
    "image_side",
    "media_limits",
)


@dataclass(frozen=True)
class OptionSpec:
    """One option as adapters see it: name, type, default and description."""

    name: str
    annotation: Any  # the declared type (``T | None``), without Annotated
    doc: str
    default: Any
    secret: bool
    local: bool

    @property
    def simple_type(self) -> type | None:
        """``str``, ``int``, ``float`` or ``bool`` when the option is one of those (or None), else None."""
        members = [a for a in get_args(self.annotation) if a is not type(None)] or [self.annotation]
        return members[0] if len(members) == 1 and members[0] in (str, int, float, bool) else None


@functools.cache
def option_specs() -> dict[str, OptionSpec]:
    """Every option, in declaration order, read from :class:`EmbedderOptions`."""
    specs: dict[str, OptionSpec] = {}
    for name, hint in get_type_hints(EmbedderOptions, include_extras=True).items():
        if get_origin(hint) is not Annotated:
            raise TypeError(f"option {name} lacks its Doc")  # a bug in this module
        annotation, *extras = get_args(hint)
        doc = next(e for e in extras if isinstance(e, Doc))
        specs[name] = OptionSpec(name, annotation, doc.text, doc.default, doc.secret, doc.local)
    return specs


def options_for(provider: type[Provider]) -> list[OptionSpec]:
    """The options ``provider`` takes (its own first, then the common ones), in declaration order."""
    specs = option_specs()
    own = [specs[name] for name in provider.option_names]
    return own + [specs[name] for name in COMMON_OPTIONS]
