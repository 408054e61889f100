"""Replay recorded provider traffic through the real clients (replay-only by default).

Modes, chosen by ``MMEMBED_RECORD``:
- unset (default, CI): cassettes in ``cassettes/`` are replayed; nothing touches the network.
- ``live`` (``make record``): re-record against the live APIs with the keys from the environment
  (NOMIC_API_KEY, JINA_API_KEY, GOOGLE_API_KEY + GOOGLE_CLOUD_PROJECT, VOYAGE_API_KEY,
  COHERE_API_KEY, AWS credentials + AWS_REGION, TWELVE_LABS_API_KEY); a provider whose key is missing is
  skipped.
- ``emulator`` (``make record-emulator``): record against the offline emulator, with the emulator's
  address rewritten to the provider's real host, so the cassettes replay exactly like live ones.

Credentials are scrubbed before anything is written: every header a provider declares secret
(``Provider.secret_headers``: ``Authorization``, ``X-Amz-Security-Token``, ``x-api-key``...), ``x-goog-api-key``
and any ``key=`` query parameter; OAuth token exchanges are never recorded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from vcr.request import Request as VcrRequest

from conftest import jpeg_bytes
from mmembed import Embedder
from mmembed.providers import PROVIDERS
from mmembed.testing import Emulator, colour_photo

MODE = os.environ.get("MMEMBED_RECORD", "")
CASSETTES = Path(__file__).resolve().parents[1] / "cassettes"
# Where each provider's traffic really goes, and the variables its key is read from: from the provider classes.
REAL_HOSTS = {name: cls.default_base_url for name, cls in PROVIDERS.items()}
KEY_VARS = {name: (cls.env_var, *cls.fallback_env_vars) for name, cls in PROVIDERS.items()}
SECRET_HEADERS = sorted(
    {name.lower() for cls in PROVIDERS.values() for name in cls.secret_headers} | {"x-goog-api-key"}
)
TOKEN_HOSTS = ("oauth2.googleapis.com", "accounts.google.com", "metadata.google.internal")
_emulator: list[Emulator] = []


def scrub_request(request: VcrRequest) -> VcrRequest | None:
    """Never record OAuth token exchanges; put the real host in place of the emulator's address."""
    if any(host in request.host for host in TOKEN_HOSTS):
        return None
    if _emulator and request.uri.startswith(_emulator[0].url):
        # The endpoint that served the path says whose it is, and may name the real host (a cloud region).
        endpoint = _emulator[0].endpoint_for(request.path)
        if endpoint is None:
            raise AssertionError(f"no emulator endpoint serves {request.path}")
        host = endpoint.real_host(request.path) or REAL_HOSTS[endpoint.provider]
        request.uri = host + request.uri[len(_emulator[0].url) :]
    return request


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    return {
        "filter_headers": [*SECRET_HEADERS, "cookie", "set-cookie"],
        "filter_query_parameters": ["key"],
        "before_record_request": scrub_request,
        "match_on": ["method", "scheme", "host", "path", "query"],
        "decode_compressed_response": True,
    }


@pytest.fixture(scope="module")
def vcr_cassette_dir() -> str:
    return str(CASSETTES)


@pytest.fixture
def base_url() -> Iterator[str | None]:
    """None (the real host) when replaying or recording live; the emulator when recording offline."""
    if MODE != "emulator":
        yield None
        return
    with Emulator() as emulator:
        _emulator[:] = [emulator]
        yield emulator.url
        _emulator.clear()


def embedder(provider: str, base_url: str | None, **options: Any) -> Embedder:
    if MODE == "live":
        if not any(os.environ.get(name) for name in KEY_VARS[provider]):
            pytest.skip(f"{' or '.join(KEY_VARS[provider])} is not set")
        key = None
    else:
        key = "replay-key"
    if provider == "vertex":
        options.setdefault("project_id", os.environ.get("GOOGLE_CLOUD_PROJECT") if MODE == "live" else "mmembed-test")
    if provider == "bedrock":
        key = None  # SigV4 with the environment's credentials (the emulator's test ones unless live)
    # Sequential requests, so replay order matches the recording order.
    return Embedder(provider, api_key=key, base_url=base_url, max_concurrency=1, max_retries=0, **options)


ITEMS_TEXT = ["a red square", "the blue sea"]


def red_photo() -> bytes:
    return jpeg_bytes(colour_photo("red", size=(640, 480), seed=7), quality=85)


def check(vectors: np.ndarray, rows: int, dims: int) -> None:
    assert vectors.shape == (rows, dims)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.vcr
