"""Shared fixtures: sample images made in code, and Embedders pointed at the offline emulator."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
from PIL import Image

from mmembed import Embedder
from mmembed.testing import Emulator, colour_photo

CANARY_KEY = "canary-key-7f3a9c1e"
PROVIDERS = ("nomic", "jina", "vertex", "gemini", "voyage", "cohere")
DEFAULT_DIMS = {"nomic": 768, "jina": 1024, "vertex": 1408, "voyage": 1024, "cohere": 1536, "gemini": 3072}
TEXT_MODELS = {
    "nomic": "nomic-embed-text-v1.5",
    "jina": "jina-clip-v2",
    "vertex": "multimodalembedding@001",
    "voyage": "voyage-multimodal-3.5",
    "cohere": "embed-v4.0",
    "gemini": "gemini-embedding-2",
}
IMAGE_MODELS = {**TEXT_MODELS, "nomic": "nomic-embed-vision-v1.5"}


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see a developer's real keys or cloud settings."""
    for var in (
        "NOMIC_API_KEY", "JINA_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_CLOUD_LOCATION", "VOYAGE_API_KEY", "COHERE_API_KEY", "CO_API_KEY", "MMEMBED_TRUSTED_HOSTS",
        "MMEMBED_TRUSTED_KEY_VARS",
    ):
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
    if provider == "vertex":
        options.setdefault("project_id", "test-project")
    options.setdefault("max_retries", 2)
    return Embedder(provider, base_url=emulator.url, api_key=CANARY_KEY, **options)


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
