"""Shared fixtures: sample images made in code, and Embedders pointed at the offline emulator."""

from __future__ import annotations

import functools
import io
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
from PIL import Image

from mmembed import ConfigurationError, Embedder
from mmembed.inputs import ImageItem, TextItem
from mmembed.providers import PROVIDERS as REGISTRY
from mmembed.providers import ProviderOptions
from mmembed.testing import Emulator, colour_photo

CANARY_KEY = "canary-key-7f3a9c1e"


@functools.cache
def _defaults(name: str) -> tuple[int | None, str, str]:
    """A provider's default dimensions and the models it embeds texts and images with (from its declarations)."""
    cls = REGISTRY[name]
    provider = cls(ProviderOptions(api_key=CANARY_KEY, base_url="http://127.0.0.1:9"), **cls.test_options)
    try:
        return provider.dimensions, provider.model_for(TextItem("x")), provider.model_for(ImageItem("x", raw=b""))
    finally:
        provider.close()


class _PerProvider(Mapping[str, Any]):
    """provider name -> one of its defaults, worked out on first use."""

    def __init__(self, field: int) -> None:
        self._field = field

    def __getitem__(self, name: str) -> Any:
        return _defaults(name)[self._field]

    def __iter__(self) -> Iterator[str]:
        return iter(PROVIDERS)

    def __len__(self) -> int:
        return len(PROVIDERS)


# The provider matrix every cross-provider test runs over: every registered provider, so a new one is tested by
# existing; its defaults come from its own declarations (default model, test_options).
PROVIDERS = tuple(REGISTRY)
DEFAULT_DIMS: Mapping[str, int | None] = _PerProvider(0)
TEXT_MODELS: Mapping[str, str] = _PerProvider(1)
IMAGE_MODELS: Mapping[str, str] = _PerProvider(2)


@functools.cache
def _kinds(name: str) -> frozenset[str]:
    """The item kinds a provider's default model takes natively (from its declarations, no request)."""
    cls = REGISTRY[name]
    try:
        provider = cls(ProviderOptions(api_key=CANARY_KEY, base_url="http://127.0.0.1:9"), **cls.test_options)
    except Exception:  # a provider that cannot even be built fails its own tests; it is not left out here
        return frozenset({"text", "image"})
    try:
        return provider.native_kinds()
    finally:
        provider.close()


# The providers whose default model embeds images (every cross-provider test that sends pictures runs on these).
IMAGE_PROVIDERS = tuple(name for name in PROVIDERS if "image" in _kinds(name))


@functools.cache
def gives(name: str, dimensions: int) -> bool:
    """Whether a provider's default model gives ``dimensions`` (a Matryoshka model, or its native size)."""
    cls = REGISTRY[name]
    options = ProviderOptions(api_key=CANARY_KEY, base_url="http://127.0.0.1:9", dimensions=dimensions)
    try:
        cls(options, **cls.test_options).close()
    except ConfigurationError:
        return False
    except Exception:  # a provider that cannot be built fails its own tests
        return True
    return True


# Every variable a provider reads a key or a setting from, and the trust settings (mmembed._trust).
ENV_VARS = (
    *dict.fromkeys(
        var for cls in REGISTRY.values() for var in (cls.env_var, *cls.fallback_env_vars, *cls.config_env_vars)
    ),
    "MMEMBED_TRUSTED_HOSTS",
    "MMEMBED_TRUSTED_KEY_VARS",
)


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see a developer's real keys or cloud settings."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def big_photo_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3000x2000 red photo-like JPEG on disk."""
    path = tmp_path_factory.mktemp("photos") / "red-3000x2000.jpg"
    path.write_bytes(jpeg_bytes(colour_photo("red", size=(3000, 2000))))
    return path


def make_embedder(provider: str, emulator: Emulator, **options: Any) -> Embedder:
    """An Embedder for ``provider`` talking to ``emulator`` with a canary key."""
    for key, value in REGISTRY[provider].test_options.items():
        options.setdefault(key, value)
    options.setdefault("max_retries", 2)
    return Embedder(provider, base_url=emulator.url_for(provider), api_key=CANARY_KEY, **options)


@pytest.fixture
def embedder_for(mmembed_emulator: Emulator) -> Iterator[Callable[..., Embedder]]:
    made: list[Embedder] = []

    def factory(provider: str, **options: Any) -> Embedder:
        embedder = make_embedder(provider, mmembed_emulator, **options)
        made.append(embedder)
        return embedder

    yield factory
    for embedder in made:
        embedder.close()


def host_port(url: str) -> str:
    """``host:port`` of a URL: the form ``MMEMBED_TRUSTED_HOSTS`` takes (the emulator is not trusted by default)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@dataclass(frozen=True)
class ChromaServer:
    host: str
    port: int
    path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextmanager
def http_client(server: ChromaServer, **kwargs: Any) -> Iterator[Any]:
    """A ``chromadb.HttpClient`` of ``server``, closed with its connections at the end of the block."""
    import chromadb

    client = chromadb.HttpClient(host=server.host, port=server.port, **kwargs)
    try:
        yield client
    finally:
        client.close()
        # chromadb 1.5.9's close() stops the client's system but never closes the httpx sessions of the client
        # and of its admin client: their pooled sockets would be reported unclosed (ResourceWarning) in
        # whichever later test happens to collect them, and fail it.
        for holder in (client, client._admin_client):
            holder._server._session.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """A real ``chroma run`` server on loopback, started once per session and killed at the end."""
    chroma = Path(sys.executable).with_name("chroma")
    if not chroma.exists():
        pytest.skip("the chroma CLI is not installed (pip install mmembed[chroma])")
    path = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    log = (path / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(chroma), "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = ChromaServer("127.0.0.1", port, path / "db")
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if requests.get(f"{server.url}/api/v2/heartbeat", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chroma run did not start: {(path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
