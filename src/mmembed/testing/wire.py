"""What travels between the HTTP server and the emulated endpoints: parsed requests, replies, API errors."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import inspect
import json
import urllib.parse
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .models import ModelSpec

__all__ = ["ApiError", "Endpoint", "FilePart", "Incoming", "Reply", "Settings", "parse_body"]

FilePart = tuple[str, str | None, str | None, bytes]  # (part name, filename, content type, data)


@dataclass
class Incoming:
    """One HTTP request as the endpoints see it (body already read and parsed)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    request_id: str
    started: float
    oversize: bool = False
    json: Any = None
    body_error: str | None = None  # why the body could not be parsed
    form: dict[str, list[str]] = field(default_factory=dict)
    files: list[FilePart] = field(default_factory=list)
    raw_path: str = ""  # the path as sent, percent-encoding kept (what a request signature covers)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass(frozen=True)
class Reply:
    """An HTTP answer; ``payload`` keeps the JSON object behind ``body`` so faults can alter it."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    payload: Any = None
    trickle: float = 0.0  # > 0: send the body a few bytes at a time, this many seconds apart

    @classmethod
    def json(cls, status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status, body, "application/json", headers, payload)


@dataclass(frozen=True)
class Settings:
    """The parts of the emulator's configuration that endpoints need."""

    api_keys: frozenset[str] | None = None

    @classmethod
    def make(cls, api_keys: Collection[str] | None) -> Settings:
        return cls(None if api_keys is None else frozenset(api_keys))

    def accepts(self, key: str) -> bool:
        return bool(key) and (self.api_keys is None or key in self.api_keys)


class ApiError(Exception):
    """A refusal the endpoint renders in its provider's error format."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        loc: tuple[str | int, ...] | None = None,
        details: list[dict[str, Any]] | None = None,
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.loc, self.details = status, message, code, loc, details
        self.retry_delay = retry_delay  # seconds to come back in, for APIs that say so in the body


class Endpoint:
    """One emulated API route: how it authenticates, validates, answers and formats errors.

    A provider names its endpoint classes in ``Provider.emulator``; the Emulator builds one of each. Keyword
    arguments of a subclass's ``__init__`` are the endpoint's options: ``Emulator(<provider>_<option>=value)``
    reaches it as ``<option>=value``.
    """

    provider: ClassVar[str]
    models: ClassVar[tuple[ModelSpec, ...]] = ()  # the models it answers for (see mmembed.testing.models)
    retry_after_header: ClassVar[bool] = True  # False: the API says when to retry in its error body instead
    methods: ClassVar[frozenset[str]] = frozenset({"POST"})  # HTTP methods it answers (others: 405)
    prefix: ClassVar[str] = ""  # the path its routes are served under (see Emulator.url_for)
    normalized: bool = True  # False: it answers vectors that are not unit length

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """The keyword options its constructor takes."""
        params = inspect.signature(cls.__init__).parameters.values()
        return tuple(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self")

    def real_host(self, path: str) -> str | None:
        """The scheme and host the real API serves ``path`` on, when it is not the provider's default."""
        return None

    def matches(self, path: str) -> bool:
        raise NotImplementedError

    def error(self, err: ApiError, request_id: str) -> Reply:
        raise NotImplementedError

    def handle(self, req: Incoming, settings: Settings) -> Reply:
        raise NotImplementedError

    def drop_one(self, payload: Any) -> Any:
        """``payload`` (a successful answer) with one embedding fewer, for the ``wrong_count`` fault."""
        raise NotImplementedError


def bearer(headers: dict[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer …`` header (None when absent or another scheme)."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def parse_body(req: Incoming) -> None:
    """Fill ``req.json`` / ``req.form`` / ``req.files`` from the body according to its content type."""
    if not req.body:
        return
    kind = req.content_type
    if kind == "application/json" or kind.endswith("+json") or (not kind and req.body[:1] in (b"{", b"[")):
        try:
            req.json = json.loads(req.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            req.body_error = f"invalid JSON: {exc}"
    elif kind == "application/x-www-form-urlencoded":
        text = req.body.decode("utf-8", errors="replace")
        req.form = urllib.parse.parse_qs(text, keep_blank_values=True)
    elif kind == "multipart/form-data":
        try:
            req.form, req.files = parse_multipart(req.headers.get("content-type", ""), req.body)
        except ValueError as exc:
            req.body_error = str(exc)


def _header_params(raw_headers: bytes) -> email.message.Message:
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    return parser.parsebytes(raw_headers + b"\r\n\r\n")


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, list[str]], list[FilePart]]:
    """Split a multipart/form-data body into text fields and file parts (binary-safe, no ``cgi``).

    A part counts as a file when it has a filename, a non-text content type, or bytes that are not UTF-8.
    """
    boundary = _header_params(f"Content-Type: {content_type}".encode("latin-1")).get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ValueError("multipart/form-data without a boundary")
    form: dict[str, list[str]] = {}
    files: list[FilePart] = []
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    chunks = (b"\r\n" + body).split(delimiter)
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        headers = _header_params(head.lstrip(b"\r\n"))
        name = headers.get_param("name", header="content-disposition")
        filename = headers.get_filename()
        part_type = headers.get("content-type")
        name_text = name if isinstance(name, str) else ""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        is_text_type = part_type is None or str(part_type).lower().startswith("text/plain")
        if filename is None and is_text_type and text is not None:
            form.setdefault(name_text, []).append(text)
        else:
            files.append((name_text, filename, None if part_type is None else str(part_type), data))
    return form, files