def test_nomic_documents_and_query(base_url: str | None) -> None:
    emb = embedder("nomic", base_url, dimensions=256)
    docs = emb.embed([ITEMS_TEXT[0], red_photo(), ITEMS_TEXT[1]])
    (query,) = emb.embed_query(["red"])
    check(docs, 3, 256)
    assert query.shape == (256,)
    assert float(docs[1] @ query) > float(docs[1] @ docs[2]) - 1.0  # sanity: finite similarities
    if MODE == "":  # pinned facts of the committed cassette: the red photo is nearer "red" than the sea is
        assert float(query @ docs[0]) > float(query @ docs[2])


@pytest.mark.vcr
def test_jina_documents_and_query(base_url: str | None) -> None:
    emb = embedder("jina", base_url, dimensions=512)
    docs = emb.embed([ITEMS_TEXT[0], red_photo(), ITEMS_TEXT[1]])
    (query,) = emb.embed_query(["red"])
    check(docs, 3, 512)
    if MODE == "":
        assert float(query @ docs[0]) > float(query @ docs[2])


@pytest.mark.vcr
def test_vertex_documents_and_query(base_url: str | None) -> None:
    emb = embedder("vertex", base_url, dimensions=128)
    docs = emb.embed([ITEMS_TEXT[0], red_photo()])  # one instance carrying the text and the image
    (query,) = emb.embed_query(["red"])
    check(docs, 2, 128)
    assert query.shape == (128,)


@pytest.mark.vcr
def test_voyage_documents_and_query(base_url: str | None) -> None:
    emb = embedder("voyage", base_url, dimensions=256)
    docs = emb.embed([ITEMS_TEXT[0], red_photo(), ITEMS_TEXT[1]])  # one request: texts and the data-URI photo
    (query,) = emb.embed_query(["red"])
    check(docs, 3, 256)
    if MODE == "":
        assert float(query @ docs[0]) > float(query @ docs[2])


@pytest.mark.vcr
def test_cohere_documents_and_query(base_url: str | None) -> None:
    emb = embedder("cohere", base_url, dimensions=512)
    docs = emb.embed([ITEMS_TEXT[0], red_photo(), ITEMS_TEXT[1]])  # one request of three inputs
    (query,) = emb.embed_query(["red"])
    check(docs, 3, 512)
    if MODE == "":
        assert float(query @ docs[0]) > float(query @ docs[2])


@pytest.mark.vcr
def test_gemini_documents_and_query(base_url: str | None) -> None:
    emb = embedder("gemini", base_url, dimensions=768)
    docs = emb.embed([ITEMS_TEXT[0], red_photo(), ITEMS_TEXT[1]])  # one batchEmbedContents call, 3 requests
    (query,) = emb.embed_query(["red"])
    check(docs, 3, 768)
    assert query.shape == (768,)
    if MODE == "":  # pinned: the prefixed query "red" is nearer the red text and the red photo than the sea
        assert float(query @ docs[0]) > float(query @ docs[2])
        assert float(query @ docs[1]) > float(query @ docs[2])


@pytest.mark.vcr
def test_vertex_gemini_documents_and_query(base_url: str | None) -> None:
    emb = embedder("vertex", base_url, model="gemini-embedding-2", dimensions=256)
    docs = emb.embed([ITEMS_TEXT[0], red_photo()])  # two :embedContent calls, one content each
    (query,) = emb.embed_query(["red"])
    check(docs, 2, 256)
    if MODE == "":
        assert float(query @ docs[1]) > 0.3  # the small modality gap of a natively multimodal model


@pytest.fixture
def aws_test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replaying or recording offline: the emulator's test credentials sign (the signatures are scrubbed)."""
    if MODE == "live":
        return
    from mmembed.testing.bedrock import TEST_CREDENTIALS

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_CREDENTIALS.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_CREDENTIALS.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", str(TEST_CREDENTIALS.session_token))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.vcr
@pytest.mark.usefixtures("aws_test_credentials")
def test_bedrock_documents_and_query(base_url: str | None) -> None:
    emb = embedder("bedrock", base_url, dimensions=256)  # Nova: one item per InvokeModel call
    docs = emb.embed([ITEMS_TEXT[0], red_photo(), ITEMS_TEXT[1]])
    (query,) = emb.embed_query(["red"])
    check(docs, 3, 256)
    if MODE == "":
        assert float(query @ docs[0]) > float(query @ docs[2])


@pytest.mark.vcr
def test_twelvelabs_documents_and_query(base_url: str | None) -> None:
    emb = embedder("twelvelabs", base_url)
    docs = emb.embed([ITEMS_TEXT[0], red_photo(), ITEMS_TEXT[1]])
    (query,) = emb.embed_query(["red"])
    check(docs, 3, 512)
    if MODE == "":
        assert float(query @ docs[0]) > float(query @ docs[2])


