"""A provider plugin from a package that is not mmembed: installed for real, seen in all six places.

``examples/plugin`` (one module, one ``mmembed.providers`` entry point) is installed with pip into a temporary
folder, and fresh processes with that folder on their path use it through ``Embedder``, Chroma (a collection
made with it reopens in another process), LlamaIndex, LangChain, the CLI and ``mmembed.ray``. The key comes from
the plugin's own variable (``ACME_API_KEY``); the emulator checks it arrived, and only as a Bearer token.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import jpeg_bytes
from mmembed.testing import Emulator, colour_photo

PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "plugin"
KEY = "acme-canary-key-51c2"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed by pip (no build isolation: offline) into a folder of its own.

    pip builds from a copy, so the build leaves nothing in the repository's examples/plugin.
    """
    target = tmp_path_factory.mktemp("plugin-site")
    source = tmp_path_factory.mktemp("plugin-build") / "plugin"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "--target", str(target), str(source)],
        check=True, cwd=source, capture_output=True, timeout=300,
    )
    assert list(target.glob("mmembed_acme-*.dist-info/entry_points.txt"))
    return target


def environment(plugin_path: Path) -> dict[str, str]:
    """This environment with the plugin's folder first on the path, and the key in the plugin's own variable."""
    path = os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "ACME_API_KEY": KEY}


def run(code: str, plugin_path: Path, emulator: Emulator) -> subprocess.CompletedProcess[str]:
    environ = {
        **environment(plugin_path),
        "EMU": emulator.url,
        # A stored config may send requests to the emulator only because the user says so.
        "MMEMBED_TRUSTED_HOSTS": urlsplit(emulator.url).netloc,
    }
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=environ, capture_output=True, text=True, timeout=240
    )


def test_the_package_is_not_importable_without_being_installed() -> None:
    assert "acme" not in __import__("mmembed.providers").providers.PROVIDERS


def test_plugin_in_embedder_chroma_llama_index_langchain_and_ray(plugin_path: Path, tmp_path: Path) -> None:
    photo = tmp_path / "red.jpg"
    photo.write_bytes(jpeg_bytes(colour_photo("red", size=(400, 300))))
    db = tmp_path / "db"
    with Emulator() as emu:
        made = run(
            f"""
            import json, os
            import numpy as np, pyarrow as pa, chromadb
            from pathlib import Path
            import mmembed
            from mmembed.providers import PROVIDERS
            from mmembed import chroma, llama_index, langchain, ray
            url = os.environ["EMU"]
            out = {{"registry": "acme" in PROVIDERS, "class": PROVIDERS["acme"].__name__}}
            vectors = mmembed.Embedder("acme", base_url=url).embed(["a red square", Path({str(photo)!r})])
            out["embedder"] = list(vectors.shape)
            fn = chroma.function_class("acme")(base_url=url)
            out["chroma_name"] = fn.name()
            client = chromadb.PersistentClient(path={str(db)!r})
            col = client.create_collection("plugged", embedding_function=fn)
            chroma.add_mixed(col, ["t", "p"], ["a red square", Path({str(photo)!r})])
            out["chroma_count"] = col.count()
            out["llama_index"] = len(llama_index.embedding_class("acme")(base_url=url).get_text_embedding("red"))
            out["langchain"] = len(langchain.embeddings_class("acme")(base_url=url).embed_query("red"))
            batch = ray.EmbedBatches("acme", text_column="text", embedder={{"base_url": url}})
            table = batch(pa.table({{"text": ["one", "two"]}}))
            out["ray"] = [len(v) for v in table.column("embedding").to_pylist()]
            print(json.dumps(out))
            """,
            plugin_path,
            emu,
        )
        assert made.returncode == 0, made.stderr[-3000:]
        out = json.loads(made.stdout.strip().splitlines()[-1])
        assert out == {
            "registry": True, "class": "AcmeProvider", "embedder": [2, 1024], "chroma_name": "mmembed_acme",
            "chroma_count": 2, "llama_index": 1024, "langchain": 1024, "ray": [1024, 1024],
        }
        # Reopened in a new process from the stored config alone: the key comes from ACME_API_KEY again.
        reopened = run(
            f"""
            import json, chromadb
            import mmembed.chroma as chroma
            col = chromadb.PersistentClient(path={str(db)!r}).get_collection("plugged")
            hits = chroma.query_mixed(col, query_texts=["red"], n_results=2)
            print(json.dumps({{"config": col.configuration["embedding_function"].get_config(), "ids": hits["ids"][0]}}))
            """,
            plugin_path,
            emu,
        )
        assert reopened.returncode == 0, reopened.stderr[-3000:]
        stored = json.loads(reopened.stdout.strip().splitlines()[-1])
        assert stored["config"]["api_key_env_var"] == "ACME_API_KEY"
        assert KEY not in reopened.stdout and KEY not in json.dumps(stored)
        assert sorted(stored["ids"]) == ["p", "t"]
        auth = {r.headers.get("authorization") for r in emu.requests}
    assert auth == {f"Bearer {KEY}"}
    assert not any(KEY.encode() in path.read_bytes() for path in db.rglob("*") if path.is_file())


def test_plugin_in_the_cli(plugin_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "note.txt").write_text("a note about a red bicycle")
    (folder / "red.jpg").write_bytes(jpeg_bytes(colour_photo("red", size=(320, 240))))
    db = tmp_path / "cli-db"
    cli = "import sys; from mmembed.cli import main; raise SystemExit(main(sys.argv[1:]))"
    with Emulator() as emu:
        base = [sys.executable, "-c", cli]
        env = environment(plugin_path)
        ingest = subprocess.run(
            [*base, "ingest", str(folder), "--provider", "acme", "--base-url", emu.url, "--db", str(db),
             "--collection", "media", "-q"],
            env=env, capture_output=True, text=True, timeout=240,
        )
        assert ingest.returncode == 0, ingest.stderr[-3000:]
        assert "2 records added" in ingest.stdout
        search = subprocess.run(
            [*base, "search", "red", "--base-url", emu.url, "--db", str(db), "--collection", "media", "-n", "2"],
            env=env, capture_output=True, text=True, timeout=240,
        )
        assert search.returncode == 0, search.stderr[-3000:]
        assert "red.jpg" in search.stdout and "note.txt" in search.stdout
        assert {r.headers.get("authorization") for r in emu.requests} == {f"Bearer {KEY}"}
    help_text = subprocess.run([*base, "ingest", "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert "acme" in help_text.stdout
