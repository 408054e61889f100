"""What the pydantic adapters (LlamaIndex, LangChain) share: their classes derived from the registry, and errors.

:func:`derived_models` makes one pydantic class per registered provider, with one field per option it takes
(described by its declaration in :mod:`mmembed.options`).

Errors raised while such an object builds its Embedder are given back safely.
pydantic wraps every ValueError raised in ``model_post_init`` into a ValidationError that quotes the whole
input, key included (``hide_input_in_errors`` keeps it out of the text only, not out of ``errors()``). Our
:class:`~mmembed.ConfigurationError` is a ValueError, so it arrives wrapped; :func:`safe_error` unwraps it,
and strips the inputs from any other validation error. Raise the result outside the ``except`` block, so
the original error is not its ``__context__``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

from pydantic import BaseModel, Field, ValidationError, create_model

from .cache import EmbeddingCache
from .errors import ConfigurationError
from .options import OptionSpec, option_specs, options_for
from .providers import PROVIDERS, Provider

__all__ = ["derived_models", "option_field", "portable_fields", "safe_error", "serialised_cache"]

M = TypeVar("M", bound=BaseModel)


def option_field(spec: OptionSpec, *, key_type: Any = None) -> tuple[Any, Any]:
    """A pydantic field for one Embedder option: its description, and secrets kept out of dumps and reprs.

    The key's type is the adapter's convention (``key_type``; a plain ``str`` by default). Objects that cannot
    be serialised (credentials, a shared rate limiter) are excluded from dumps, and secrets from reprs too.
    """
    if spec.name == "api_key" and key_type is not None:
        annotation: Any = key_type | None
    else:
        annotation = spec.annotation if spec.simple_type is not None else Any
    hidden = spec.secret or (spec.simple_type is None and spec.name != "cache")
    return annotation, Field(default=spec.default, description=spec.doc, exclude=hidden, repr=not spec.secret)


def serialised_cache(cache: object) -> str | None:
    """What the ``cache`` option serialises as: its path, or None for a cache object of the user's own
    (its repr may hold an address with credentials; a pickle carries the object itself, see below)."""
    if isinstance(cache, EmbeddingCache):
        return str(cache.path)
    if isinstance(cache, (str, os.PathLike)):
        return os.fspath(cache)
    return None


def portable_fields(model: BaseModel) -> dict[str, Any]:
    """The fields a pickled adapter is rebuilt from: all but the secrets (the key, credentials).

    Objects stay as they are (a shared rate limiter, a cache object, media limits), so a copy sent to a
    worker keeps them; the copy reads its key from ``api_key_env_var``.
    """
    specs = option_specs()
    names = [name for name in type(model).model_fields if not (name in specs and specs[name].secret)]
    return {name: getattr(model, name) for name in names}


def derived_models(
    base: type[M],
    suffix: str,
    *,
    module: str,
    note: str,
    options: Callable[[type[Provider]], list[OptionSpec]] = options_for,
    key_type: Any = None,
) -> dict[str, type[M]]:
    """One subclass of ``base`` per registered provider, named ``{title}{suffix}``, with a field per option."""
    classes: dict[str, type[M]] = {}
    for name, provider in PROVIDERS.items():
        summary = (provider.__doc__ or provider.name).strip().splitlines()[0]
        fields = {spec.name: option_field(spec, key_type=key_type) for spec in options(provider)}
        cls = create_model(  # type: ignore[call-overload]
            f"{provider.title}{suffix}",
            __base__=base,
            __module__=module,
            __doc__=f"{summary} Key: ``{provider.env_var}`` ({note}).",
            **fields,
        )
        cls.provider = provider.name
        classes[name] = cast("type[M]", cls)
    return classes


def safe_error(exc: ValidationError) -> Exception:
    """The ConfigurationError behind ``exc``, else ``exc`` without the inputs it holds."""
    for error in exc.errors():
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigurationError):
            return cause
    details: list[Any] = [
        {"type": e["type"], "loc": e["loc"], "input": None, **({"ctx": e["ctx"]} if "ctx" in e else {})}
        for e in exc.errors()
    ]
    return ValidationError.from_exception_data(exc.title, details, hide_input=True)
