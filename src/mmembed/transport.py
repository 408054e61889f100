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
also pauses the shared :class:`RateLimiter`, so every worker of the client slows down together.

``timeout`` bounds each attempt as a whole, not only each read: :func:`attempt_deadline` shuts the socket of
an attempt that outlives it, so a server that trickles its answer a byte at a time cannot hold a worker.
"""

from __future__ import annotations

import email.utils
import functools
import heapq
import itertools
import logging
import math
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import requests
from requests.adapters import HTTPAdapter
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

__all__ = [
    "AttemptWatch",
    "DeadlineAdapter",
    "Limiter",
    "RateLimiter",
    "RetryPolicy",
    "Transport",
    "TransportSnapshot",
    "TransportStats",
    "WatchedHTTPConnection",
    "WatchedHTTPSConnection",
    "attempt_deadline",
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
    calls it, on the same thread, when the request that ``acquire()`` admitted has ended (see RateLimiter),
    and ``observe(status, seconds)``: then it reports each attempt's HTTP status (None: no answer) and duration,
    on that thread, before ``release()`` (see :class:`mmembed._adaptive.AdaptiveLimiter`).
    """

    def acquire(self) -> float: ...

    def pause(self, seconds: float) -> None: ...


class RateLimiter:
    """What a provider's rate limit allows, shared by all workers of one client.

    Two rules, both checked before a request starts:

    * **the window**: at most ``per_minute * window / 60`` requests in any ``window`` seconds, counted by
      a sliding-window log (so the limit holds over *every* window, not only aligned ones). A request holds
      its place in the log from its start until one window after it *ended* (:meth:`release`): the server
      saw it arrive somewhere in between, so no network delay can make the server count more than the
      quota in one of its windows;
    * **the pace**: a bucket of ``burst`` tokens refilled at the average rate, so ``burst`` requests after
      an idle spell go out at once and a longer run settles at the average rate instead of spending the
      whole window's quota in its first second (a server that limits by token bucket would refuse that).

    :meth:`pause` holds everyone back after a 429, and restarts at the average rate. Another limiter (a
    process-wide one, say) plugs in by offering the same ``acquire()`` and ``pause(seconds)``; ``release()``
    is optional (the transport calls it when it exists). ``clock`` and ``sleep`` are for tests.
    """

    def __init__(
        self,
        per_minute: float | None = None,
        *,
        window: float = 60.0,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if window <= 0:
            raise ValueError(f"window must be > 0 seconds, got {window}")
        self.rate = per_minute / 60.0 if per_minute else None
        self.window = float(window)
        # The quota per window; rounded first so 500/min over 60 s is 500, not 499 from float error.
        self.quota = max(1, math.floor(round(self.rate * self.window, 6))) if self.rate else None
        # Without a rate nothing is paced; without a burst the whole window's quota may go at once.
        self.burst = 1 if self.quota is None else max(1, min(burst or self.quota, self.quota))
        self._clock, self._sleep = clock, sleep
        self._log: deque[float] = deque()
        self._tokens = float(self.burst)
        self._stamp = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self._mine = threading.local()  # the log entry of this thread's request, for release()

    def __repr__(self) -> str:
        return f"RateLimiter(quota={self.quota}, window={self.window:g}, burst={self.burst})"

    def acquire(self) -> float:
        """Block until a request may start; returns the seconds waited (0.0 when it went at once)."""
        waited = 0.0
        while True:
            with self._lock:
                delay = self._delay(self._clock())
            if delay <= 0:
                return waited
            self._sleep(delay)
            waited += delay

    def _delay(self, now: float) -> float:
        """0 after taking a start slot at ``now``, else how long until one may free up (under the lock)."""
        if self._paused_until > now:
            return self._paused_until - now
        if self.rate is None or self.quota is None:
            return 0.0
        log = self._log
        while log and log[0] <= now - self.window:
            log.popleft()
        self._tokens = min(float(self.burst), self._tokens + max(0.0, now - self._stamp) * self.rate)
        self._stamp = max(self._stamp, now)
        if len(log) >= self.quota:
            return log[0] + self.window - now
        if self._tokens < 1.0:
            return (1.0 - self._tokens) / self.rate
        self._tokens -= 1.0
        log.append(now)
        self._mine.start = now
        return 0.0

    def release(self) -> None:
        """The request this thread last acquired for has ended: it counts for one more window from now."""
        start = getattr(self._mine, "start", None)
        if start is None or self.quota is None:
            return
        self._mine.start = None
        with self._lock:
            now = self._clock()
            try:
                self._log.remove(start)  # any entry with this time will do: they are alike
            except ValueError:
                pass  # it outlived a whole window and was dropped already
            self._log.append(max(now, self._log[-1]) if self._log else now)

    def pause(self, seconds: float) -> None:
        """Hold every worker back for ``seconds`` (after a 429), without shortening a longer pause."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self._tokens = 0.0
            self._stamp = max(self._stamp, self._paused_until)


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
    ) -> T:
        """POST with retries; ``parse`` turns a 2xx response into the result or raises InvalidResponseError.

        ``headers`` may be a callable so credentials are fetched (and refreshed) per attempt.
        """
        request = requests.Request("POST", url, json=json, data=data, files=files)
        prepared = self.session.prepare_request(request)
        size = len(prepared.body or b"") if prepared.body is not None else 0
        last: ProviderError = TransportError("no attempt was made", provider=self.provider)
        for attempt in range(self.retry.max_retries + 1):
            if attempt:
                self.stats.retries += 1
            waited = self.limiter.acquire()
            if waited:  # a user's limiter may answer None
                self.stats.add_wait(float(waited))
            try:
                result, error, wait = self._attempt(prepared, headers, parse, size)
            finally:
                release = getattr(self.limiter, "release", None)
                if release is not None:
                    release()
            if error is None:
                return cast(T, result)
            last = error
            if attempt == self.retry.max_retries:
                break
            delay = wait if wait is not None else self.retry.backoff(attempt, self._rng)
            log.debug("%s: retry %d in %.2fs after %s", self.provider, attempt + 1, delay, type(last).__name__)
            time.sleep(delay)
        raise last

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
            "%s: POST %s -> %s in %.3fs (%d B sent)",
            self.provider,
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
            pause = retry_after if retry_after is not None else self.retry.backoff_base
            self.limiter.pause(pause)
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
