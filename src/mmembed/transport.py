"""HTTP for one provider client: one pooled session, timeouts, retries with jitter, Retry-After, rate limit.

A :class:`Transport` is owned by exactly one provider instance. It knows nothing about embeddings: a
provider hands it a request and a ``parse`` callable, and gets back whatever ``parse`` returned. A
response ``parse`` rejects (:class:`InvalidResponseError`) is retried like a 5xx, so a malformed body or
a wrong count never reaches the caller unless every retry failed.

Retried: 408, 409, 429, every 5xx, connection errors, timeouts and untrustworthy 200s. Never retried:
401/403 or whatever else the provider's ``is_auth_error`` recognises (:class:`AuthenticationError`), and
other 4xx (validation errors). Should a server echo a credential into an error body, it is redacted.
Back-off is exponential with full jitter; a ``Retry-After`` header (seconds or an HTTP date), or whatever delay
the provider's ``retry_after`` hook reads (Google's ``RetryInfo``), wins, up to ``retry_after_cap``. A 429
also pauses the shared :class:`RateLimiter` (:mod:`mmembed.ratelimit`) and every other window the client
counts (:attr:`Transport.windows`: say a provider's per-minute inputs and images), so every worker of the
client slows down together; every second waited on any of them is counted in :attr:`Transport.stats`
(``waited``).

``timeout`` bounds each attempt as a whole, not only each read: :func:`attempt_deadline` shuts the socket of
an attempt that outlives it, so a server that trickles its answer a byte at a time cannot hold a worker.

Tests can answer requests in-process, without a socket (as httpx's ``MockTransport``): ``Transport(...,
handler=answer)``, or ``transport.mount(answer)`` on a provider's transport, routes every request to
``answer(request: requests.PreparedRequest) -> requests.Response`` (:func:`mock_response` builds one; raising
``requests.ConnectionError`` stands for a failed connection). Retries, Retry-After, rate limits, pauses and the
attempt deadline still apply::

    def answer(request):
        return mock_response(200, json={"data": [{"embedding": [1.0, 0.0]}]})

    embedder.provider.transport.mount(answer)
"""

from __future__ import annotations

import email.utils
import functools
import heapq
import http.client
import itertools
import json as _json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .errors import (
    AuthenticationError,
    InvalidResponseError,
    ProviderError,
    RateLimitError,
    TransportError,
)
from .ratelimit import RateLimiter

__all__ = [
    "AttemptWatch",
    "DeadlineAdapter",
    "Handler",
    "Limiter",
    "MockAdapter",
    "RateLimiter",
    "RetryPolicy",
    "Transport",
    "TransportSnapshot",
    "TransportStats",
    "WatchedHTTPConnection",
    "WatchedHTTPSConnection",
    "attempt_deadline",
    "mock_response",
    "parse_retry_after",
]

log = logging.getLogger("mmembed.transport")
T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 409, 429})
AUTH_STATUSES = frozenset({401, 403})


class Limiter(Protocol):
    """What a Transport needs from a rate limiter (``Embedder(rate_limiter=...)`` takes any such object).

    ``acquire()`` blocks until one request may start and returns the seconds it waited; ``pause(seconds)``
    is called on a 429 with the server's ``Retry-After`` and must hold back every client sharing the key.
    Both are called from several threads at once. A limiter may also offer ``release()``: the transport then
    calls it, on the same thread, when the request that ``acquire()`` admitted has ended (see
    :class:`mmembed.ratelimit.RateLimiter`, the one mechanism every window of mmembed uses), and
    ``observe(status, seconds)``: then it reports each attempt's HTTP status (None: no answer) and duration, on
    that thread, before ``release()`` (see :class:`mmembed._adaptive.AdaptiveLimiter`).
    """

    def acquire(self) -> float: ...

    def pause(self, seconds: float) -> None: ...


# -- a deadline for a whole attempt --------------------------------------------------------------------------
# requests' timeouts bound each connect and each read; a server that keeps sending a byte now and then never
# trips them. A watch, set per thread around one attempt, learns which connection the attempt uses and shuts
# its socket when the time is up; the blocked read then fails at once.
_watching = threading.local()