# Self-hosted servers have no real host of their own: recordings name the server's usual local address (its
# emulator endpoint's ``default_host``) under ``/<provider>``, and a replay points base_url there. A live recording
# needs the server: ``MMEMBED_<PROVIDER>_URL`` (e.g. MMEMBED_VLLM_URL=http://gpu-box:8000).
SELF_HOSTED = {"vllm": "http://localhost:8000/vllm", "infinity": "http://localhost:7997/infinity",
               "nim": "http://localhost:8000/nim", "tei": "http://localhost:8080/tei"}


# Texts and photos travel in separate requests to the same path here: matched by body, so replay does not depend
# on which of them the pipeline sent first.
BY_BODY = pytest.mark.vcr(match_on=["method", "scheme", "host", "path", "query", "body"])


def server(provider: str, base_url: str | None) -> str:
    if MODE == "emulator" and base_url is not None:
        return base_url + SELF_HOSTED[provider][SELF_HOSTED[provider].rindex("/"):]
    if MODE == "live":
        url = os.environ.get(f"MMEMBED_{provider.upper()}_URL")
        if not url:
            pytest.skip(f"MMEMBED_{provider.upper()}_URL is not set")
        return url
    return SELF_HOSTED[provider]


def self_hosted(provider: str, base_url: str | None, **options: Any) -> Embedder:
    key = None if MODE == "live" else "replay-key"
    return Embedder(provider, api_key=key, base_url=server(provider, base_url), max_concurrency=1, max_retries=0,
                    **options)


@BY_BODY
def test_vllm_documents_and_query(base_url: str | None) -> None:
    emb = self_hosted("vllm", base_url)  # no model named: GET /v1/models names it
    docs = emb.embed([ITEMS_TEXT[0], red_photo(), ITEMS_TEXT[1]])  # texts in `input`, the photo as a conversation
    (query,) = emb.embed_query(["red"])
    check(docs, 3, 512)
    assert emb.provider.model_names() == {"model": "openai/clip-vit-base-patch32"}
    if MODE == "":
        assert float(query @ docs[0]) > float(query @ docs[2])


@BY_BODY
def test_infinity_documents_and_query(base_url: str | None) -> None:
    emb = self_hosted("infinity", base_url)  # GET /models: the model and its capabilities
    docs = emb.embed([ITEMS_TEXT[0], red_photo(), ITEMS_TEXT[1]])  # two requests: modality text, then image
    (query,) = emb.embed_query(["red"])
    check(docs, 3, 512)
    if MODE == "":
        assert float(query @ docs[0]) > float(query @ docs[2])


@BY_BODY
def test_nim_documents_and_query(base_url: str | None) -> None:
    emb = self_hosted("nim", base_url)  # a container: GET /v1/models
    docs = emb.embed([ITEMS_TEXT[0], red_photo(), ITEMS_TEXT[1]])  # input_type passage; the photo as a data URL
    (query,) = emb.embed_query(["red"])  # input_type query
    check(docs, 3, 2048)
    if MODE == "":
        assert float(query @ docs[0]) > float(query @ docs[2])


@BY_BODY
def test_tei_documents_and_query(base_url: str | None) -> None:
    emb = self_hosted("tei", base_url, query_prompt_name="query")  # GET /info: the model and its batch cap
    docs = emb.embed(ITEMS_TEXT)
    (query,) = emb.embed_query(["red"])  # prompt_name query
    check(docs, 2, 384)
    if MODE == "":
        assert float(query @ docs[0]) > float(query @ docs[1])


def test_cassettes_hold_no_credentials() -> None:
    """Nothing shaped like a live credential, and no auth header values, in any committed cassette."""
    import re

    shaped = re.compile(
        rb"(nk-[A-Za-z0-9_-]{20,}|jina_[A-Za-z0-9]{30,}|AIza[0-9A-Za-z_-]{35}|ya29\.[0-9A-Za-z_-]{20,})"
    )
    files = list(CASSETTES.rglob("*.yaml"))
    assert files, "no cassettes committed"
    for path in files:
        data = path.read_bytes()
        assert not shaped.search(data), f"{path} holds something shaped like a credential"
        assert b"replay-key" not in data and b"Bearer " not in data, f"{path} holds an auth header value"
        assert b"x-goog-api-key:" not in data.lower()
        assert b"AWS4-HMAC-SHA256" not in data and b"x-amz-security-token" not in data.lower()
        assert b"emulator-session-token" not in data and b"x-api-key:" not in data.lower()
