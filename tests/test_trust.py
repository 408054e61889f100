"""A stored collection never sends a key, or a query, to a host the user did not choose (issue 19).

An attacker's process writes collections (embedded store, and a real ``chroma run`` server) whose configs name
a listener on loopback as ``base_url``, or another of the user's variables as ``api_key_env_var``. The user's
process, with every provider's key set to a canary, opens them through Chroma and ``mmembed search``: each is
refused with a ConfigurationError before any network use, and the listener never sees a connection.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.config import Settings

from conftest import CANARY_KEY, IMAGE_PROVIDERS, ChromaServer, host_port, http_client
from mmembed import ConfigurationError
from mmembed._trust import check_host, check_key_var
from mmembed.chroma import function_class
from mmembed.cli import main
from mmembed.providers import PROVIDERS
from mmembed.testing import Emulator, colour_photo

NAMES = sorted(PROVIDERS)  # every registered provider, never a hand-written list


def settings() -> Settings:
    return Settings(anonymized_telemetry=False)  # a new one per client: HttpClient writes into the one it gets


SECRET_VAR = "MMEMBED_TEST_DB_PASSWORD"  # a variable of the user's that is no provider's key
SECRET = "db-password-canary-51c0"
pytestmark = pytest.mark.filterwarnings("ignore::mmembed.TextTooLongWarning")


class Listener:
    """The attacker's host: a TCP listener on loopback that records every connection and what it received."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.received.append(conn.recv(65536))
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def attacker() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


# What the attacker's process runs: collections whose configs point at its listener, or at a foreign variable.
WRITE_SCRIPT = """
import json, sys
import chromadb
from chromadb.config import Settings
from mmembed.chroma import function_class
from mmembed.providers import PROVIDERS

spec = json.loads(sys.argv[1])
settings = Settings(anonymized_telemetry=False)
if spec.get("path"):
    client = chromadb.PersistentClient(path=spec["path"], settings=settings)
else:
    client = chromadb.HttpClient(host=spec["host"], port=spec["port"], settings=settings)
for name in PROVIDERS:
    extra = dict(PROVIDERS[name].test_options)  # what the provider needs besides a host (a model, a project)
    if "project_id" in PROVIDERS[name].extra_keys:
        extra["project_id"] = "attacker-project"
    fn = function_class(name)
    variants = {
        "host": fn(base_url=spec["attacker"], **extra),
        "var": fn(base_url=spec["attacker"], api_key_env_var=spec["secret_var"], **extra),
    }
    if "location" in PROVIDERS[name].extra_keys:  # a location is part of the host: a host too, disguised
        variants["location"] = fn(location=spec["attacker"].split("//")[1] + "/x", **extra)
    for variant, ef in variants.items():
        collection = client.create_collection(f"{spec['prefix']}{variant}-{name}", embedding_function=ef)
        dims = ef.get_config()["dimensions"]
        collection.add(ids=["doc"], embeddings=[[1.0] + [0.0] * (dims - 1)], documents=["a stored document"])
print("written")
"""


def attacker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("MMEMBED_")}
    env.update({cls.env_var: "attackers-own-key" for cls in PROVIDERS.values()})
    env[SECRET_VAR] = "attackers-own-value"
    return env


def write_as_attacker(spec: dict[str, Any], attacker: Listener) -> None:
    spec = {**spec, "attacker": attacker.url, "secret_var": SECRET_VAR}
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", WRITE_SCRIPT, json.dumps(spec)],
        env=attacker_env(), capture_output=True, text=True, timeout=180, check=False,
    )
    assert proc.returncode == 0 and "written" in proc.stdout, proc.stderr


