"""What the emulated self-hosted servers share: the served model, an optional key, and a capacity mode.

A real self-hosted server is one GPU: it embeds a fixed number of items a second, queues what it cannot start
yet, and refuses beyond its queue (with 503 or 429, as each server does, without ``Retry-After``).
:class:`Capacity` emulates exactly that: requests are served one after another, each taking its items divided by
``items_per_second``, and answered when done; a request that would find ``queue`` requests already waiting to
start is refused at once (a queue bound that counts requests, as inference servers' usually do). Its counters
(items served, the span from the first start to the last finish) give the throughput the server achieved, by its
own clock: what a benchmark or a test of a client's adaptivity reads.

>>> cap = Capacity(100, queue=1)
>>> cap.admit(5, now=0.0), cap.admit(10, now=0.0), cap.admit(1, now=0.0)
(0.05, 0.15000000000000002, None)
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from PIL import Image

from .imagedata import ImageDataError, decode_base64, decode_image, fetch_url
from .models import ModelSpec
from .space import embed, embed_parts, get_space, multivector, part_vector, to_wire
from .wire import ApiError, Endpoint, Incoming, Reply, Settings, bearer

__all__ = ["Capacity", "CapacityStats", "Part", "ServerEndpoint"]

Part = tuple[str, Any]  # ("text", str) | ("image", PIL image) | ("audio", bytes)


@dataclass(frozen=True)
class CapacityStats:
    """What a capacity-limited server did: items served and refused, and when it was busy."""

    served: int
    refused_requests: int
    first_start: float | None
    last_finish: float | None
    items_per_second: float

    @property
    def achieved(self) -> float:
        """Items served per second from the first start to the last finish (0 before two moments exist)."""
        if self.first_start is None or self.last_finish is None or self.last_finish <= self.first_start:
            return 0.0
        return self.served / (self.last_finish - self.first_start)

    @property
    def fraction(self) -> float:
        """``achieved`` as a fraction of the capacity."""
        return self.achieved / self.items_per_second


class Capacity:
    """A server that embeds ``items_per_second`` items, one request after another, with ``queue`` requests waiting."""

    def __init__(self, items_per_second: float, *, queue: int = 16) -> None:
        if items_per_second <= 0 or queue < 0:
            raise ValueError("items_per_second must be > 0 and queue >= 0")
        self.items_per_second = float(items_per_second)
        self.queue = queue
        self._starts: deque[float] = deque()  # start times of admitted requests, in order
        self._busy_until = 0.0
        self._served = 0
        self._refused = 0
        self._first: float | None = None
        self._last: float | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Capacity({self.items_per_second:g} items/s, queue={self.queue})"

    def admit(self, items: int, now: float | None = None) -> float | None:
        """Seconds until a request of ``items`` is done (it is queued), or None when the queue is full."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._starts and self._starts[0] <= now:
                self._starts.popleft()  # started: no longer waiting
            start = max(now, self._busy_until)
            if start > now and len(self._starts) >= self.queue:
                self._refused += 1
                return None
            if start > now:
                self._starts.append(start)
            self._busy_until = start + items / self.items_per_second
            self._served += items
            self._first = start if self._first is None else min(self._first, start)
            self._last = self._busy_until if self._last is None else max(self._last, self._busy_until)
            return self._busy_until - now

    def stats(self) -> CapacityStats:
        with self._lock:
            return CapacityStats(self._served, self._refused, self._first, self._last, self.items_per_second)

    def reset(self) -> None:
        with self._lock:
            self._served = self._refused = 0
            self._first = self._last = None