class AttemptWatch:
    """The socket one attempt uses, and whether its time ran out."""

    def __init__(self) -> None:
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shut(self._sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class _Watchdog:
    """One daemon thread that expires watches at their deadlines.

    A ``threading.Timer`` per attempt would start (and tear down) a thread per request, about 0.1 ms each:
    on a warm query that is a tenth of the client's whole budget. Nor is the watchdog woken per request: it
    looks again at least every ``IDLE_LOOK`` seconds, so only a deadline earlier than its next look wakes it.
    Cancelled entries are dropped lazily.
    """

    IDLE_LOOK = 0.5

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[list[Any]] = []  # [deadline, sequence, watch or None once cancelled]
        self._cancelled = 0
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None
        self._wake_at = 0.0  # when the watchdog looks next

    def add(self, seconds: float, watch: AttemptWatch) -> list[Any]:
        entry: list[Any] = [time.monotonic() + seconds, next(self._sequence), watch]
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._thread is None or not self._thread.is_alive():  # first use, or in a forked child
                self._thread = threading.Thread(target=self._run, name="mmembed-deadlines", daemon=True)
                self._thread.start()
            if entry[0] < self._wake_at:
                self._cond.notify()
        return entry

    def cancel(self, entry: list[Any]) -> None:
        with self._cond:
            entry[2] = None
            self._cancelled += 1
            if self._cancelled > 64 and self._cancelled > len(self._heap) // 2:
                self._heap = [e for e in self._heap if e[2] is not None]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2] is None:
                    heapq.heappop(self._heap)
                    self._cancelled -= 1
                now = time.monotonic()
                delay: float = self.IDLE_LOOK
                if self._heap:
                    delay = min(float(self._heap[0][0]) - now, self.IDLE_LOOK)
                if delay > 0 or not self._heap:
                    self._wake_at = now + delay
                    self._cond.wait(delay)
                    continue
                watch = heapq.heappop(self._heap)[2]
                watch.expire()


_watchdog = _Watchdog()


@contextmanager
def attempt_deadline(seconds: float) -> Iterator[AttemptWatch]:
    """Give the HTTP exchange made in this block, on this thread, ``seconds`` in all; then its socket is shut.

    Only connections of a :class:`DeadlineAdapter` take part; the watch's ``expired`` says why an error came.
    """
    watch = AttemptWatch()
    previous = getattr(_watching, "watch", None)
    _watching.watch = watch
    entry = _watchdog.add(seconds, watch)
    try:
        yield watch
    finally:
        _watchdog.cancel(entry)
        _watching.watch = previous


def _report_to_watch(conn: HTTPConnection) -> None:
    # The socket itself, not the connection: http.client hands a read-until-close answer's socket over to the
    # response and forgets it (conn.sock becomes None) while the body is still being read.
    watch: AttemptWatch | None = getattr(_watching, "watch", None)
    sock = getattr(conn, "sock", None)
    if watch is not None and isinstance(sock, socket.socket):  # not a test double's fake socket
        watch.attach(sock)


if TYPE_CHECKING:
    _Connection = HTTPConnection
else:
    _Connection = object


