"""What every self-hosted embedding server shares: a server named by ``base_url``, an optional key, discovery of
the served model, adaptive concurrency, and the OpenAI-style ``{"data": [{"index", "embedding"}]}`` answer.

:class:`SelfHostedProvider` is the base of the providers for servers users run themselves (their module names
the server). It differs from a hosted API's provider in four ways:

* **the host is the user's**: ``base_url`` is required unless the class has a hosted default; a trailing ``/v1``
  (the OpenAI client's habit) is accepted where the server's paths already start with it;
* **no key by default** (``key_required = False``): a server started with an API key gets it as a Bearer token;
* **discovery, lazily**: building an Embedder sends nothing. When no model is named, the provider asks the
  server once what it serves (:meth:`SelfHostedProvider.discover`), before the first request or when a Chroma
  function writes its config (so the collection freezes the real model), and adopts the model and the kinds and
  batch cap the server reports. A named model is taken on trust: no extra request; each answer's ``model`` is
  checked against it (a :class:`~mmembed.errors.ConfigurationError` naming both), and a server serving several
  refuses a wrong name itself. When ``dimensions`` is asked for and the model's size is unknown, one probe
  input learns it (else the first answer does; the server's size wins over the table's);
* **no published rate limit**: unless the user sets ``requests_per_minute`` or a ``rate_limiter``, an
  :class:`~mmembed._adaptive.AdaptiveLimiter` finds the server's capacity (the pipeline's worker count,
  ``max_concurrency``, is its ceiling), search queries go first, and answers that only say "busy" (503, 429)
  are retried for up to ``busy_timeout`` seconds before they surface.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypedDict, TypeVar

import numpy as np
import requests

from .._adaptive import AdaptiveLimiter
from ..errors import AuthenticationError, ConfigurationError, InvalidResponseError, ProviderError
from ..images import ImageSpec
from ..inputs import InterleavedItem, Item
from ..options import Doc, ModelOptions
from ..transport import Transport
from ._family import ModelFamily
from ._types import ModelInfo, ProviderOptions, Ready, Task, indexed_data, json_body
from .base import Provider

__all__ = [
    "BUSY",
    "SelfHostedFamily",
    "SelfHostedOptions",
    "SelfHostedProvider",
    "Served",
    "ServerFamilyOptions",
    "data_uri",
    "describe_server_error",
    "ids",
    "served_models",
]

log = logging.getLogger("mmembed.providers")
T = TypeVar("T")
BUSY = frozenset({429, 503})  # a server saying "too much right now", not "wrong request"
DISCOVERY_TIMEOUT = 10.0


class SelfHostedOptions(ModelOptions, total=False):
    """Options every self-hosted server's provider takes, besides the common ones."""

    busy_timeout: Annotated[
        float | None,
        Doc("Seconds to keep retrying while the server answers 503/429 (busy) before the error surfaces.",
            default=300.0, local=True),
    ]


class ServerFamilyOptions(TypedDict, total=False):
    """Options of every self-hosted family: instruction prefixes (these servers have no query field, or not
    everywhere) and how many texts a request carries."""

    query_prefix: Annotated[
        str | None, Doc("Text put before every query text (e.g. 'query: ' for E5 models; default none).")
    ]
    document_prefix: Annotated[
        str | None, Doc("Text put before every document text (e.g. 'passage: '; default none).")
    ]
    batch_size: Annotated[
        int | None,
        Doc("Texts per request (default: the server's cap when it says one, else the family's, e.g. 64).",
            local=True),
    ]


@dataclass(frozen=True)
class Served:
    """What a server said about itself: the model ids it serves, and what it knows of them."""

    models: tuple[str, ...]
    kinds: frozenset[str] | None = None  # item kinds the served model takes (None: the server does not say)
    max_batch: int | None = None  # inputs one request may carry (None: the server does not say)
    dimensions: int | None = None


