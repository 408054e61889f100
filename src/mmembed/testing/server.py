"""The HTTP layer: a threading HTTP/1.1 server with keep-alive that hands parsed requests to the emulator.

Nothing here knows about providers. The server counts accepted connections, can drop every open connection at
shutdown (so pooled client connections do not keep talking to a stopped emulator), and can end a connection
with a TCP reset instead of an answer.
"""

from __future__ import annotations

import gzip
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .wire import Incoming, Reply

__all__ = ["MAX_BODY", "EmulatorServer"]

MAX_BODY = 256 * 1024 * 1024
GZIP_MIN = 1024  # like the real APIs, compress answers worth it when the client accepts gzip
App = Callable[[Incoming], "Reply | None"]  # None: reset the connection instead of answering


class _BodyTooLarge(Exception):
    pass


def _accepts_gzip(headers: dict[str, str]) -> bool:
    for coding in headers.get("accept-encoding", "").lower().split(","):
        name, _, params = coding.strip().partition(";")
        if name.strip() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    server_version = "mmembed-emulator"
    timeout = 120  # idle keep-alive connections end eventually
    server: EmulatorServer

    def do_POST(self) -> None:
        self._serve()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        pass  # silence: tests and demos should not print a line per request

    def _serve(self) -> None:
        started = time.monotonic()
        url = urllib.parse.urlsplit(self.path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        try:
            body, oversize = self._read_body(headers), False
        except _BodyTooLarge:
            body, oversize = b"", True
            self.close_connection = True  # the unread body makes the connection unusable
        except ValueError:  # garbled chunked framing: answer what we have, then close
            body, oversize = b"", False
            self.close_connection = True
        req = Incoming(
            method=self.command,
            path=urllib.parse.unquote(url.path),
            raw_path=url.path,
            query=urllib.parse.parse_qs(url.query, keep_blank_values=True),
            headers=headers,
            body=body,
            request_id=uuid.uuid4().hex,
            started=started,
            oversize=oversize,
        )
        try:
            reply = self.server.app(req)
        except Exception as exc:  # a bug in the emulator: answer it rather than drop the connection
            traceback.print_exc(file=sys.stderr)
            reply = Reply.json(500, {"detail": f"internal emulator error: {exc!r}"})
        if reply is None:
            self._reset()
        else:
            self._send(reply, req.request_id, gzip_ok=_accepts_gzip(headers))

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = 0
            self.close_connection = True
        if length > MAX_BODY:
            raise _BodyTooLarge
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                raise _BodyTooLarge
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _send(self, reply: Reply, request_id: str, *, gzip_ok: bool = False) -> None:
        try:
            phrase = HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = ""
        body, encoding = reply.body, []
        if gzip_ok and len(body) >= GZIP_MIN and not reply.trickle:
            body, encoding = gzip.compress(body, compresslevel=1), ["Content-Encoding: gzip"]
        lines = [
            f"{self.protocol_version} {reply.status} {phrase}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(body)}",
            *encoding,
            f"x-request-id: {request_id}",
            *(f"{name}: {value}" for name, value in reply.headers),
        ]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            if reply.trickle:
                self._trickle(head, body, reply.trickle)
            else:
                # Head and body in one write: two small writes would meet Nagle + delayed ACK (a 40 ms stall).
                self.wfile.write(head + body)
        except OSError:  # the client went away (it timed out, or reset us)
            self.close_connection = True

    def _trickle(self, head: bytes, body: bytes, gap: float) -> None:
        """Send ``body`` 16 bytes at a time, ``gap`` seconds apart (ends early if the client hangs up)."""
        self.wfile.write(head)
        for start in range(0, len(body), 16):
            time.sleep(gap)
            self.wfile.write(body[start : start + 16])
            self.wfile.flush()

    def _reset(self) -> None:
        """Close with SO_LINGER 0: the kernel sends RST, so the client sees 'connection reset by peer'."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.connection.close()
        self.rfile.close()  # drops the last reference to the socket, which really closes it now


class EmulatorServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with daemon threads, a connection counter and a way to drop open connections."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, app: App, on_connect: Callable[[], None]) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.app, self._on_connect = app, on_connect
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn(), a reverse DNS lookup that can take seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        with self._open_lock:
            self._open.add(request)
        self._on_connect()
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Shut every open client connection, so handler threads blocked on keep-alive reads exit."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # clients that time out or vanish are normal here
        super().handle_error(request, client_address)
