"""A content-addressed embedding cache in SQLite, safe to share between threads and processes.

The key covers provider, model, dimensions, task, the item's content and, for images, the upload size
(see :meth:`mmembed.Embedder.cache_key`), so a changed setting never returns a stale vector. Vectors are
written as each request completes: a call that fails half-way keeps what it already paid for, and a
retry sends only the rest. A multi-vector (:meth:`mmembed.Embedder.embed_multi`) is stored with its shape.

The content of an image file is its SHA-256. So that a rerun over a folder of large photos need not read
them all again, the cache also remembers each file's digest with its size, inode and modification and
change times (as git's index does): a file whose stat data is unchanged is not read. A file changed in the
same timestamp tick as it was hashed could keep its stat data, so a digest taken less than
``RACY_SECONDS`` after the file's last change is never trusted; the file is simply hashed again.

:class:`VectorCache` is the protocol an Embedder's ``cache=`` takes: ``get_many`` and ``put_many``, plus an
optional ``file_digest`` memo. :class:`EmbeddingCache` implements it in one SQLite file per node; a shared
store (Redis, a key-value service) implements the two methods and plugs in the same way.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["EmbeddingCache", "VectorCache", "open_cache"]

SCHEMA = "CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vector BLOB NOT NULL)"
FILES_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, stat TEXT NOT NULL, digest TEXT NOT NULL, "
    "hashed_ns INTEGER NOT NULL)"
)
RACY_SECONDS = 2.0  # coarser than any file system's timestamp tick (FAT: 2 s)
# A multi-vector's blob starts with a NaN float32 (no vector ever holds one) and then its rows and width as two
# little-endian uint32s; a plain vector's blob is its float32 values alone, as ever, so old files stay readable.
_ROWS_MARK = b"\xff\xff\xc0\x7f"
_HEADER = struct.Struct("<4sII")


@runtime_checkable
class VectorCache(Protocol):
    """What ``Embedder(cache=...)`` needs from a cache: vectors by content-addressed key (hex strings).

    ``get_many`` answers the keys it holds and leaves out the rest; ``put_many`` stores vectors as each
    request completes (it may be called from several threads at once). An object may also offer
    ``file_digest(path, compute) -> str`` (see :meth:`EmbeddingCache.file_digest`) so unchanged image files
    are not read again; without it, files are hashed on each call. Used by a Ray job, the cache travels to
    the workers by pickle: pickle it as its address, not as its connections.
    """

    def get_many(self, keys: Sequence[str]) -> Mapping[str, np.ndarray]: ...

    def put_many(self, entries: Iterable[tuple[str, np.ndarray]]) -> None: ...


class EmbeddingCache:
    """Vectors by key in one SQLite file (WAL mode, so several processes may read and write it).

    One connection serves every thread, behind a lock: SQLite lets one writer in at a time anyway, and the
    cache's statements are short next to the requests they save. :meth:`close` (or leaving a ``with`` block)
    releases it, as :meth:`mmembed.Embedder.close` does; the next call opens it again. A cache that is never
    closed closes its connection when it is garbage-collected.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._finalizer: weakref.finalize[[], EmbeddingCache] | None = None
        with self._connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(SCHEMA)
            conn.execute(FILES_SCHEMA)

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.path)!r})"

    def __reduce__(self) -> tuple[type[EmbeddingCache], tuple[str]]:
        # A connection belongs to its process: a copy opens its own.
        return (EmbeddingCache, (str(self.path),))

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """The connection, opened on first use, held by this thread until the block ends."""
        with self._lock:
            if self._conn is None:
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=30000")
                self._conn, self._finalizer = conn, weakref.finalize(self, conn.close)
            yield self._conn

    def get(self, key: str) -> np.ndarray | None:
        with self._connection() as conn:
            row = conn.execute("SELECT vector FROM embeddings WHERE key = ?", (key,)).fetchone()
        return None if row is None else _decode(row[0])

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with self._connection() as conn:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for key, blob in conn.execute(f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", chunk):
                    out[key] = _decode(blob)
        return out

    def put_many(self, entries: Iterable[tuple[str, np.ndarray]]) -> None:
        rows = [(key, _encode(vec)) for key, vec in entries]
        if not rows:
            return
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO embeddings (key, vector) VALUES (?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def file_digest(self, path: Path, compute: Callable[[], str]) -> str:
        """``compute()`` (the digest of the file at ``path``), or the one remembered while its stat is unchanged."""
        key = str(path.absolute())
        before = os.stat(path)
        with self._connection() as conn:
            row = conn.execute("SELECT stat, digest, hashed_ns FROM files WHERE path = ?", (key,)).fetchone()
        if row is not None and row[0] == _stat_key(before) and _settled(before, row[2]):
            return str(row[1])
        hashed_ns = time.time_ns()
        digest = compute()  # outside the lock: other threads use the cache while a large file is read
        if _stat_key(os.stat(path)) == _stat_key(before):  # not written to while we read it
            with self._connection() as conn:
                conn.execute(
                    "INSERT OR REPLACE INTO files (path, stat, digest, hashed_ns) VALUES (?, ?, ?, ?)",
                    (key, _stat_key(before), digest, hashed_ns),
                )
        return digest

    def __len__(self) -> int:
        with self._connection() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()  # closes the connection, once
            self._conn = self._finalizer = None


def open_cache(cache: object) -> VectorCache | None:
    """The cache ``cache=`` names: None, a SQLite file's path, or any object with get_many and put_many."""
    if cache is None or isinstance(cache, VectorCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return EmbeddingCache(cache)
    raise TypeError(
        f"cache= takes a path or an object with get_many(keys) and put_many(entries), not {type(cache).__name__}"
    )


def _encode(vector: np.ndarray) -> bytes:
    """A vector's float32 bytes; a multi-vector's (2-D) behind a header that gives its shape."""
    array = np.ascontiguousarray(vector, dtype="<f4")
    if array.ndim == 1:
        return array.tobytes()
    if array.ndim != 2:
        raise ValueError(f"the cache stores vectors and multi-vectors, not {array.ndim}-d arrays")
    return _HEADER.pack(_ROWS_MARK, *array.shape) + array.tobytes()


def _decode(blob: bytes) -> np.ndarray:
    if blob[:4] == _ROWS_MARK and len(blob) >= _HEADER.size:
        shape: tuple[int, int] = _HEADER.unpack_from(blob)[1:]
        if len(blob) == _HEADER.size + 4 * shape[0] * shape[1]:
            values = np.frombuffer(blob, dtype="<f4", offset=_HEADER.size)
            return values.reshape(shape).astype(np.float32)
    flat: np.ndarray = np.frombuffer(blob, dtype=np.float32).copy()
    return flat


def _stat_key(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"


def _settled(st: os.stat_result, hashed_ns: int) -> bool:
    """Was the file last changed well before it was hashed? (Else a same-tick change could hide.)"""
    last_change = max(st.st_mtime_ns, st.st_ctime_ns)
    return last_change < hashed_ns - int(RACY_SECONDS * 1e9)