def data_uri(ready: Ready) -> str:
    """An image (or audio) as a ``data:`` URI, or its http(s) URL as given (the server fetches it)."""
    if ready.url is not None:
        return ready.url
    if ready.image is not None:
        return f"data:{ready.image.media_type};base64,{base64.b64encode(ready.image.data).decode('ascii')}"
    if ready.media is not None:
        kind = ready.media_type or "application/octet-stream"
        return f"data:{kind};base64,{base64.b64encode(ready.media).decode('ascii')}"
    raise ValueError("an item with nothing to send")  # a bug, not user input


def describe_server_error(response: requests.Response) -> tuple[str, str | None]:
    """Message and request id from the error shapes these servers answer.

    ``{"error": {"message": ...}}``, the older flat ``{"object": "error", "message": ...}``, ``{"error": "..."}``
    (a bare 401, or a Rust server's validation error with its ``error_type``), ``{"message": ...}`` and FastAPI's
    ``{"detail": "..." | [{"msg", "loc"}] | {...}}``; an empty or non-JSON body gives the status line.
    """
    request_id = response.headers.get("x-request-id")
    fallback = f"HTTP {response.status_code} {response.reason or ''}".strip()
    try:
        body: Any = response.json()
    except ValueError:
        return fallback, request_id
    if not isinstance(body, dict):
        return fallback, request_id
    error = body.get("error")
    if isinstance(error, dict):
        body = error
    elif isinstance(error, str) and error:
        kind = body.get("error_type")
        return (f"{error} ({kind})" if kind else error), request_id
    message = body.get("message")
    if isinstance(message, str) and message:
        return message, request_id
    return _detail(body.get("detail")) or fallback, request_id


def _detail(detail: Any) -> str | None:
    if isinstance(detail, str):
        return detail or None
    if isinstance(detail, dict):
        detail = [detail]
    if isinstance(detail, list) and detail:
        parts = []
        for entry in detail[:3]:
            if isinstance(entry, dict):
                where = ".".join(str(p) for p in entry.get("loc", ()) if p != "body")
                parts.append(f"{where}: {entry.get('msg', '')}" if where else str(entry.get("msg", "")))
        return "; ".join(p for p in parts if p) or None
    return None


