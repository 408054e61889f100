"""The exception tree of mmembed.

Every error mmembed raises on purpose derives from :class:`EmbeddingError`::

    EmbeddingError
    ├── ConfigurationError        a missing key / project, an impossible option (also a ValueError)
    ├── InputError                an item the caller sent cannot be embedded (.index, .source)
    │   ├── UnsafeURLError        a URL refused by the download policy (scheme, address, size, type)
    │   ├── UnsupportedKindError  a kind the model cannot take at all (video on a text+image model)
    │   └── RefusedInputError     the API refused one item's request as invalid (also a ProviderError)
    └── ProviderError             the provider (or the network to it) failed (.provider, .status, .request_id, .body)
        ├── AuthenticationError   401/403: the key or credentials were refused (never retried)
        ├── RateLimitError        429 after every retry was spent (.retry_after)
        ├── InvalidResponseError  a 200 whose body cannot be trusted (malformed, wrong count)
        └── TransportError        connection errors and timeouts after every retry was spent

Warnings: :class:`TextTooLongWarning` (a text is likely over the model's token limit; the server shortens it).

No message, ``repr`` or attribute of these errors ever contains an API key: provider errors carry only
an excerpt of the response body, and the request itself is never attached.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "EmbeddingError",
    "InputError",
    "InvalidResponseError",
    "ProviderError",
    "RateLimitError",
    "RefusedInputError",
    "TextTooLongWarning",
    "TransportError",
    "UnsafeURLError",
    "UnsupportedKindError",
]

BODY_EXCERPT_CHARS = 300


class EmbeddingError(Exception):
    """Root of every error mmembed raises on purpose."""


class ConfigurationError(EmbeddingError, ValueError):
    """The embedder cannot be built or used as configured (missing key, bad option)."""


class InputError(EmbeddingError, ValueError):
    """An item cannot be embedded; ``index`` is its position in the call, ``source`` describes it."""

    def __init__(self, message: str, *, index: int | None = None, source: str | None = None) -> None:
        self.reason = message
        self.index = index
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.index is not None:
            where.append(f"item {self.index}")
        if self.source:
            where.append(self.source)
        return f"{' '.join(where)}: {self.reason}" if where else self.reason

    def at(self, index: int, source: str | None = None) -> InputError:
        """The same error, placed at ``index`` in the caller's input (keeps the subclass)."""
        err = type(self).__new__(type(self))
        InputError.__init__(err, self.reason, index=index, source=source or self.source)
        err.__cause__ = self.__cause__
        return err


class UnsafeURLError(InputError):
    """A URL the client-side downloader refuses (scheme, private address, size, content type)."""


class UnsupportedKindError(InputError):
    """An item of a kind the model cannot embed (video or audio on a text+image model); names who can."""


class ProviderError(EmbeddingError):
    """A provider call failed; carries facts, never the request or its key."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        request_id: str | None = None,
        body: str | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.request_id = request_id
        self.body = excerpt(body) if body else None
        parts = [f"{provider}: {message}"]
        if status is not None:
            parts.append(f"HTTP {status}")
        if request_id:
            parts.append(f"request id {request_id}")
        text = " | ".join(parts)
        if self.body:
            text += f" | body: {self.body}"
        super().__init__(text)


class AuthenticationError(ProviderError):
    """The provider refused the credentials (401/403). Never retried."""


class RateLimitError(ProviderError):
    """The provider kept answering 429 after every retry; ``retry_after`` is its last hint in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class InvalidResponseError(ProviderError):
    """A successful status with a body that cannot be trusted (not JSON, wrong shape, wrong count)."""


class TransportError(ProviderError):
    """The network failed (connection reset, timeout) after every retry was spent."""


def excerpt(body: str, limit: int = BODY_EXCERPT_CHARS) -> str:
    """A single-line excerpt of a response body for error messages."""
    flat = " ".join(body.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class RefusedInputError(ProviderError, InputError):
    """The provider refused a one-item request as invalid (a 400): the item is named (``index``, ``source``),
    and the provider's facts are kept (``provider``, ``status``, ``request_id``, ``body``)."""

    @classmethod
    def of(cls, err: ProviderError) -> RefusedInputError:
        """``err`` (the 400 of a request that carried one item) as that item's error."""
        new = cls.__new__(cls)
        new.provider, new.status, new.request_id, new.body = err.provider, err.status, err.request_id, err.body
        InputError.__init__(new, str(err))
        return new

    def at(self, index: int, source: str | None = None) -> InputError:
        err = super().at(index, source)
        if isinstance(err, RefusedInputError):
            err.provider, err.status, err.request_id, err.body = self.provider, self.status, self.request_id, self.body
        return err


class TextTooLongWarning(UserWarning):
    """A text is likely over the model's token limit; the server silently shortens it."""
