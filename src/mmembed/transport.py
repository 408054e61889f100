"""HTTP for one provider client: one pooled session, timeouts, retries with jitter, Retry-After, rate limit.

A :class:`Transport` is owned by exactly one provider instance. It knows nothing about embeddings: a
provider hands it a request and a ``parse`` callable, and gets back whatever ``parse`` returned. A
response ``parse`` rejects (:class:`InvalidResponseError`) is retried like a 5xx, so a malformed body or
a wrong count never reaches the caller unless every retry failed.

Retried: 408, 409, 429, every 5xx, connection errors, timeouts and untrustworthy 200s. Never retried:
401/403 or whatever else the provider's ``is_auth_error`` recognises (:class:`AuthenticationError`), and
other 4xx (validation errors). Should a server echo a credential into an error body, it is redacted.
Back-off is exponential with full jitter; a ``Retry-After`` header (seconds or an HTTP date) wins, up to
``retry_after_cap``. A 429 also pauses the shared :class:`RateLimiter`, so every worker of the client
slows down together.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import requests
from requests.adapters import HTTPAdapter

from .errors import (
    AuthenticationError,
    InvalidResponseError,
    ProviderError,
    RateLimitError,
    TransportError,
)

__all__ = ["RateLimiter", "RetryPolicy", "Transport", "parse_retry_after"]

log = logging.getLogger("mmembed.transport")
T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 409, 429})
AUTH_STATUSES = frozenset({401, 403})


class RateLimiter:
    """A token bucket shared by all workers of one client; :meth:`pause` holds everyone back after a 429."""

    def __init__(self, per_minute: float | None, *, burst: int = 1) -> None:
        self.rate = per_minute / 60.0 if per_minute else None
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a request may start; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                delay = self._paused_until - now
                if delay <= 0:
                    if self.rate is None:
                        return waited
                    self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                    self._stamp = now
                    if self._tokens >= 1.0:
                        self._tokens -= 1.0
                        return waited
                    delay = (1.0 - self._tokens) / self.rate
            time.sleep(delay)
            waited += delay

    def pause(self, seconds: float) -> None:
        """Hold every worker back for ``seconds`` (after a 429), without shortening a longer pause."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
            self._tokens = 0.0
            self._stamp = max(self._stamp, self._paused_until)


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


@dataclass
class TransportStats:
    """Counters a benchmark or test can read."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    bytes_sent: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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


class Transport:
    """One provider client's HTTP: pooled session, timeouts, retries, rate limit. Never logs headers."""

    def __init__(
        self,
        provider: str,
        *,
        timeout: float | tuple[float, float] = 60.0,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        pool_size: int = 8,
        describe_error: ErrorParser | None = None,
        is_auth_error: AuthCheck | None = None,
        user_agent: str = "mmembed",
    ) -> None:
        self.provider = provider
        self.timeout = timeout if isinstance(timeout, tuple) else (min(10.0, timeout), timeout)
        self.retry = retry or RetryPolicy()
        self.limiter = limiter or RateLimiter(None)
        self.describe_error = describe_error or default_error_description
        self.is_auth_error = is_auth_error or default_is_auth_error
        self.stats = TransportStats()
        self._rng = random.Random()
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=0)
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
            self.limiter.acquire()
            result, error, wait = self._attempt(prepared, headers, parse, size)
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
            response = self.session.send(req, timeout=self.timeout)
        except requests.Timeout as exc:
            return None, TransportError(f"timed out ({_exc_name(exc)})", provider=self.provider), None
        except requests.ConnectionError as exc:
            return None, TransportError(f"connection failed ({_exc_name(exc)})", provider=self.provider), None
        finally:
            self.stats.end()
            self._in_flight.release()
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
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
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