class SelfHostedProvider(Provider):
    """Base of the providers for servers users run: required ``base_url``, optional key, discovery, adaptivity."""

    key_required: ClassVar[bool] = False
    default_base_url: ClassVar[str] = ""  # none: the user names the server
    default_concurrency: ClassVar[int] = 64  # the adaptive limit's ceiling (the pipeline's worker threads)
    settings: ClassVar[type] = SelfHostedOptions
    #: Where the server's own paths start with ``/v1``, a ``base_url`` ending in ``/v1`` loses it.
    strips_v1: ClassVar[bool] = True
    busy_timeout: float
    family: SelfHostedFamily

    def __init__(self, options: ProviderOptions, **settings: Any) -> None:
        self.controller: AdaptiveLimiter | None = None
        self._served: Served | None = None
        self._discovery_lock = threading.Lock()
        super().__init__(options, **settings)

    # -- where, and how many at once ----------------------------------------------------------------
    def default_url(self) -> str:
        if not self.default_base_url:
            raise ConfigurationError(
                f"{self.name}: base_url is required: the address of your {self.title} server "
                f"(e.g. base_url='http://localhost:8000')"
            )
        return self.default_base_url

    @property
    def hosted(self) -> bool:
        """Whether requests go to the provider's own hosted service (not a server the user runs)."""
        return bool(self.default_base_url) and self.base_url == self.default_base_url.rstrip("/")

    def url(self, path: str) -> str:
        base = self.base_url
        if self.strips_v1 and base.endswith("/v1") and path.startswith("/v1/"):
            base = base[: -len("/v1")]
        return f"{base}{path}"

    def _transport(self) -> Transport:
        transport = super()._transport()
        options = self.options
        rated = options.rate_limiter is not None or options.requests_per_minute is not None
        if not rated and self.hosting.requests_per_minute is None and self.default_requests_per_minute is None:
            self.controller = AdaptiveLimiter(self.concurrency, honour_pauses=self.hosted)
            transport.limiter = self.controller
        return transport

    def describe_error(self, response: requests.Response) -> tuple[str, str | None]:
        return describe_server_error(response)

    # -- discovery ----------------------------------------------------------------------------------------
    def served(self) -> Served | None:
        """What the server reported about itself (None: not asked, or it could not say)."""
        return self._served

    def discover(self, *, ask: bool = False, probe: bool = False) -> None:
        """Learn what the server serves, once: asked when no model was named (or ``ask``), else taken on trust
        and checked by the answers (the model each one names); ``probe`` (or a ``dimensions`` to check against
        a model of unknown size) embeds one short text to learn the size."""
        with self._discovery_lock:
            if self._served is None and (ask or not self.family.named):
                self._served = self._ask_server()
                self.family.adopt(self._served)
            if (probe or self.options.dimensions is not None) and self.family.native_dimensions is None:
                self.family.probe()

    def _ask_server(self) -> Served:
        """The server's answer about itself, or an empty one when it cannot say and the user named the model."""
        if self.hosted:
            return Served(())
        try:
            return self.ask_server()
        except (requests.RequestException, InvalidResponseError, ProviderError) as exc:
            if self.family.named:
                log.debug("%s: no discovery at %s: %s", self.name, self.base_url, exc)
                return Served(())
            raise ConfigurationError(
                f"{self.name}: could not ask the server at {self.base_url} which model it serves ({exc}); "
                "check base_url, or pass model=..."
            ) from None

    def ask_server(self) -> Served:
        """One request to the server's discovery route (a provider implements it)."""
        raise NotImplementedError

    def get_json(self, path: str) -> Any:
        """GET ``path`` once (no retries: discovery is one cheap call) and return its JSON body."""
        response = self.transport.session.get(
            self.url(path), headers=dict(self.headers()), timeout=min(DISCOVERY_TIMEOUT, self.options.timeout)
        )
        if response.status_code in (401, 403):
            message, request_id = self.describe_error(response)
            raise AuthenticationError(message, provider=self.name, status=response.status_code,
                                      request_id=request_id)
        if not response.ok:
            message, request_id = self.describe_error(response)
            raise ProviderError(message, provider=self.name, status=response.status_code, request_id=request_id)
        return json_body(response, self.name)

    # -- requests: busy answers retried, queries first --------------------------------------------------
    def post(self, path: str, parse: Callable[[requests.Response], T], **body: Any) -> T:
        """POST through the transport; while the server only says "busy" (503/429), try again."""
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.5
        while True:
            try:
                return super().post(path, parse, **body)
            except AuthenticationError:
                raise
            except ProviderError as err:
                if err.status not in BUSY or time.monotonic() + pause > deadline:
                    raise
                log.debug("%s: still busy (HTTP %s); trying again in %.1fs", self.name, err.status, pause)
            time.sleep(pause)
            pause = min(5.0, pause * 2)

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        self.discover()
        if self.controller is None:
            return self.family.send(route, batch, task)
        with self.controller.priority(task == "query", len(batch)):
            return self.family.send(route, batch, task)

    def send_multi(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        self.discover()
        if self.controller is None:
            return self.family.send_multi(route, batch, task)
        with self.controller.priority(task == "query", len(batch)):
            return self.family.send_multi(route, batch, task)

    # -- the pipeline's questions wait for discovery ----------------------------------------------------
    def multivector_width(self) -> int | None:
        self.discover()
        return self.family.multivector_width()

    def multivector_only(self) -> bool:
        self.discover()
        return self.family.multivector_only()

    def native_kinds(self) -> frozenset[str]:
        self.discover()
        return self.family.native_kinds()

    def takes_interleaved(self, item: InterleavedItem) -> bool:
        self.discover()
        return self.family.takes_interleaved(item)

    def model_for(self, item: Item) -> str:
        self.discover()
        return self.family.model_for(item)

    def image_spec(self) -> ImageSpec:
        self.discover()
        return self.family.image_spec()

    def cap(self, route: str) -> int:
        self.discover()
        return self.family.cap(route)

    def persisted_settings(self) -> dict[str, Any]:
        """The config a Chroma collection keeps: the served model, asked for now when none was named."""
        if not self.family.named:
            self.discover()
        return super().persisted_settings()


class SelfHostedFamily(ModelFamily):
    """A model family on a self-hosted server: a model learnt from the server when not named, prefixes, data URIs.

    The model may be unknown until discovery (:meth:`adopt`): ``self.model`` is then ``""`` and the family's
    defaults apply. ``named`` says whether the user chose the model.
    """

    settings: ClassVar[type | None] = ServerFamilyOptions
    default_cap: ClassVar[int] = 64  # inputs per request when neither the model nor the server says
    query_prefix: str | None
    document_prefix: str | None
    batch_size: int | None

    def configure(self, **settings: Any) -> None:
        super().configure(**settings)
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigurationError(f"{self.name}: batch_size must be at least 1")

    def __init__(self, provider: Provider, model: str, wire: Mapping[str, Any], **settings: Any) -> None:
        self.named = bool(model)
        self.served_kinds: frozenset[str] | None = None
        self.served_cap: int | None = None
        super().__init__(provider, model, wire, **settings)
        self.native_dimensions: int | None = self.info.dimensions

    @classmethod
    def lookup(cls, model: str) -> ModelInfo:
        return cls.models.get(model) or cls.unknown(model)

    def adopt(self, served: Served) -> None:
        """Take what the server said: its model (checked against the one named), kinds, cap and size."""
        if served.models:
            if self.named and self.model not in served.models:
                raise ConfigurationError(
                    f"{self.name}: the server at {self.provider.base_url} serves {', '.join(served.models)}, "
                    f"not {self.model}; pass model={served.models[0]!r} (or point base_url at the right server)"
                )
            if not self.named:
                if len(served.models) > 1:
                    raise ConfigurationError(
                        f"{self.name}: the server at {self.provider.base_url} serves several models "
                        f"({', '.join(served.models)}); choose one with model=..."
                    )
                self.model = served.models[0]
                self.info = self.lookup(self.model)
                self.native_dimensions = self.info.dimensions
                self.check_dimensions(self.info)
                if self.provider.options.dimensions is None:
                    self.dimensions = self.info.dimensions
        self.served_kinds = served.kinds
        self.served_cap = served.max_batch
        if served.dimensions is not None:
            self.learn_dimensions(served.dimensions)

    def probe(self) -> None:
        """Learn the model's size from one short text (servers that do not say it)."""
        vectors = self.embed_raw(["dimension probe"])
        self.learn_dimensions(int(np.asarray(vectors[0]).size))

    def embed_raw(self, texts: list[str]) -> list[Any]:
        """The raw vectors of ``texts`` as the server answers them (no truncation), for :meth:`probe`."""
        raise NotImplementedError

    def learn_dimensions(self, size: int) -> None:
        """The model gives ``size`` values (the server is the truth): refuse a larger ``dimensions``, naming both."""
        self.native_dimensions = size
        asked = self.provider.options.dimensions
        if asked is not None and asked > size:
            raise ConfigurationError(
                f"{self.name}: {self.model or 'the served model'} gives {size} dimensions, "
                f"fewer than the dimensions={asked} asked for"
            )
        if asked is None:
            self.dimensions = size

    # -- capabilities --------------------------------------------------------------------------------
    def model_names(self) -> dict[str, str]:
        return {"model": self.model}

    def native_kinds(self) -> frozenset[str]:
        return self.served_kinds or self.info.kinds or self.kinds

    def cap(self, route: str) -> int:
        """Texts per request: ``batch_size``, else what the server says it takes, else the family's default;
        never more than the model and the server take."""
        caps = [c for c in (self.info.max_batch, self.served_cap) if c]
        return min([self.batch_size or self.served_cap or self.default_cap, *caps])

    # -- texts and answers -----------------------------------------------------------------------------
    def text(self, ready: Ready, task: Task) -> str:
        """The text as sent: with the task's prefix, when one is set."""
        prefix = self.query_prefix if task == "query" else self.document_prefix
        return f"{prefix}{ready.text}" if prefix else str(ready.text)

    def finish(self, vectors: Sequence[Any], expected: int) -> list[np.ndarray]:
        if vectors and not isinstance(vectors[0], (str, dict)):
            size = int(np.asarray(vectors[0]).size)
            if size and size != self.native_dimensions and np.asarray(vectors[0]).ndim == 1:
                self.learn_dimensions(size)
        return super().finish(vectors, expected)

    def indexed_parser(self, expected: int) -> Callable[[requests.Response], list[np.ndarray]]:
        """The OpenAI-style answer's parser, which also checks the model the answer names (a server that serves
        one model may take any name, and would answer with another model's vectors)."""

        def parse(response: requests.Response) -> list[np.ndarray]:
            self.check_answered_model(response)
            return self.finish(indexed_data(response, self.name, expected), expected)

        return parse

    def multi_parser(self, expected: int, field: str) -> Callable[[requests.Response], list[np.ndarray]]:
        """The parser of a multi-vector answer ``{"data": [{"index", <field>: [[row], ...]}]}``: rows checked and
        normalised (some servers leave them as the model gave them), the answering model checked."""

        def parse(response: requests.Response) -> list[np.ndarray]:
            self.check_answered_model(response)
            return self.finish_multi(indexed_data(response, self.name, expected, field=field), expected)

        return parse

    def check_answered_model(self, response: requests.Response) -> None:
        """Refuse an answer that names another model than the one asked for."""
        body = json_body(response, self.name)
        answered = body.get("model") if isinstance(body, dict) else None
        if isinstance(answered, str) and answered and self.model and answered != self.model:
            raise ConfigurationError(
                f"{self.name}: the server at {self.provider.base_url} serves {answered}, not {self.model}; "
                f"pass model={answered!r} (or point base_url at the right server)"
            )


def served_models(body: Any, provider: str) -> list[dict[str, Any]]:
    """The ``data`` entries of an OpenAI-style ``/models`` answer (each with an ``id``)."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not all(isinstance(d, dict) and isinstance(d.get("id"), str) for d in data):
        raise InvalidResponseError("the models list has no 'data' of {id} entries", provider=provider)
    return data


def ids(entries: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    return tuple(str(entry["id"]) for entry in entries)



# -- open models these servers commonly serve (what we know of them; the server is the truth) ------------------
_TEXT = frozenset({"text"})
_TEXT_IMAGE = frozenset({"text", "image"})
VLM_KINDS = frozenset({"text", "image", "interleaved"})


def _clip(name: str, dims: int, side: int) -> ModelInfo:
    return ModelInfo(name, dims, image_side=side, matryoshka=False, kinds=_TEXT_IMAGE)


def _text(name: str, dims: int, *, matryoshka: bool = False) -> ModelInfo:
    return ModelInfo(name, dims, matryoshka=matryoshka, kinds=_TEXT)


#: CLIP-style models: a text or an image per input, one vector each, at the model's input side.
CLIP_MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        _clip("openai/clip-vit-base-patch32", 512, 224),
        _clip("openai/clip-vit-base-patch16", 512, 224),
        _clip("openai/clip-vit-large-patch14", 768, 224),
        _clip("openai/clip-vit-large-patch14-336", 768, 336),
        _clip("google/siglip-base-patch16-224", 768, 224),
        _clip("google/siglip-so400m-patch14-384", 1152, 384),
    )
}
#: Text embedding models (what text-only servers serve, and multimodal servers' text side).
TEXT_MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        _text("BAAI/bge-small-en-v1.5", 384),
        _text("BAAI/bge-base-en-v1.5", 768),
        _text("BAAI/bge-large-en-v1.5", 1024),
        _text("BAAI/bge-m3", 1024),
        _text("sentence-transformers/all-MiniLM-L6-v2", 384),
        _text("intfloat/multilingual-e5-large", 1024),
        _text("Alibaba-NLP/gte-base-en-v1.5", 768),
        _text("Qwen/Qwen3-Embedding-0.6B", 1024, matryoshka=True),
    )
}
