"""The Emulator: an offline stand-in for the embedding APIs of every registered provider.

It answers with deterministic FAKE vectors (see :mod:`mmembed.testing.space`), NOT the real models' output;
it is meant for tests, demos and benchmarks. Everything it does is observable: every request is recorded, and
latency, rate limits, concurrency limits and faults can be switched on to exercise a client's error handling.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
import time
import traceback
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ..ratelimit import RateLimiter
from .faults import Fault, FaultPlan
from .models import endpoint_classes
from .server import MAX_BODY, EmulatorServer
from .space import emulator_vector
from .wire import ApiError, Endpoint, FilePart, Incoming, Reply, Settings, parse_body

__all__ = ["Emulator", "EmulatorStats", "RecordedRequest"]

_PROXY_PAGE = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator received it, and the status it answered (None: no answer, or not yet)."""

    provider: str | None
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    json: Any
    form: dict[str, list[str]]
    files: list[FilePart]
    body_size: int
    status: int | None
    time: float


@dataclass
class EmulatorStats:
    """Counters since start (or the last :meth:`Emulator.clear`)."""

    requests: int = 0
    responses_by_status: dict[int, int] = field(default_factory=dict)
    rate_limited: int = 0  # 429 answers, whatever their cause
    max_in_flight: int = 0  # most requests admitted at once (refused ones do not count)
    connections: int = 0  # TCP connections accepted; low numbers mean the client reuses connections
    resets: int = 0  # connections reset instead of answered