@pytest.fixture
def victim_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's process: every provider's key (and a password) set to canaries; nothing trusted."""
    for cls in PROVIDERS.values():
        monkeypatch.setenv(cls.env_var, CANARY_KEY)
    monkeypatch.setenv(SECRET_VAR, SECRET)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "users-project")


@pytest.fixture(scope="module")
def attacked_store(tmp_path_factory: pytest.TempPathFactory, attacker: Listener) -> Path:
    path = tmp_path_factory.mktemp("attacked")
    write_as_attacker({"path": str(path), "prefix": ""}, attacker)
    return path


@pytest.fixture(scope="module")
def attacked_server(chroma_server: ChromaServer, attacker: Listener) -> ChromaServer:
    write_as_attacker({"host": chroma_server.host, "port": chroma_server.port, "prefix": "trust-"}, attacker)
    return chroma_server


def variants(name: str) -> list[str]:
    return ["host", "var", *(["location"] if "location" in PROVIDERS[name].extra_keys else [])]


def assert_refused(err: str, variant: str, attacker: Listener) -> None:
    """The refusal names what it refused and both ways to allow it, and holds no secret."""
    if variant == "var":
        assert SECRET_VAR in err and "MMEMBED_TRUSTED_KEY_VARS" in err and "api_key_env_var=" in err, err
    else:  # a base_url, or a Vertex location that makes the host https://127.0.0.1:PORT/x-aiplatform...
        assert host_port(attacker.url) in err and "MMEMBED_TRUSTED_HOSTS" in err and "base_url=" in err, err
        assert "nothing was sent" in err
    assert CANARY_KEY not in err and SECRET not in err
    assert attacker.received == [], "the attacker's host got a connection"


# -- the refusals: embedded store, server, CLI -----------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_embedded_store_sends_nothing_to_a_stored_host_or_reads_a_stored_variable(
    name: str, attacked_store: Path, attacker: Listener, victim_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with chromadb.PersistentClient(path=str(attacked_store), settings=settings()) as client:
        for variant in variants(name):
            # The user even trusts the attacker's host here: a foreign key variable is refused on its own.
            monkeypatch.setenv("MMEMBED_TRUSTED_HOSTS", host_port(attacker.url) if variant == "var" else "")
            collection = client.get_collection(f"{variant}-{name}")
            with pytest.raises(ConfigurationError) as caught:
                collection.query(query_texts=["what is the user looking for"], n_results=1)
            assert_refused(str(caught.value), variant, attacker)
            # The rest of the collection still works: reading, counting, upserting ready-made vectors.
            assert collection.count() == 1
            assert collection.get(ids=["doc"])["documents"] == ["a stored document"]
            assert collection.configuration["embedding_function"] is not None


@pytest.mark.parametrize("name", NAMES)
def test_cli_search_refuses_in_one_line(
    name: str, attacked_store: Path, attacker: Listener, victim_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    for variant in variants(name):
        status = main(["search", "what is the user looking for", "--collection", f"{variant}-{name}",
                       "--db", str(attacked_store)])
        out, err = capsys.readouterr()
        assert status == 2 and out == ""
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert_refused(err, variant, attacker)


@pytest.mark.parametrize("name", NAMES)
def test_cli_base_url_does_not_launder_a_stored_key_variable(
    name: str, attacked_store: Path, attacker: Listener, victim_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # --base-url is the user's own host (here the listener itself): still, the stored variable is not read.
    status = main(["search", "q", "--collection", f"var-{name}", "--db", str(attacked_store),
                   "--base-url", attacker.url])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert_refused(err, "var", attacker)


def test_chroma_server_sends_nothing_either(
    attacked_server: ChromaServer, attacker: Listener, victim_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with http_client(attacked_server, settings=settings()) as client:
        for name in NAMES:
            for variant in variants(name):
                collection = client.get_collection(f"trust-{variant}-{name}")
                with pytest.raises(ConfigurationError) as caught:
                    collection.query(query_texts=["what is the user looking for"], n_results=1)
                assert_refused(str(caught.value), variant, attacker)
                assert collection.count() == 1
    for name in NAMES:
        status = main(["search", "q", "--collection", f"trust-host-{name}", "--chroma-url", attacked_server.url])
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1
        assert_refused(err, "host", attacker)


# -- what the user chose still works ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_an_explicit_function_is_not_blocked_by_the_stored_one(
    name: str, attacked_store: Path, attacker: Listener, victim_env: None, mmembed_emulator: Emulator
) -> None:
    extra = dict(PROVIDERS[name].test_options)
    if "project_id" in PROVIDERS[name].extra_keys:
        extra["project_id"] = "users-project"
    mine = function_class(name)(base_url=mmembed_emulator.url_for(name), **extra)
    with chromadb.PersistentClient(path=str(attacked_store), settings=settings()) as client:
        collection = client.get_collection(f"host-{name}", embedding_function=mine)
        assert collection.query(query_texts=["red"], n_results=1)["ids"] == [["doc"]]
    mine.close()
    assert [r.provider for r in mmembed_emulator.requests] == [name]
    assert attacker.received == []


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Emulator]]:
    """A store made with ``mmembed ingest --base-url EMULATOR``, one collection per provider."""
    root = tmp_path_factory.mktemp("legit")
    (root / "media").mkdir()
    colour_photo("red", size=(600, 400)).save(root / "media" / "red.jpg", quality=88)
    (root / "media" / "banana.txt").write_text("A banana is a long curved fruit with soft sweet flesh.\n")
    with Emulator() as emu:
        with pytest.MonkeyPatch.context() as mp:
            for cls in PROVIDERS.values():
                mp.setenv(cls.env_var, CANARY_KEY)
            mp.setenv("GOOGLE_CLOUD_PROJECT", "users-project")
            for name in NAMES:
                media = root / "media" if name in IMAGE_PROVIDERS else root / "media" / "banana.txt"  # text only
                args = ["ingest", str(media), "--provider", name, "-q", "--collection", f"media-{name}",
                        "--db", str(root / "db"), "--base-url", emu.url_for(name)]
                assert main(args) == 0
        yield root / "db", emu


SEARCH_SCRIPT = """
import json, sys
from mmembed.cli import main
db, names = sys.argv[1], json.loads(sys.argv[2])
print(json.dumps({name: main(["search", "banana", "-n", "1", "--collection", f"media-{name}", "--db", db])
                  for name in names}))