class ServerEndpoint(Endpoint):
    """An emulated self-hosted server: the model it serves (``model``), a key if started with one (``api_key``),
    and, with ``capacity`` (items a second, or a :class:`Capacity`), a fixed speed and a bounded ``queue``."""

    models: ClassVar[tuple[ModelSpec, ...]] = ()
    busy_status: ClassVar[int] = 503  # what the server answers when its queue is full
    busy_message: ClassVar[str] = "The server is overloaded"
    methods: ClassVar[frozenset[str]] = frozenset({"GET", "POST"})  # GET: its discovery route
    #: The routes of a self-hosted server would collide with hosted APIs' (``/v1/embeddings``): it is served
    #: under ``/<provider>`` (clients take ``Emulator.url_for(provider)``), as behind a gateway.
    routes: ClassVar[tuple[str, ...]] = ()
    #: Where the real server listens by default (what a recorded cassette names in place of the emulator).
    default_host: ClassVar[str] = "http://localhost:8000"

    def __init__(
        self,
        *,
        model: str | None = None,
        api_key: str | None = None,
        capacity: float | Capacity | None = None,
        queue: int = 16,
    ) -> None:
        names = [spec.name for spec in self.models]
        if model is not None and model not in names:
            raise ValueError(f"{self.provider} emulates {', '.join(names)}, not {model!r}")
        self.spec = next(spec for spec in self.models if model in (None, spec.name))
        self.api_key = api_key
        self.capacity = capacity if isinstance(capacity, Capacity) or capacity is None else Capacity(
            capacity, queue=queue
        )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.prefix = f"/{cls.provider}"

    def matches(self, path: str) -> bool:
        return path.startswith(f"{self.prefix}/") and path[len(self.prefix):] in self.routes

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """Its own keyword options and those every emulated server takes (``Emulator(vllm_capacity=200)``)."""
        return tuple(dict.fromkeys((*super().options(), "model", "api_key", "capacity", "queue")))

    def real_host(self, path: str) -> str | None:
        return self.default_host

    # -- what every server does first -------------------------------------------------------------------
    def check_key(self, req: Incoming, settings: Settings) -> None:
        """A server started with a key (``api_key``, or the Emulator's ``api_keys``) wants it as a Bearer token;
        one started without takes anything."""
        if self.api_key is None and settings.api_keys is None:
            return
        token = bearer(req.headers) or ""
        if token != self.api_key and not (settings.api_keys is not None and settings.accepts(token)):
            raise ApiError(401, "Unauthorized")

    def json_object(self, req: Incoming) -> dict[str, Any]:
        if req.body_error is not None:
            raise ApiError(400, req.body_error)
        if not isinstance(req.json, dict):
            raise ApiError(422, "the request body must be a JSON object")
        return req.json

    def check_model(self, body: dict[str, Any], *, required: bool = False) -> None:
        name = body.get("model")
        if name is None and not required:
            return
        if name != self.spec.name:
            raise ApiError(404, f"The model `{name}` does not exist.")

    def serve(self, items: int) -> None:
        """Wait the time the server takes for ``items`` (capacity mode), or refuse when its queue is full."""
        if self.capacity is None:
            return
        seconds = self.capacity.admit(items)
        if seconds is None:
            raise ApiError(self.busy_status, self.busy_message)
        time.sleep(seconds)

    # -- inputs and vectors -----------------------------------------------------------------------------
    @staticmethod
    def picture(url: str, where: str) -> Image.Image:
        """An image given as an http(s) URL (fetched, loopback only) or a data URI."""
        try:
            if url.startswith(("http://", "https://")):
                return decode_image(fetch_url(url))
            if not url.startswith("data:"):
                raise ImageDataError("not a URL or a data: URI")
            return decode_image(decode_base64(url))
        except ImageDataError as exc:
            raise ApiError(400, f"{where}: {exc}") from None

    def vector(self, part: Part, *, query: bool = False) -> list[float]:
        kind, value = part
        if kind == "text":
            return embed(self.spec, text=value, task="query" if query else None)
        if kind == "image":
            return embed(self.spec, image=value)
        space = get_space(self.spec.space, self.spec.dim)
        return to_wire(space.opaque_image(hashlib.sha256(value).hexdigest()))

    def joint(self, parts: Sequence[Part], *, query: bool = False) -> list[float]:
        """One vector for a text+image input (a VLM conversation): the mean of its parts' vectors."""
        vectors = [
            part_vector(self.spec, text=v, query=query) if k == "text" else part_vector(self.spec, image=v)
            for k, v in parts
        ]
        return embed_parts(self.spec, vectors, None)

    def rows(self, parts: Sequence[Part]) -> list[list[float]]:
        """A token-embedding model's answer for one input: a unit row per token of its texts and per patch of its
        images (a fixed grid, see :func:`mmembed.testing.space.multivector`), in the order of its parts."""
        out: list[list[float]] = []
        for kind, value in parts:
            if kind == "text":
                out += multivector(self.spec, text=value)
            elif kind == "image":
                out += multivector(self.spec, image=value)
            else:
                raise ApiError(400, f"{self.spec.name} embeds texts and images, not {kind}")
        return out

    @staticmethod
    def indexed(vectors: Sequence[list[float]], model: str) -> dict[str, Any]:
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return {"object": "list", "model": model, "data": data, "usage": {"prompt_tokens": 0, "total_tokens": 0}}

    def drop_one(self, payload: Any) -> Any:
        if isinstance(payload, list):
            return payload[:-1]
        return {**payload, "data": payload["data"][:-1]}

    def handle(self, req: Incoming, settings: Settings) -> Reply:
        self.check_key(req, settings)
        if req.method == "GET":
            return Reply.json(200, self.describe())
        if req.method != "POST":
            raise ApiError(405, "Method Not Allowed")
        return self.embed_request(self.json_object(req))

    def describe(self) -> Any:
        """The answer to the server's discovery route."""
        raise NotImplementedError

    def embed_request(self, body: dict[str, Any]) -> Reply:
        raise NotImplementedError
