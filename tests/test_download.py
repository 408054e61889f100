"""URL safety for client-side downloads (Vertex images, ``mmembed.download``).

Every test here runs under a guard that fails it if anything tries to open a connection to an address that
is not loopback: refused addresses must be refused *before* connecting, and no test sends a packet off the
machine. Names that would need DNS are resolved by a patched ``socket.getaddrinfo``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from conftest import CANARY_KEY, jpeg_bytes
from mmembed import Embedder, ImageSource, InputError, UnsafeURLError
from mmembed.download import DownloadPolicy, check_url, download
from mmembed.testing import Emulator, colour_photo

PHOTO = jpeg_bytes(colour_photo("red", size=(64, 48)))
BIG = 30 * 1024 * 1024
PRIVATE_OK = DownloadPolicy(allow_private=True, timeout=2.0)


# -- the guard: no connection leaves loopback ------------------------------------------------------------


@dataclass
class ConnectGuard:
    attempts: list[Any] = field(default_factory=list)  # every address a socket tried to connect to
    blocked: list[Any] = field(default_factory=list)  # the non-loopback ones (refused locally)


def _is_loopback(address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX
    try:
        return ipaddress.ip_address(str(address[0]).split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectGuard]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    state = ConnectGuard()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(address: Any) -> None:
        state.attempts.append(address)
        if not _is_loopback(address):
            state.blocked.append(address)
            raise ConnectionRefusedError(f"test guard: refused to connect to non-loopback {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield state
    assert state.blocked == [], "a connection to a non-loopback address was attempted"


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, list[str]]], list[str]]:
    """Make ``socket.getaddrinfo`` answer the given names (others fail); returns the names looked up."""
    looked_up: list[str] = []

    def install(table: dict[str, list[str]]) -> list[str]:
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
            name = host.decode() if isinstance(host, bytes) else str(host)
            looked_up.append(name)
            if name in table:
                return [
                    (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, int(port or 80)))
                    for a in table[name]
                ]
            try:
                ipaddress.ip_address(name)
            except ValueError:
                raise socket.gaierror(socket.EAI_NONAME, "test DNS: unknown name") from None
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        return looked_up

    return install


# -- a local server with every kind of answer ------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        route = self.path.split("?", 1)[0]
        try:
            getattr(self, "route_" + route.strip("/").replace("-", "_").replace(".", "_"), self.route_missing)()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client stopped reading, as it should

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def reply(self, status: int, body: bytes, ctype: str | None = "image/jpeg", length: int | None = None) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route_missing(self) -> None:
        self.reply(404, b"not found", "text/plain")

    def route_photo_jpg(self) -> None:
        self.reply(200, PHOTO)

    def route_octet(self) -> None:
        self.reply(200, PHOTO, "application/octet-stream")

    def route_charset(self) -> None:
        self.reply(200, PHOTO, "IMAGE/JPEG; charset=binary")

    def route_page_html(self) -> None:
        self.reply(200, b"<html><body>an error page</body></html>", "text/html; charset=utf-8")

    def route_no_type(self) -> None:
        self.reply(200, PHOTO, None)

    def route_empty(self) -> None:
        self.reply(200, b"")

    def route_big(self) -> None:  # honest: 30 MB, and says so
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(BIG))
        self.end_headers()
        self._stream(BIG)

    def route_chunked(self) -> None:  # no length at all: 30 MB in chunks
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"\xff" * 65536
        for _ in range(BIG // len(chunk)):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def route_lying(self) -> None:  # says 1000 bytes, sends 30 MB
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.close_connection = True
        self._stream(BIG)

    def route_trickle(self) -> None:  # a real image, a few bytes at a time: every read is quick
        self._trickle(with_length=True)

    def route_trickle_until_close(self) -> None:  # the same, with no length: the body ends when we hang up
        self._trickle(with_length=False)

    def _trickle(self, with_length: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        if with_length:
            self.send_header("Content-Length", str(len(PHOTO)))
        self.end_headers()
        self.close_connection = True
        for start in range(0, len(PHOTO), 8):
            if self.server.stopping.wait(0.05):
                return
            self.wfile.write(PHOTO[start : start + 8])
            self.wfile.flush()

    def route_hang(self) -> None:
        self.server.stopping.wait(10)
        self.close_connection = True

    def route_to_metadata(self) -> None:
        self.redirect("http://169.254.169.254/latest/meta-data/iam/security-credentials/")

    def route_to_metadata_name(self) -> None:
        self.redirect("http://metadata.google.internal/computeMetadata/v1/")

    def route_to_link_local_v6(self) -> None:
        self.redirect("http://[fe80::1]/photo.jpg")

    def route_to_dns_link_local(self) -> None:
        self.redirect("http://sneaky.example/photo.jpg")

    def route_to_file(self) -> None:
        self.redirect("file:///etc/passwd")

    def route_to_private(self) -> None:
        self.redirect("http://10.0.0.7/photo.jpg")

    def route_relative(self) -> None:
        self.redirect("/photo.jpg")

    def route_loop(self) -> None:
        self.redirect("/loop")

    def _stream(self, total: int) -> None:
        chunk = b"\xff" * 65536
        for _ in range(total // len(chunk)):
            self.wfile.write(chunk)


@dataclass
class Site:
    url: str
    hits: list[str]


@pytest.fixture
def site() -> Iterator[Site]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.hits = []  # type: ignore[attr-defined]
    server.stopping = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield Site(f"http://127.0.0.1:{server.server_address[1]}", server.hits)  # type: ignore[attr-defined]
    server.stopping.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


# -- schemes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/photo.jpg",
        "gopher://127.0.0.1:70/_GET",
        "data:image/png;base64,AAAA",
        "javascript:alert(1)",
        "//127.0.0.1/photo.jpg",
        "photo.jpg",
    ],
)
def test_only_http_and_https(url: str, guard: ConnectGuard) -> None:
    with pytest.raises(UnsafeURLError, match="only http and https"):
        check_url(url, allow_private=True)
    with pytest.raises(UnsafeURLError, match="only http and https"):
        download(url, PRIVATE_OK)
    assert guard.attempts == []


def test_url_without_host_is_refused() -> None:
    with pytest.raises(UnsafeURLError, match="no host"):
        check_url("http:///photo.jpg", allow_private=True)


# -- addresses -------------------------------------------------------------------------------------------

ALWAYS_REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.1.1/photo.jpg",
    "http://[fe80::1]/photo.jpg",
    "http://[fe80::1%25eth0]/photo.jpg",
    "http://[::ffff:169.254.169.254]/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://METADATA.google.internal./computeMetadata/v1/",
    "http://metadata/computeMetadata/v1/",
    "http://2852039166/latest/meta-data/",  # 169.254.169.254 written as one number
    "http://0xA9FEA9FE/latest/meta-data/",  # ... and in hex
    "http://0.0.0.0/photo.jpg",
    "http://224.0.0.1/photo.jpg",
]


@pytest.mark.parametrize("url", ALWAYS_REFUSED)
@pytest.mark.parametrize("allow_private", [False, True])
def test_link_local_and_metadata_are_always_refused(url: str, allow_private: bool, guard: ConnectGuard) -> None:
    with pytest.raises(UnsafeURLError, match="refusing"):
        check_url(url, allow_private=allow_private)
    with pytest.raises(UnsafeURLError, match="refusing"):
        download(url, DownloadPolicy(allow_private=allow_private, timeout=1.0))
    assert guard.attempts == []


PRIVATE = [
    "http://127.0.0.1/photo.jpg",
    "http://127.8.9.10/photo.jpg",
    "http://localhost/photo.jpg",
    "http://[::1]/photo.jpg",
    "http://10.1.2.3/photo.jpg",
    "http://172.16.5.4/photo.jpg",
    "http://192.168.1.20/photo.jpg",
    "http://100.64.0.1/photo.jpg",  # carrier-grade NAT
    "http://[fd12:3456::1]/photo.jpg",  # unique local
]


@pytest.mark.parametrize("url", PRIVATE)
def test_loopback_and_private_need_allow_private(url: str, guard: ConnectGuard) -> None:
    with pytest.raises(UnsafeURLError, match="allow_private_urls=True"):
        check_url(url)
    with pytest.raises(UnsafeURLError, match="allow_private_urls=True"):
        download(url, DownloadPolicy(timeout=1.0))
    check_url(url, allow_private=True)  # allowed then (only checked here: nothing is fetched)
    assert guard.attempts == []


def test_a_public_address_passes_the_check(fake_dns: Callable[[dict[str, list[str]]], list[str]]) -> None:
    looked_up = fake_dns({"images.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})
    check_url("https://images.example/photo.jpg")
    check_url("http://93.184.216.34/photo.jpg")
    assert looked_up == ["images.example"]


@pytest.mark.parametrize(
    ("addresses", "message"),
    [
        (["169.254.7.7"], "link-local"),
        (["169.254.169.254"], "metadata"),
        (["fe80::1"], "link-local"),
        (["93.184.216.34", "169.254.169.254"], "metadata"),  # one bad address among good ones is enough
        (["::ffff:169.254.169.254"], "metadata"),
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_names_are_checked_after_resolution(
    addresses: list[str],
    message: str,
    allow_private: bool,
    fake_dns: Callable[[dict[str, list[str]]], list[str]],
    guard: ConnectGuard,
) -> None:
    fake_dns({"sneaky.example": addresses})
    with pytest.raises(UnsafeURLError, match=message):
        download("http://sneaky.example/photo.jpg", DownloadPolicy(allow_private=allow_private, timeout=1.0))
    assert guard.attempts == []


def test_a_name_resolving_to_a_private_address_needs_allow_private(
    fake_dns: Callable[[dict[str, list[str]]], list[str]],
) -> None:
    fake_dns({"intranet.example": ["10.20.30.40"]})
    with pytest.raises(UnsafeURLError, match=re.escape("private or loopback address 10.20.30.40")):
        check_url("http://intranet.example/photo.jpg")
    check_url("http://intranet.example/photo.jpg", allow_private=True)


def test_an_unresolvable_name_is_an_input_error(fake_dns: Callable[[dict[str, list[str]]], list[str]]) -> None:
    fake_dns({})
    with pytest.raises(InputError, match="cannot resolve host"):
        check_url("http://nowhere.example/photo.jpg")


# -- redirects -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("/to-metadata", "metadata address 169.254.169.254"),
        ("/to-metadata-name", "cloud metadata host"),
        ("/to-link-local-v6", "link-local"),
        ("/to-dns-link-local", "link-local"),
        ("/to-file", "only http and https"),
    ],
)
def test_every_redirect_hop_is_checked(
    route: str,
    message: str,
    site: Site,
    fake_dns: Callable[[dict[str, list[str]]], list[str]],
    guard: ConnectGuard,
) -> None:
    fake_dns({"sneaky.example": ["169.254.3.3"]})
    with pytest.raises(UnsafeURLError, match=re.escape(message)):
        download(site.url + route, PRIVATE_OK)
    assert site.hits == [route]
    assert all(_is_loopback(a) for a in guard.attempts)


def test_a_redirect_to_a_private_address_needs_allow_private(site: Site) -> None:
    """The first hop is loopback (allowed for this test); the next one is refused by the same rule."""
    with pytest.raises(UnsafeURLError, match="refusing"):
        download(site.url + "/to-private", DownloadPolicy(allow_private=False, timeout=1.0))
    assert site.hits == []  # the loopback start is refused too, before connecting


def test_relative_redirects_are_followed_and_loops_end(site: Site) -> None:
    assert download(site.url + "/relative", PRIVATE_OK) == PHOTO
    with pytest.raises(UnsafeURLError, match="more than 5 redirects"):
        download(site.url + "/loop", PRIVATE_OK)
    assert site.hits.count("/loop") == 6


# -- size, type, status, time ----------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/photo.jpg", "/octet", "/charset"])
def test_images_download(route: str, site: Site) -> None:
    assert download(site.url + route, PRIVATE_OK) == PHOTO


@pytest.mark.parametrize("route", ["/page.html", "/no-type"])
def test_non_image_content_types_are_refused(route: str, site: Site) -> None:
    with pytest.raises(UnsafeURLError, match="did not return an image"):
        download(site.url + route, PRIVATE_OK)


def test_http_errors_and_empty_bodies_are_input_errors(site: Site) -> None:
    with pytest.raises(InputError, match="HTTP 404"):
        download(site.url + "/nothing-here.jpg", PRIVATE_OK)
    with pytest.raises(InputError, match="no bytes"):
        download(site.url + "/empty", PRIVATE_OK)


def test_a_declared_size_over_the_cap_is_refused_before_reading(site: Site) -> None:
    started = time.monotonic()
    with pytest.raises(UnsafeURLError, match=f"{BIG} B, over the {20 * 1024 * 1024} B download cap"):
        download(site.url + "/big", PRIVATE_OK)  # the default 20 MB cap
    assert time.monotonic() - started < 5


def test_a_chunked_body_over_the_cap_is_cut_off(site: Site) -> None:
    with pytest.raises(UnsafeURLError, match="over the 20971520 B download cap"):
        download(site.url + "/chunked", PRIVATE_OK)
    with pytest.raises(UnsafeURLError, match="over the 1000 B download cap"):
        download(site.url + "/chunked", DownloadPolicy(allow_private=True, max_bytes=1000))


def test_a_lying_content_length_never_yields_more_than_the_cap(site: Site) -> None:
    data = download(site.url + "/lying", PRIVATE_OK)
    assert len(data) == 1000  # what it declared: the extra 30 MB are never read
    with pytest.raises(UnsafeURLError, match="over the 500 B download cap"):
        download(site.url + "/lying", DownloadPolicy(allow_private=True, max_bytes=500))


def test_a_server_that_never_answers_times_out(site: Site) -> None:
    started = time.monotonic()
    with pytest.raises(InputError, match="download failed"):
        download(site.url + "/hang", DownloadPolicy(allow_private=True, timeout=0.3))
    assert time.monotonic() - started < 2.5


# -- through the Embedder (Vertex downloads http(s) images itself) ---------------------------------------


def vertex(emulator: Emulator, **options: Any) -> Embedder:
    return Embedder("vertex", api_key=CANARY_KEY, project_id="p", base_url=emulator.url, timeout=2.0, **options)


def test_vertex_downloads_with_allow_private_urls(site: Site, mmembed_emulator: Emulator) -> None:
    with vertex(mmembed_emulator, allow_private_urls=True) as embedder:
        by_url = embedder.embed(["caption", ImageSource(site.url + "/photo.jpg")])
        by_bytes = embedder.embed(["caption", PHOTO])
    assert np.array_equal(by_url, by_bytes)
    assert site.hits == ["/photo.jpg"]


def test_vertex_refuses_loopback_urls_by_default(site: Site, mmembed_emulator: Emulator) -> None:
    with vertex(mmembed_emulator) as embedder, pytest.raises(UnsafeURLError, match="allow_private_urls") as info:
        embedder.embed(["caption", "another", ImageSource(site.url + "/photo.jpg")])
    assert info.value.index == 2
    assert site.hits == []


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/", "http://metadata.google.internal/computeMetadata/v1/", "/to-metadata"],
)
def test_vertex_never_fetches_metadata_even_with_allow_private_urls(
    url: str, site: Site, mmembed_emulator: Emulator, guard: ConnectGuard
) -> None:
    url = site.url + url if url.startswith("/") else url
    with vertex(mmembed_emulator, allow_private_urls=True) as embedder, pytest.raises(UnsafeURLError) as info:
        embedder.embed(["caption", ImageSource(url)])
    assert info.value.index == 1
    assert all(_is_loopback(a) for a in guard.attempts)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/photo.jpg", "gopher://127.0.0.1/x"])
def test_other_schemes_are_refused_through_the_embedder(url: str, mmembed_emulator: Emulator) -> None:
    with vertex(mmembed_emulator, allow_private_urls=True) as embedder, pytest.raises(UnsafeURLError) as info:
        embedder.embed(["caption", ImageSource(url)])
    assert info.value.index == 1
    assert mmembed_emulator.requests == []


# -- DNS rebinding -----------------------------------------------------------------------------------------


def test_dns_rebinding_between_check_and_connect(
    site: Site, monkeypatch: pytest.MonkeyPatch, guard: ConnectGuard
) -> None:
    """A hostile DNS server answers an allowed address to the first look-up and the metadata address to the
    next: the connection checks what it resolves itself, so it refuses before any socket is opened."""
    port = int(site.url.rsplit(":", 1)[1])
    answers = iter(["127.0.0.1"] + ["169.254.169.254"] * 5)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(UnsafeURLError, match=r"metadata address 169\.254\.169\.254"):
        download(f"http://rebind.example:{port}/photo.jpg", PRIVATE_OK)
    assert guard.attempts == []  # refused before any socket was opened


def _self_signed(name: str, folder: Any) -> tuple[str, str]:
    """A certificate for DNS name ``name`` only (no IP address in it), and its key: PEM file paths."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def test_https_checks_the_certificate_against_the_name_not_the_pinned_address(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, fake_dns: Callable[[dict[str, list[str]]], list[str]],
    guard: ConnectGuard,
) -> None:
    """The socket goes to the checked address, but TLS still sends the name (SNI) and verifies it."""
    import ssl

    cert, key = _self_signed("photos.test", tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.hits = []  # type: ignore[attr-defined]
    server.stopping = threading.Event()  # type: ignore[attr-defined]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    seen_names: list[str | None] = []

    def remember_sni(sock: Any, name: str | None, ctx: Any) -> None:
        seen_names.append(name)

    context.sni_callback = remember_sni
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        fake_dns({"photos.test": ["127.0.0.1"]})
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
        assert download(f"https://photos.test:{port}/photo.jpg", PRIVATE_OK) == PHOTO
        assert seen_names == ["photos.test"]
        assert guard.attempts == [("127.0.0.1", port)]

        fake_dns({"other.test": ["127.0.0.1"]})  # same address, a name the certificate does not hold
        with pytest.raises(InputError, match="download failed"):
            download(f"https://other.test:{port}/photo.jpg", PRIVATE_OK)
    finally:
        server.stopping.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()


def test_a_name_with_several_addresses_falls_back_to_the_next_checked_one(
    site: Site, fake_dns: Callable[[dict[str, list[str]]], list[str]], guard: ConnectGuard
) -> None:
    port = int(site.url.rsplit(":", 1)[1])
    looked_up = fake_dns({"two.test": ["127.0.0.2", "127.0.0.1"]})  # nothing listens on 127.0.0.2

    assert download(f"http://two.test:{port}/photo.jpg", PRIVATE_OK) == PHOTO
    assert guard.attempts == [("127.0.0.2", port), ("127.0.0.1", port)]
    assert looked_up.count("two.test") == 2  # once by the URL check, once by the connection itself


@pytest.mark.parametrize("route", ["/trickle", "/trickle-until-close"])
def test_a_trickling_download_ends_at_the_timeout(site: Site, route: str) -> None:
    """Each read gets bytes in time, so only the deadline on the whole download ends it (and nothing cut short
    passes for a whole image)."""
    assert len(PHOTO) // 8 * 0.05 > 3  # the whole photo would take seconds to arrive
    started = time.monotonic()
    with pytest.raises(InputError, match=r"timed out, no complete answer within 0\.5 s"):
        download(site.url + route, DownloadPolicy(allow_private=True, timeout=0.5))
    assert time.monotonic() - started < 1.5


def test_through_an_http_proxy_the_proxy_resolves_the_name(
    site: Site, monkeypatch: pytest.MonkeyPatch, fake_dns: Callable[[dict[str, list[str]]], list[str]],
    guard: ConnectGuard,
) -> None:
    """Pinning steps aside for a proxy (it is the one that connects); the URL check still runs first."""
    site_port = int(site.url.rsplit(":", 1)[1])
    seen: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)  # absolute form: http://photos.test:PORT/photo.jpg
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(PHOTO)))
            self.end_headers()
            self.wfile.write(PHOTO)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        for var in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        fake_dns({"photos.test": ["127.0.0.1"]})

        assert download(f"http://photos.test:{site_port}/photo.jpg", PRIVATE_OK) == PHOTO
        assert seen == [f"http://photos.test:{site_port}/photo.jpg"]
        assert guard.attempts == [("127.0.0.1", proxy.server_address[1])]

        fake_dns({"photos.test": ["169.254.169.254"]})  # the first check still refuses before the proxy is asked
        with pytest.raises(UnsafeURLError, match="metadata"):
            download(f"http://photos.test:{site_port}/photo.jpg", PRIVATE_OK)
        assert len(seen) == 1
    finally:
        proxy.shutdown()
        proxy.server_close()
