"""`mmembed ingest` as one stream: full batches, Chroma written as vectors arrive, and a kill -9 costs nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest

from mmembed import Embedder
from mmembed.cli import main
from mmembed.inputs import to_item
from mmembed.providers import JinaProvider
from mmembed.testing import Emulator, colour_photo

NOTES, PHOTOS = 240, 3


@pytest.fixture(scope="module")
def notes_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ingest")
    (root / "notes").mkdir()
    (root / "photos").mkdir()
    for i in range(NOTES):
        (root / "notes" / f"{i:04d}.txt").write_text(f"Note {i}: something about the colour number {i}.\n")
    for i, colour in enumerate(("red", "green", "blue")[:PHOTOS]):
        colour_photo(colour, size=(640, 480), seed=i).save(root / "photos" / f"{colour}.jpg", quality=85)
    return root


def ingest_args(folder: Path, db: Path, emulator: Emulator, provider: str = "nomic") -> list[str]:
    return ["ingest", str(folder), "--provider", provider, "-q", "--collection", "notes", "--db", str(db),
            "--base-url", emulator.url]


def stored(db: Path) -> dict[str, Any]:
    client = chromadb.PersistentClient(path=str(db))
    try:
        got = client.get_collection("notes").get(include=["embeddings", "metadatas", "documents", "uris"])
    finally:
        client.close()
    order = np.argsort(got["ids"])
    return {key: [got[key][i] for i in order] for key in ("ids", "embeddings", "metadatas", "documents", "uris")}


def cached_rows(path: Path) -> int:
    if not path.exists():
        return 0
    with closing(sqlite3.connect(path, timeout=30)) as conn:  # a connection's own `with` commits, never closes
        try:
            return int(conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])
        except sqlite3.OperationalError:  # the table is not made yet
            return 0


def sent_items(emulator: Emulator) -> list[str]:
    """The texts, and one marker per image, that reached the emulator."""
    out: list[str] = []
    for r in emulator.requests:
        if r.path == "/v1/embedding/text":
            out += r.json["texts"]
        elif r.path == "/v1/embedding/image":
            out += [f"image:{f[1]}" for f in r.files if f[0] == "images"]
    return out


def test_a_killed_ingest_resumes_to_the_same_records_without_paying_twice(
    notes_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOMIC_API_KEY", "test-key")
    with Emulator(latency=0.2) as emulator:
        # The reference: one uninterrupted run.
        assert main(ingest_args(notes_folder, tmp_path / "whole", emulator)) == 0
        reference = stored(tmp_path / "whole")
        assert len(reference["ids"]) == NOTES + PHOTOS
        emulator.clear()

        # A run killed (SIGKILL: no cleanup at all) once some answers are cached and some records stored.
        db = tmp_path / "killed"
        env = {**os.environ, "NOMIC_API_KEY": "test-key", "ANONYMIZED_TELEMETRY": "False"}
        # Chroma is written every 50 records, so the kill lands after some writes and before others.
        argv = ingest_args(notes_folder, db, emulator)
        code = f"import mmembed.cli as c; c.WRITE_BATCH = 50; raise SystemExit(c.main({argv!r}))"
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while cached_rows(db / "embedding-cache.sqlite") < 120 and proc.poll() is None:
            assert time.monotonic() < deadline, "the ingest never got going"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the ingest finished before it could be killed"
        cached = cached_rows(db / "embedding-cache.sqlite")
        first_run = sent_items(emulator)
        assert cached < NOTES + PHOTOS
        partial = len(stored(db)["ids"])
        assert 0 < partial < NOTES + PHOTOS, partial  # killed between two Chroma writes

        # Resumed: only what was never answered goes out, and the store ends as the uninterrupted one.
        emulator.clear()
        assert main(ingest_args(notes_folder, db, emulator)) == 0
        resumed = sent_items(emulator)
        assert len(resumed) == len(set(resumed)) == NOTES + PHOTOS - cached
        embedder = Embedder("nomic", base_url=emulator.url, api_key="test-key")
        keys = {embedder.cache_key(to_item(t), "document") for t in resumed if not t.startswith("image:")}
        with closing(sqlite3.connect(db / "embedding-cache.sqlite")) as conn:
            rows = {k for (k,) in conn.execute("SELECT key FROM embeddings")}
        assert keys <= rows and len(rows) == NOTES + PHOTOS  # each text paid for once, in one run or the other
        assert len(first_run) + len(resumed) <= NOTES + PHOTOS + 8 * 10  # at most the killed in-flight requests
        again = stored(db)
        assert again["ids"] == reference["ids"]
        assert again["metadatas"] == reference["metadatas"]
        assert again["documents"] == reference["documents"] and again["uris"] == reference["uris"]
        assert np.array_equal(np.asarray(again["embeddings"]), np.asarray(reference["embeddings"]))


def test_batches_fill_to_the_caps_and_records_are_stored_and_counted_as_they_arrive(
    notes_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mmembed_emulator: Emulator
) -> None:
    import mmembed.cli

    monkeypatch.setenv("JINA_API_KEY", "test-key")
    monkeypatch.setattr(mmembed.cli, "WRITE_BATCH", 60)
    counted: list[int] = []

    grown: list[int] = []

    class Progress(mmembed.cli._Progress):
        def grow(self, n: int) -> None:
            grown.append(n)

        def update(self, n: int) -> None:
            counted.append(n)

    monkeypatch.setattr(mmembed.cli, "_progress", lambda quiet: Progress())
    monkeypatch.setattr(JinaProvider, "cap", lambda self, route: 100)
    assert main(ingest_args(notes_folder, tmp_path / "db", mmembed_emulator, "jina")) == 0
    sizes = sorted(len(r.json["input"]) for r in mmembed_emulator.requests)
    assert sizes == [43, 100, 100]  # full batches (the photos join the last one)
    assert sum(counted) == NOTES + PHOTOS and max(counted) <= 60  # the bar counts records as stored
    assert sum(grown) == NOTES + PHOTOS
    assert len(stored(tmp_path / "db")["ids"]) == NOTES + PHOTOS