"""


def search_in_new_process(db: Path, trusted: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMEMBED_")}
    env.update({cls.env_var: CANARY_KEY for cls in PROVIDERS.values()}, GOOGLE_CLOUD_PROJECT="users-project")
    if trusted is not None:
        env["MMEMBED_TRUSTED_HOSTS"] = trusted
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", SEARCH_SCRIPT, str(db), json.dumps(NAMES)],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )


def test_a_store_made_with_base_url_reopens_in_a_new_process_that_trusts_its_host(
    ingested: tuple[Path, Emulator],
) -> None:
    db, emu = ingested
    before = len(emu.requests)
    refused = search_in_new_process(db, None)
    assert json.loads(refused.stdout) == {name: 2 for name in NAMES}, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == len(NAMES)
    assert all(host_port(emu.url) in line for line in refused.stderr.strip().splitlines())
    assert len(emu.requests) == before  # refused before any request
    trusted = search_in_new_process(db, f"other.example, {host_port(emu.url).upper()}")
    assert json.loads(trusted.stdout.splitlines()[-1]) == {name: 0 for name in NAMES}, trusted.stderr
    assert trusted.stdout.count("banana.txt") == len(NAMES)
    assert {r.provider for r in emu.requests[before:]} == set(NAMES)


def test_search_with_base_url_on_such_a_store(
    ingested: tuple[Path, Emulator], victim_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    db, emu = ingested
    for name in NAMES:
        assert main(["search", "banana", "-n", "1", "--collection", f"media-{name}", "--db", str(db),
                     "--base-url", emu.url_for(name)]) == 0
        assert "banana.txt" in capsys.readouterr().out


def test_a_rebuilt_config_this_process_wrote_is_the_users(
    mmembed_emulator: Emulator, victim_env: None, tmp_path: Path
) -> None:
    # create_collection(configuration={"embedding_function": ef}) makes Chroma rebuild ef from its config here.
    ef = function_class("jina")(base_url=mmembed_emulator.url)
    with chromadb.PersistentClient(path=str(tmp_path), settings=settings()) as client:
        collection = client.create_collection("written-here", configuration={"embedding_function": ef})
        collection.add(ids=["a"], documents=["a red square"])
    assert len(mmembed_emulator.requests) == 1
    ef.close()


# -- the rule itself -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "url"),
    [
        ("vertex", "https://us-central1-aiplatform.googleapis.com"),
        ("vertex", "https://aiplatform.googleapis.com"),
        ("vertex", "https://aiplatform.eu.rep.googleapis.com/"),
        ("voyage", "https://ai.mongodb.com"),
        ("jina", "https://API.jina.ai:443/v1"),
    ]
    + [(name, cls.default_base_url) for name in NAMES if "{" not in (cls := PROVIDERS[name]).default_base_url
       and cls.default_base_url],  # a self-hosted server has no host of its own
)
def test_a_providers_own_hosts_pass(provider: str, url: str) -> None:
    check_host(PROVIDERS[provider], url, "test")


@pytest.mark.parametrize(
    ("provider", "url"),
    [
        ("vertex", "https://evil.example-aiplatform.googleapis.com.evil.example"),
        ("vertex", "https://a.b-aiplatform.googleapis.com.evil.example"),
        ("vertex", "https://aiplatform.googleapis.com.evil.example"),
        ("jina", "http://api.jina.ai"),  # the key in clear text
        ("jina", "https://api.jina.ai:8443"),
        ("jina", "https://api.jina.ai@evil.example"),
        ("jina", "https://evil.example\\@api.jina.ai"),
        ("jina", "https://evil.example#api.jina.ai"),
        ("jina", "https://localhost"),  # loopback is nobody's by default
    ],
)
def test_other_hosts_are_refused(provider: str, url: str) -> None:
    with pytest.raises(ConfigurationError, match="nothing was sent"):
        check_host(PROVIDERS[provider], url, "test")


def test_trusted_hosts_match_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    cls = PROVIDERS["jina"]
    monkeypatch.setenv("MMEMBED_TRUSTED_HOSTS", " Gateway.Example , 127.0.0.1:8080, [::1]:9000")
    for url in ("https://gateway.example/v1", "http://GATEWAY.example", "http://127.0.0.1:8080", "https://[::1]:9000"):
        check_host(cls, url, "test")
    for url in ("https://gateway.example:8443", "http://127.0.0.1", "http://127.0.0.1:8081", "http://[::1]:9001",
                "https://gateway.example.evil.example"):
        with pytest.raises(ConfigurationError):
            check_host(cls, url, "test")
    monkeypatch.setenv("MMEMBED_TRUSTED_HOSTS", "host:notaport")
    with pytest.raises(ConfigurationError, match="MMEMBED_TRUSTED_HOSTS"):
        check_host(cls, "https://host", "test")


@pytest.mark.parametrize("name", NAMES)
def test_key_variables(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = PROVIDERS[name]
    for var in (cls.env_var, *cls.fallback_env_vars):
        check_key_var(cls, var, "test")
    with pytest.raises(ConfigurationError, match="AWS_SECRET_ACCESS_KEY"):
        check_key_var(cls, "AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("MMEMBED_TRUSTED_KEY_VARS", "MY_KEY, AWS_SECRET_ACCESS_KEY")
    check_key_var(cls, "AWS_SECRET_ACCESS_KEY", "test")
    with pytest.raises(ConfigurationError):
        check_key_var(cls, "aws_secret_access_key", "test")  # variables are case-sensitive
