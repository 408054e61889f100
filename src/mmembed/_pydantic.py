"""Errors raised while a pydantic adapter (LlamaIndex, LangChain) builds its Embedder, given back safely.

pydantic wraps every ValueError raised in ``model_post_init`` into a ValidationError that quotes the whole
input, key included (``hide_input_in_errors`` keeps it out of the text only, not out of ``errors()``). Our
:class:`~mmembed.ConfigurationError` is a ValueError, so it arrives wrapped; :func:`safe_error` unwraps it,
and strips the inputs from any other validation error. Raise the result outside the ``except`` block, so
the original error is not its ``__context__``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .errors import ConfigurationError

__all__ = ["safe_error"]


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
