"""A content-addressed embedding cache in SQLite, safe to share between threads and processes.

The key covers provider, model, dimensions, task, the item's content and, for images, the upload size
(see :meth:`mmembed.Embedder.cache_key`), so a changed setting never returns a stale vector. Vectors are
written as each request completes: a call that fails half-way keeps what it already paid for, and a
retry sends only the rest.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["EmbeddingCache"]

SCHEMA = "CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vector BLOB NOT NULL)"


class EmbeddingCache:
    """Vectors by key in one SQLite file (WAL mode, so several processes may read and write it)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(SCHEMA)

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def get(self, key: str) -> np.ndarray | None:
        row = self._connect().execute("SELECT vector FROM embeddings WHERE key = ?", (key,)).fetchone()
        return None if row is None else np.frombuffer(row[0], dtype=np.float32).copy()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        conn = self._connect()
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, blob in conn.execute(f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", chunk):
                out[key] = np.frombuffer(blob, dtype=np.float32).copy()
        return out

    def put_many(self, entries: Iterable[tuple[str, np.ndarray]]) -> None:
        rows = [(key, np.asarray(vec, dtype=np.float32).tobytes()) for key, vec in entries]
        if not rows:
            return
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR REPLACE INTO embeddings (key, vector) VALUES (?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def __len__(self) -> int:
        return int(self._connect().execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