class Emulator:
    """An offline emulator of the registered providers' embedding APIs over real HTTP.

    This is an EMULATOR: it answers with deterministic fake vectors, NOT the real models' embeddings — for
    tests, demos and benchmarks. The fake space keeps the traits clients must cope with: texts and images share
    a space with a modality gap, a colour named in a text matches pictures of that colour (see
    :mod:`mmembed.testing.samples`), vectors are Matryoshka-truncatable and identical across runs.

    Point a client's ``base_url`` at :attr:`url`; paths, bodies, limits and error formats are the real APIs'
    (answers of 1 KB or more are gzip-compressed when the client accepts it, as real APIs' are).
    ``api_keys=None`` accepts any non-empty key. ``latency`` adds seconds per request; ``rate_limit``
    (requests/second over all endpoints) and ``max_concurrency`` answer 429 beyond them (with ``Retry-After``
    unless ``retry_after=False``). By default the rate is a token bucket holding ``max(1, rate_limit)``
    requests; with ``rate_window`` (seconds) it is a provider's windowed quota instead: at most
    ``rate_limit * rate_window`` requests in any span of ``rate_window`` seconds (e.g. 500 per minute:
    ``rate_limit=500 / 60, rate_window=60``). ``fault_rate``/``fault_kinds``/``seed`` inject random faults, and
    :meth:`inject` queues specific ones.

    The endpoints are those the registered providers declare (``Provider.emulator``), plugins included; an
    endpoint's own options are given as ``<provider>_<option>=value`` (e.g. an endpoint of provider ``acme``
    taking ``strict=`` gets ``Emulator(acme_strict=True)``).

    >>> with Emulator() as emu:
    ...     emu.url.startswith("http://127.0.0.1:")
    True
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        rate_limit: float | None = None,
        rate_window: float | None = None,
        retry_after: bool = True,
        max_concurrency: int | None = None,
        api_keys: Collection[str] | None = None,
        fault_rate: float = 0.0,
        fault_kinds: Sequence[str | Fault] = (),
        seed: int = 0,
        **endpoint_options: Any,
    ) -> None:
        if latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency}")
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError(f"rate_limit must be > 0 requests per second, got {rate_limit}")
        if rate_window is not None and rate_window <= 0:
            raise ValueError(f"rate_window must be > 0 seconds, got {rate_window}")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if isinstance(api_keys, str) or isinstance(fault_kinds, str):
            raise TypeError("api_keys and fault_kinds take collections (e.g. a list), not one string")
        self.host, self.port = host, port
        self.latency, self.rate_limit, self.retry_after = latency, rate_limit, retry_after
        self.rate_window = rate_window
        self.max_concurrency = max_concurrency
        self._settings = Settings.make(api_keys)
        self._faults = FaultPlan(fault_rate, tuple(Fault.parse(k) for k in fault_kinds), seed)
        self._endpoints = _endpoints(endpoint_options)
        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self._stats = EmulatorStats()
        self._in_flight = 0
        # The client's own limiter, answering at once: a token bucket of max(1, rate) per second, or a window.
        self._bucket: RateLimiter | None = None
        if rate_limit is not None:
            paced = rate_window is None
            self._bucket = RateLimiter(rate_limit * 60, window=rate_window, paced=paced)
        self._stopping = threading.Event()
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind and serve in a daemon thread; returns self. Starting a started emulator does nothing."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = EmulatorServer(self.host, self.port, self._respond, self._count_connection)
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="mmembed-emulator", daemon=True
        )
        self._server = server
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections (hanging requests are released). Safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.drop_connections()
        server.server_close()
        if thread is not None:
            thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"<Emulator {where} (offline emulator: fake vectors)>"

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:53117``; clients use it in place of the real scheme and host."""
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() or use it as a context manager")
        host, port = self._server.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def url_for(self, provider: str) -> str:
        """The base URL a ``provider`` client takes: :attr:`url`, plus its endpoint's path prefix if it has one
        (servers whose routes would collide with another API's are served under ``/<provider>``)."""
        prefix = next((e.prefix for e in self._endpoints if e.provider == provider), "")
        return self.url + prefix

    def endpoint(self, provider: str) -> Endpoint:
        """The endpoint emulating ``provider`` (to read its state, e.g. a capacity's counters)."""
        found = next((e for e in self._endpoints if e.provider == provider), None)
        if found is None:
            raise ValueError(f"no emulator endpoint for {provider!r}")
        return found

    # -- observation and control -------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, refused ones included, in arrival order."""
        with self._lock:
            return list(self._records)

    @property
    def stats(self) -> EmulatorStats:
        """A snapshot of the counters."""
        with self._lock:
            return dataclasses.replace(self._stats, responses_by_status=dict(self._stats.responses_by_status))

    def clear(self) -> None:
        """Forget recorded requests and reset the counters (queued faults stay queued)."""
        with self._lock:
            self._records.clear()
            self._stats = EmulatorStats()

    def inject(self, fault: Fault | str, *, times: int = 1, provider: str | None = None) -> None:
        """Queue ``fault`` for the next ``times`` requests (to ``provider`` only, if given); consumed FIFO.

        ``fault`` is a :class:`Fault` or a shorthand: ``"500"``, ``"429"``, ``"reset"``, ``"hang"``,
        ``"malformed"``, ``"html"``, ``"wrong_count"``.
        """
        providers = tuple(dict.fromkeys(e.provider for e in self._endpoints))
        if provider is not None and provider not in providers:
            raise ValueError(f"provider must be one of {', '.join(providers)} or None, got {provider!r}")
        self._faults.inject(Fault.parse(fault), times, provider)

    def vector(
        self,
        provider: str,
        model: str,
        *,
        text: str | None = None,
        image: Image.Image | bytes | None = None,
        task: str | None = None,
        dimensions: int | None = None,
    ) -> NDArray[np.float64]:
        """The vector this emulator answers for one text or image (exactly as parsed from its JSON)."""
        normalized = all(e.normalized for e in self._endpoints if e.provider == provider)
        return emulator_vector(
            provider, model, text=text, image=image, task=task, dimensions=dimensions, normalized=normalized
        )

    # -- serving -----------------------------------------------------------------------------------------

    def endpoint_for(self, path: str) -> Endpoint | None:
        """The endpoint that serves ``path`` (None: the emulator answers 404)."""
        return next((e for e in self._endpoints if e.matches(path)), None)

    def _count_connection(self) -> None:
        with self._lock:
            self._stats.connections += 1

    def _respond(self, req: Incoming) -> Reply | None:
        endpoint = self.endpoint_for(req.path)
        parse_body(req)
        record = RecordedRequest(
            provider=endpoint.provider if endpoint else None, method=req.method, path=req.path,
            query=req.query, headers=req.headers, json=req.json, form=req.form, files=req.files,
            body_size=len(req.body), status=None, time=req.started,
        )
        with self._lock:
            self._stats.requests += 1
            self._records.append(record)
        try:
            reply = self._answer(req, endpoint)
        except Exception as exc:  # a bug in the emulator: say so in the answer and on stderr
            traceback.print_exc(file=sys.stderr)
            reply = Reply.json(500, {"detail": f"internal emulator error: {exc!r}"})
        self._finish(record, reply)
        return reply

    def _finish(self, record: RecordedRequest, reply: Reply | None) -> None:
        with self._lock:
            if reply is None:
                self._stats.resets += 1
            else:
                by_status = self._stats.responses_by_status
                by_status[reply.status] = by_status.get(reply.status, 0) + 1
                self._stats.rate_limited += reply.status == 429
                done = dataclasses.replace(record, status=reply.status)
                for i in range(len(self._records) - 1, -1, -1):  # clear() may have dropped it meanwhile
                    if self._records[i] is record:
                        self._records[i] = done
                        break

    def _answer(self, req: Incoming, endpoint: Endpoint | None) -> Reply | None:
        if endpoint is None:
            return Reply.json(404, {"detail": "Not Found"})
        if req.method not in endpoint.methods:
            return endpoint.error(ApiError(405, "Method Not Allowed"), req.request_id)
        if req.oversize:
            message = f"Request body larger than the emulator's limit of {MAX_BODY} bytes"
            return endpoint.error(ApiError(413, message), req.request_id)
        refusal = self._admit(endpoint, req)
        if refusal is not None:
            return refusal
        try:
            return self._answer_admitted(req, endpoint)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _admit(self, endpoint: Endpoint, req: Incoming) -> Reply | None:
        """Count the request in flight, or refuse it with a 429 (concurrency first, then the rate)."""
        with self._lock:
            if self.max_concurrency is not None and self._in_flight >= self.max_concurrency:
                message = f"Too many concurrent requests: at most {self.max_concurrency} at a time"
                wait = 1.0
            else:
                wait = self._bucket.take() if self._bucket is not None else 0.0
                if wait == 0.0:
                    self._in_flight += 1
                    self._stats.max_in_flight = max(self._stats.max_in_flight, self._in_flight)
                    return None
                message = f"Rate limit exceeded: at most {self.rate_limit:g} requests per second"
                if self._bucket is not None and self._bucket.window is not None:
                    message = f"Rate limit exceeded: at most {self._bucket.quota} requests per {self.rate_window:g} s"
        seconds = max(1, math.ceil(wait))
        headers = (("Retry-After", str(seconds)),) if self.retry_after and endpoint.retry_after_header else ()
        error = ApiError(429, message, retry_delay=seconds if self.retry_after else None)
        reply = endpoint.error(error, req.request_id)
        return dataclasses.replace(reply, headers=reply.headers + headers)

    def _answer_admitted(self, req: Incoming, endpoint: Endpoint) -> Reply | None:
        fault = self._faults.next(endpoint.provider)
        if fault is not None and fault.kind == "hang" and self._stopping.wait(fault.hang_seconds):
            return None  # stopped while hanging: drop the connection
        if fault is not None and fault.kind == "reset":
            self._stopping.wait(max(0.0, req.started + self.latency - time.monotonic()))
            return None
        if fault is not None and fault.kind in ("status", "html"):
            reply = self._fault_reply(fault, endpoint, req)
        else:
            try:
                reply = endpoint.handle(req, self._settings)
            except ApiError as err:
                reply = endpoint.error(err, req.request_id)
        self._stopping.wait(max(0.0, req.started + self.latency - time.monotonic()))
        if fault is None or fault.kind in ("status", "html", "hang"):
            return reply
        if fault.kind == "trickle":
            return dataclasses.replace(reply, trickle=fault.trickle_seconds)
        if fault.kind == "malformed":
            return Reply(200, reply.body[: max(1, len(reply.body) // 2)], "application/json")
        if reply.status == 200:  # wrong_count
            return Reply.json(200, endpoint.drop_one(reply.payload))
        return reply

    def _fault_reply(self, fault: Fault, endpoint: Endpoint, req: Incoming) -> Reply:
        status = fault.answer_status
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        headers: tuple[tuple[str, str], ...] = ()
        delay: float | None = None
        if fault.retry_after is not None:
            value = fault.retry_after
            headers = (("Retry-After", value if isinstance(value, str) else str(math.ceil(value))),)
            delay = None if isinstance(value, str) else float(value)
        elif status == 429 and self.retry_after:
            headers, delay = (("Retry-After", "1"),), 1.0
        if fault.kind == "html":
            page = _PROXY_PAGE.format(status=status, phrase=phrase).encode()
            return Reply(status, page, "text/html", headers)
        if not endpoint.retry_after_header:  # the delay goes in the error body (Google's RetryInfo)
            headers = ()
        error = ApiError(status, f"{phrase} (injected by the emulator)", retry_delay=delay)
        reply = endpoint.error(error, req.request_id)
        return dataclasses.replace(reply, headers=reply.headers + headers)


def _endpoints(options: dict[str, Any]) -> tuple[Endpoint, ...]:
    """One endpoint of each registered class; ``<provider>_<option>`` goes to that provider's endpoints that take
    ``option`` (longest provider name first, so ``acme_pro_x`` reaches provider ``acme_pro`` before ``acme``)."""
    classes = endpoint_classes()
    providers = sorted({cls.provider for cls in classes}, key=len, reverse=True)
    given: dict[type[Endpoint], dict[str, Any]] = {cls: {} for cls in classes}
    for key, value in options.items():
        provider = next((p for p in providers if key.startswith(f"{p}_")), None)
        option = key[len(provider) + 1 :] if provider else key
        takers = [cls for cls in classes if cls.provider == provider and option in cls.options()]
        if not takers:
            raise TypeError(f"Emulator() got an unexpected keyword argument {key!r}")
        for cls in takers:
            given[cls][option] = value
    return tuple(cls(**given[cls]) for cls in classes)
