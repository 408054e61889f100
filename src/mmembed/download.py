"""Client-side image downloads (for APIs that cannot fetch http(s) URLs; the Chroma loader may need to), safely.

Policy: http and https only; every address the host resolves to is checked, and so is every redirect
hop. Link-local and cloud-metadata addresses are always refused; loopback, private and other
non-global addresses are refused unless ``allow_private=True`` (our own emulator and tests need it).
The body is streamed with a size cap and a timeout, and must declare an image content type.

The check is made again where the socket is opened, on the addresses that connection resolves, and the
socket goes to one of exactly those addresses: a DNS server that answers a public address to the first
look-up and a metadata address to the second (DNS rebinding) gets nowhere. Through an HTTP(S) proxy the
proxy resolves the name, so only the first check applies there.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from .errors import InputError, UnsafeURLError
from .transport import AttemptWatch, DeadlineAdapter, WatchedHTTPConnection, WatchedHTTPSConnection, attempt_deadline

__all__ = ["DownloadPolicy", "check_url", "download", "download_session"]

METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data", "metadata.azure.com"})
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
ACCEPTED_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


@dataclass(frozen=True)
class DownloadPolicy:
    """Limits for one client-side download."""

    allow_private: bool = False
    timeout: float = 20.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5


def check_url(url: str, *, allow_private: bool = False) -> None:
    """Raise :class:`UnsafeURLError` unless ``url`` is http(s) and every address of its host is allowed."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise UnsafeURLError(f"only http and https URLs can be downloaded, not {parts.scheme or 'no scheme'!r}")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise UnsafeURLError("URL has no host")
    if host in METADATA_HOSTS:
        raise UnsafeURLError(f"refusing cloud metadata host {host!r}")
    for address in _resolve(host, parts.port or (443 if parts.scheme == "https" else 80)):
        _check_address(address, allow_private)


def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise InputError(f"cannot resolve host {host!r}") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def _check_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES or address.is_link_local:
        raise UnsafeURLError(f"refusing link-local / metadata address {address}")
    # ::1 sits in the reserved ::/8 block; it is loopback, allowed like 127.0.0.1 when private URLs are.
    if (address.is_multicast or address.is_unspecified or address.is_reserved) and not address.is_loopback:
        raise UnsafeURLError(f"refusing non-routable address {address}")
    if not address.is_global and not allow_private:
        raise UnsafeURLError(
            f"refusing private or loopback address {address} (pass allow_private_urls=True to allow it)"
        )


def download_session(policy: DownloadPolicy) -> requests.Session:
    """A session whose connections check, at connect time, the very addresses they connect to."""
    session = requests.Session()
    adapter = _CheckedAdapter(policy.allow_private)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "mmembed"
    return session


def download(url: str, policy: DownloadPolicy, session: requests.Session | None = None) -> bytes:
    """Fetch an image's bytes under ``policy``; raises :class:`InputError` / :class:`UnsafeURLError`.

    ``session`` should come from :func:`download_session` with the same policy (one is made otherwise).
    """
    http = session or download_session(policy)
    try:
        for _ in range(policy.max_redirects + 1):
            check_url(url, allow_private=policy.allow_private)
            with attempt_deadline(policy.timeout) as watch:
                try:
                    response = http.get(url, stream=True, timeout=policy.timeout, allow_redirects=False)
                except requests.RequestException as exc:
                    raise _failed(exc, watch.expired, policy) from exc
                with response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("Location", ""))
                        continue
                    return _read_body(response, policy, watch)
        raise UnsafeURLError(f"more than {policy.max_redirects} redirects")
    finally:
        if session is None:
            http.close()


def _failed(exc: requests.RequestException, expired: bool, policy: DownloadPolicy) -> InputError:
    if expired:
        return InputError(f"download failed: timed out, no complete answer within {policy.timeout:g} s")
    return InputError(f"download failed ({type(exc).__name__})")


def _read_body(response: requests.Response, policy: DownloadPolicy, watch: AttemptWatch) -> bytes:
    if response.status_code != 200:
        raise InputError(f"download failed: HTTP {response.status_code}")
    ctype = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if not ctype.startswith(ACCEPTED_TYPES):
        raise UnsafeURLError(f"URL did not return an image (Content-Type {ctype or 'missing'!r})")
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise UnsafeURLError(f"image is {int(declared)} B, over the {policy.max_bytes} B download cap")
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_content(64 * 1024):
            total += len(chunk)
            if total > policy.max_bytes:
                raise UnsafeURLError(f"image is over the {policy.max_bytes} B download cap")
            chunks.append(chunk)
    except requests.RequestException as exc:
        raise _failed(exc, watch.expired, policy) from exc
    if watch.expired:  # read until the connection closed: cut short by the deadline, not complete
        raise _failed(requests.ConnectionError(), True, policy)
    if not total:
        raise InputError("download returned no bytes")
    return b"".join(chunks)


# -- the connect-time check ---------------------------------------------------------------------------------
class _CheckedAdapter(DeadlineAdapter):
    """Mounts connections that resolve, check and connect in one step (and answer to the attempt deadline).

    Always urllib3's real connection classes: the check lives in their ``_new_conn``.
    """

    def __init__(self, allow_private: bool) -> None:
        self._classes = _checked_classes(allow_private)  # before super().__init__, which builds the pools
        super().__init__(max_retries=0)

    def connection_class(self, scheme: str, current: type) -> type:
        return self._classes[1] if scheme == "https" else self._classes[0]


@functools.cache
def _checked_classes(allow_private: bool) -> tuple[type[HTTPConnection], type[HTTPSConnection]]:
    class CheckedHTTPConnection(WatchedHTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _connect_checked(self, super()._new_conn, allow_private)

    class CheckedHTTPSConnection(WatchedHTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _connect_checked(self, super()._new_conn, allow_private)

    return CheckedHTTPConnection, CheckedHTTPSConnection


def _connect_checked(
    conn: HTTPConnection, connect: Callable[[], socket.socket], allow_private: bool
) -> socket.socket:
    """Resolve ``conn``'s host once, refuse if any address is not allowed, then connect to those addresses only.

    urllib3 connects to ``conn._dns_host``; pointing it at each checked address in turn (and back to the name
    before TLS, which needs the name for SNI and certificate matching) leaves no second look-up to rebind.
    """
    if getattr(conn, "proxy", None) is not None:
        return connect()  # the proxy resolves the name
    host = conn._dns_host
    addresses = list(dict.fromkeys(_resolve(host.rstrip("."), conn.port or 80)))
    for address in addresses:
        _check_address(address, allow_private)
    last: Exception | None = None
    for address in addresses:
        conn._dns_host = str(address)
        try:
            return connect()
        except (NewConnectionError, ConnectTimeoutError) as exc:
            last = exc
        finally:
            conn._dns_host = host
    if last is None:  # getaddrinfo answered no address at all
        raise InputError(f"cannot resolve host {host!r}")
    raise last