class _Watched(_Connection):
    """Tells the thread's :func:`attempt_deadline` which socket it is using (a reused one, or a new one)."""

    def connect(self) -> None:
        super().connect()
        _report_to_watch(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _report_to_watch(self)
        super().request(*args, **kwargs)


class WatchedHTTPConnection(_Watched, HTTPConnection):
    """An HTTP connection that answers to :func:`attempt_deadline`."""


class WatchedHTTPSConnection(_Watched, HTTPSConnection):
    """An HTTPS connection that answers to :func:`attempt_deadline`."""


@functools.cache
def watched(cls: type) -> type:
    """``cls`` (an HTTP connection class) with the hooks :func:`attempt_deadline` needs (itself if it has them)."""
    if issubclass(cls, _Watched):
        return cls
    return type(f"Watched{cls.__name__}", (_Watched, cls), {})


class DeadlineAdapter(HTTPAdapter):
    """An adapter whose connections (direct or through an HTTP proxy) answer to :func:`attempt_deadline`."""

    def connection_class(self, scheme: str, current: type) -> type:
        """The class a new ``scheme`` pool connects with, given urllib3's ``current`` one for it.

        It is looked up when the pool is made, not when the adapter is, so a stand-in patched into urllib3
        (vcrpy's, while a cassette plays) is the one that gets watched.
        """
        return watched(current)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self._use_watched_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        manager = cast(PoolManager, super().proxy_manager_for(proxy, **proxy_kwargs))
        if not proxy.lower().startswith("socks"):  # SOCKS pools bring their own connection classes
            self._use_watched_pools(manager)
        return manager

    def _use_watched_pools(self, manager: PoolManager) -> None:
        pick = self.connection_class

        class WatchedHTTPPool(HTTPConnectionPool):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.ConnectionCls = pick("http", HTTPConnectionPool.ConnectionCls)

        class WatchedHTTPSPool(HTTPSConnectionPool):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.ConnectionCls = pick("https", HTTPSConnectionPool.ConnectionCls)

        manager.pool_classes_by_scheme = {"http": WatchedHTTPPool, "https": WatchedHTTPSPool}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry."""

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    retry_after_cap: float = 60.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential back-off for retry number ``attempt`` (0-based)."""
        return rng.uniform(0, min(self.backoff_max, self.backoff_base * (2**attempt)))


@dataclass(frozen=True)
class TransportSnapshot:
    """A client's counters at one moment (:attr:`mmembed.Embedder.stats`)."""

    requests: int  # attempts sent, retries included
    retries: int
    rate_limited: int  # 429 answers
    waited: float  # seconds spent waiting for the rate limiter (summed over threads)
    bytes_sent: int
    max_in_flight: int


@dataclass
class TransportStats:
    """Counters a benchmark or test can read."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    waited: float = 0.0
    bytes_sent: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_wait(self, seconds: float) -> None:
        with self._lock:
            self.waited += seconds

    def snapshot(self) -> TransportSnapshot:
        with self._lock:
            return TransportSnapshot(
                self.requests, self.retries, self.rate_limited, self.waited, self.bytes_sent, self.max_in_flight
            )

    def begin(self, size: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes_sent += size
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end(self) -> None:
        with self._lock:
            self.in_flight -= 1


ErrorParser = Callable[[requests.Response], tuple[str, str | None]]
AuthCheck = Callable[[requests.Response], bool]
RetryAfter = Callable[[requests.Response], float | None]


class Transport:
    """One provider client's HTTP: pooled session, timeouts, retries, rate limit. Never logs headers."""

    def __init__(
        self,
        provider: str,
        *,
        timeout: float | tuple[float, float] = 60.0,
        retry: RetryPolicy | None = None,
        limiter: Limiter | None = None,
        pool_size: int = 8,
        describe_error: ErrorParser | None = None,
        is_auth_error: AuthCheck | None = None,
        retry_after: RetryAfter | None = None,
        user_agent: str = "mmembed",
        handler: Handler | None = None,
    ) -> None:
        self.provider = provider
        self.timeout = timeout if isinstance(timeout, tuple) else (min(10.0, timeout), timeout)
        self.retry = retry or RetryPolicy()
        self.limiter: Limiter = limiter or RateLimiter(None)
        self.describe_error = describe_error or default_error_description
        self.is_auth_error = is_auth_error or default_is_auth_error
        self.retry_after = retry_after or default_retry_after
        self.stats = TransportStats()
        self._rng = random.Random()
        # A whole attempt gets the (read) timeout: connecting, sending and reading the answer together.
        self.deadline = sum(timeout) if isinstance(timeout, tuple) else float(timeout)
        self.session = requests.Session()
        adapter = DeadlineAdapter(pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers["User-Agent"] = user_agent
        self._in_flight = threading.BoundedSemaphore(max(1, pool_size))
        # Windows a provider counts beside requests (inputs, images), charged per attempt by ``post(costs=)``.
        self.windows: dict[str, RateLimiter] = {}
        if handler is not None:
            self.mount(handler)

    def mount(self, handler: Handler) -> None:
        """Answer every request of this client with ``handler``, in-process (for tests; see the module doc)."""
        adapter = MockAdapter(handler)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def __repr__(self) -> str:
        return f"Transport(provider={self.provider!r}, timeout={self.timeout}, retry={self.retry})"

    def close(self) -> None:
        self.session.close()

    def post(
        self,
        url: str,
        parse: Callable[[requests.Response], T],
        *,
        headers: Mapping[str, str] | Callable[[], Mapping[str, str]],
        json: Any = None,
        data: Any = None,
        files: Any = None,
        costs: Mapping[str, int] | None = None,
        method: str = "POST",
    ) -> T:
        """POST with retries; ``parse`` turns a 2xx response into the result or raises InvalidResponseError.

        ``headers`` may be a callable so credentials are fetched (and refreshed) per attempt. ``costs`` charges
        each attempt to the named :attr:`windows` as well (``{"inputs": 96, "images": 3}``). ``method="GET"``
        reads a resource (an asynchronous task's state) with the same retries.
        """
        request = requests.Request(method, url, json=json, data=data, files=files)
        prepared = self.session.prepare_request(request)
        size = len(prepared.body or b"") if prepared.body is not None else 0
        last: ProviderError = TransportError("no attempt was made", provider=self.provider)
        for attempt in range(self.retry.max_retries + 1):
            if attempt:
                self.stats.retries += 1
            self._acquire(costs or {})
            try:
                result, error, wait = self._attempt(prepared, headers, parse, size)
            finally:
                self._release(costs or {})
            if error is None:
                return cast(T, result)
            last = error
            if attempt == self.retry.max_retries:
                break
            delay = wait if wait is not None else self.retry.backoff(attempt, self._rng)
            log.debug("%s: retry %d in %.2fs after %s", self.provider, attempt + 1, delay, type(last).__name__)
            time.sleep(delay)
        raise last

    def _acquire(self, costs: Mapping[str, int]) -> None:
        """Wait until the windows and the limiter let one attempt start; every second waited is counted."""
        waited = 0.0
        for name, cost in costs.items():
            if cost:
                waited += self.windows[name].acquire(cost)
        waited += self.limiter.acquire() or 0.0  # a user's limiter may answer None
        if waited:
            self.stats.add_wait(float(waited))

    def _release(self, costs: Mapping[str, int]) -> None:
        for name, cost in costs.items():
            if cost:
                self.windows[name].release()
        release = getattr(self.limiter, "release", None)
        if release is not None:
            release()

    def pause(self, seconds: float) -> None:
        """Hold back every window of this client (after a 429): the limiter and each of :attr:`windows`."""
        self.limiter.pause(seconds)
        for window in self.windows.values():
            window.pause(seconds)

    def _attempt(
        self,
        prepared: requests.PreparedRequest,
        headers: Mapping[str, str] | Callable[[], Mapping[str, str]],
        parse: Callable[[requests.Response], T],
        size: int,
    ) -> tuple[T | None, ProviderError | None, float | None]:
        """One try: (result, None, None) on success, else (None, retryable error, Retry-After seconds).

        Non-retryable failures raise straight away.
        """
        req = prepared.copy()
        credentials = headers() if callable(headers) else headers
        req.headers.update(credentials)
        try:
            result, error, wait = self._exchange(req, parse, size)
        except ProviderError as err:
            _scrub(err, credentials.values())
            raise
        return result, None if error is None else _scrub(error, credentials.values()), wait

    def _exchange(
        self, req: requests.PreparedRequest, parse: Callable[[requests.Response], T], size: int
    ) -> tuple[T | None, ProviderError | None, float | None]:
        """Send ``req`` once and classify the answer (as :meth:`_attempt` describes)."""
        started = time.monotonic()
        self._in_flight.acquire()
        self.stats.begin(size)
        try:
            with attempt_deadline(self.deadline) as watch:
                response = self.session.send(req, timeout=self.timeout)
            if watch.expired:  # an answer read until the connection closed: cut short, not complete
                raise requests.ConnectionError("the attempt's deadline shut the connection")
        except requests.RequestException as exc:
            _observe(self.limiter, None, started)
            return None, self._failed(exc, watch.expired), None
        finally:
            self.stats.end()
            self._in_flight.release()
        _observe(self.limiter, response.status_code, started)
        log.debug(
            "%s: %s %s -> %s in %.3fs (%d B sent)",
            self.provider,
            req.method,
            _path(req.url),
            response.status_code,
            time.monotonic() - started,
            size,
        )
        status = response.status_code
        if 200 <= status < 300:
            try:
                return parse(response), None, None
            except InvalidResponseError as invalid:
                return None, invalid, None
        message, request_id = self.describe_error(response)
        body = response.text
        if self.is_auth_error(response):
            raise AuthenticationError(
                message, provider=self.provider, status=status, request_id=request_id, body=body
            )
        retry_after = self.retry_after(response)
        if retry_after is not None:
            retry_after = min(retry_after, self.retry.retry_after_cap)
        if status == 429:
            self.stats.rate_limited += 1
            self.pause(retry_after if retry_after is not None else self.retry.backoff_base)
            err: ProviderError = RateLimitError(
                message,
                retry_after=retry_after,
                provider=self.provider,
                status=status,
                request_id=request_id,
                body=body,
            )
            return None, err, retry_after
        if status in RETRY_STATUSES or status >= 500:
            err = ProviderError(message, provider=self.provider, status=status, request_id=request_id, body=body)
            return None, err, retry_after
        raise ProviderError(message, provider=self.provider, status=status, request_id=request_id, body=body)


    def _failed(self, exc: requests.RequestException, expired: bool) -> TransportError:
        """A retryable error for an exchange that got no whole answer."""
        if expired:
            why = f"timed out: no complete answer within {self.deadline:g} s"
        elif isinstance(exc, requests.Timeout):
            why = f"timed out ({_exc_name(exc)})"
        elif isinstance(exc, requests.ConnectionError):
            why = f"connection failed ({_exc_name(exc)})"
        else:  # a broken body: truncated chunks, bad compression
            why = f"the answer broke off ({_exc_name(exc)})"
        return TransportError(why, provider=self.provider)


def _observe(limiter: object, status: int | None, started: float) -> None:
    """Tell a limiter that learns from outcomes (an optional ``observe(status, seconds)``) how an attempt went."""
    observe = getattr(limiter, "observe", None)
    if observe is not None:
        observe(status, time.monotonic() - started)


Handler = Callable[[requests.PreparedRequest], requests.Response]


class MockAdapter(BaseAdapter):
    """A requests adapter that answers in-process with ``handler(request)`` (as httpx's ``MockTransport``).

    Nothing goes over a socket; everything above the adapter (retries, rate limits, the attempt deadline, the
    provider's parsing) runs as it would against a server. A handler that raises a ``requests`` exception
    stands for a failed exchange.
    """

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        response = self.handler(request)
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def mock_response(
    status: int = 200,
    *,
    json: Any = None,
    content: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> requests.Response:
    """A response for a :class:`MockAdapter` handler: a JSON body (``json=``) or raw bytes, and headers."""
    response = requests.Response()
    response.status_code = status
    response.reason = http.client.responses.get(status, "")
    response.headers.update(headers or {})
    if json is not None:
        content = _json.dumps(json).encode()
        response.headers.setdefault("Content-Type", "application/json")
    response._content = content
    response.encoding = "utf-8"
    return response


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def default_retry_after(response: requests.Response) -> float | None:
    """Seconds the ``Retry-After`` header asks for (None when absent or unreadable)."""
    return parse_retry_after(response.headers.get("Retry-After"))


def default_is_auth_error(response: requests.Response) -> bool:
    """401 and 403: the credentials were refused."""
    return response.status_code in AUTH_STATUSES


def default_error_description(response: requests.Response) -> tuple[str, str | None]:
    """A short message and the request id from an error response, whatever its body."""
    request_id = response.headers.get("x-request-id") or response.headers.get("request-id")
    reason = response.reason or "error"
    return f"request failed: {reason}", request_id


def _scrub(err: ProviderError, secrets: Iterable[str]) -> ProviderError:
    """Blank out credentials the request carried, should a server echo them into its error body."""
    parts = {part for value in secrets for part in (value, value.split(" ", 1)[-1]) if len(part) >= 8}

    def clean(text: str) -> str:
        for part in sorted(parts, key=len, reverse=True):
            text = text.replace(part, "[redacted]")
        return text

    err.args = tuple(clean(arg) if isinstance(arg, str) else arg for arg in err.args)
    if err.body:
        err.body = clean(err.body)
    return err


def _exc_name(exc: BaseException) -> str:
    return type(exc).__name__


def _path(url: str | None) -> str:
    """The URL without its query string, so nothing secret from a query ever reaches a log."""
    return (url or "").split("?", 1)[0]
