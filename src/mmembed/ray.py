"""Bulk ingest on Ray Data: N workers on one API key, within its limit (``pip install "mmembed[ray]"``).

::

    limit = RateLimit(provider, requests_per_minute=600)         # one actor for the key, shared by every worker
    ds = ray.data.read_parquet("s3://bucket/items/")             # columns: id, text, image (bytes, path or URL)
    out = embed_dataset(ds, provider, text_column="text", image_column="image", rate_limit=limit, concurrency=8)
    out.write_datasink(ChromaDatasink(collection="media", host="chroma.internal", port=8000))

- :class:`RateLimit` is one Ray actor holding the schedule of one API key. Every worker's Embedder takes
  its send slots from it, so N workers together send at the key's limit, not N times it; a 429's
  ``Retry-After`` pauses all of them. Each process leases slots a few at a time (see :class:`RateLimit`).
- :func:`embed_dataset` is a thin layer over ``Dataset.map_batches`` with :class:`EmbedBatches`, a callable
  class you can use in your own pipeline. A row that cannot be embedded comes back with ``embedding = None``
  and an ``error`` saying why, instead of failing the job.
- :class:`ChromaDatasink` writes embedded rows to a Chroma server; :func:`content_ids` and
  :func:`filter_new` make the destination the cache (content-hash ids, filtered before the embed stage).

The Embedder in each worker is rebuilt from a key-free config: the key comes from the worker's
environment, e.g. ``ray.init(runtime_env={"env_vars": {"NOMIC_API_KEY": key}})``.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import ray
from ray.data import Dataset
from ray.data.datasource import Datasink

from .cache import VectorCache, open_cache
from .embedder import Embedder, provider_class
from .errors import (
    AuthenticationError,
    ConfigurationError,
    EmbeddingError,
    InputError,
    InvalidResponseError,
    ProviderError,
)
from .inputs import ImageSource, to_item
from .ratelimit import RateLimiter

__all__ = [
    "ChromaDatasink",
    "EmbedBatches",
    "RateLimit",
    "SlotSchedule",
    "close_client",
    "content_ids",
    "embed_dataset",
    "filter_new",
]

NAMESPACE = "mmembed"


# -- the shared limiter ---------------------------------------------------------------------------------
class SlotSchedule:
    """The send slots of one API key: a :class:`~mmembed.ratelimit.RateLimiter` (the client's own) booking ahead.

    Slots follow the provider's declared limit, ``per_minute`` (less ``headroom``) over its ``window``, paced
    ``interval`` seconds apart with ``burst`` at once after an idle spell. A slot is an offset from *now* (the
    holder adds it to its own clock, so nodes need no common clock). :meth:`pause` holds back every future slot
    and starts a new ``epoch``: slots granted before it are void.
    """

    def __init__(
        self, per_minute: float | None, *, burst: int = 1, headroom: float = 0.0, window: float = 60.0
    ) -> None:
        if per_minute is not None and per_minute <= 0:
            raise ConfigurationError(f"requests_per_minute must be positive, got {per_minute}")
        if not 0.0 <= headroom < 1.0:
            raise ConfigurationError(f"headroom must be in [0, 1), got {headroom}")
        rate = per_minute * (1.0 - headroom) if per_minute else None
        self.interval = 60.0 / rate if rate else 0.0
        self.burst = max(1, burst)
        self.limiter = RateLimiter(rate, window=window, burst=self.burst)
        self.epoch = 0
        self.granted = 0
        self.pauses = 0

    def settings(self) -> tuple[float, int]:
        return self.interval, self.burst

    def reserve(self, count: int, horizon: float) -> tuple[int, list[float]]:
        """Up to ``count`` slots (at least one), those after the first only within ``horizon`` seconds."""
        offsets = self.limiter.book(count, horizon)
        self.granted += len(offsets)
        return self.epoch, offsets

    def renew(self, epoch: int) -> tuple[int, list[float]] | None:
        """None if no pause came since ``epoch`` (the holder's slot stands), else one new slot."""
        return None if epoch == self.epoch else self.reserve(1, 0.0)

    def pause(self, seconds: float) -> None:
        """Hold every holder back for ``seconds`` (after a 429), never shortening a longer pause."""
        self.limiter.pause(seconds)
        self.epoch += 1
        self.pauses += 1

    def counts(self) -> dict[str, int]:
        return {"granted": self.granted, "pauses": self.pauses, "epoch": self.epoch}


_ScheduleActor = ray.remote(num_cpus=0, max_restarts=-1)(SlotSchedule)


class RateLimit:
    """The rate limit of one API key, shared by every worker of a Ray job: ``Embedder(rate_limiter=...)``.

    The schedule lives in one named Ray actor (``name``, default ``mmembed-rate-limit-<provider>``, in the
    ``mmembed`` namespace, found with ``get_if_exists``: every ``RateLimit`` of that name, in any process,
    is the same limiter). It sends at ``requests_per_minute`` (default: the provider's documented limit) less
    ``headroom`` (5 %), counted over the provider's declared window (``rate_window``) and evenly spaced
    (``burst=1``), by the same :class:`~mmembed.ratelimit.RateLimiter` an Embedder uses on its own. The
    headroom is there because processes and networks jitter: on a busy 2-core machine requests sent 102 ms
    apart arrived 60-150 ms apart, and a server counting a strict one-second window sees 11 where 10 were
    meant. ``headroom=0`` runs exactly at the limit. Use one name per API key.

    An actor call costs about a millisecond, so each process leases slots ``lease_seconds`` ahead (at least
    one; at 10 req/s that is one slot per call, at 1,000 req/s fifty) and a slot falls due without another
    call. A slot reserved further ahead than that is confirmed when it falls due, so a 429's pause (sent to
    the actor by the Transport) holds back every worker, not only the one that met it; only slots already
    leased (at most ``lease_seconds`` of traffic per process) still go out. Unused leased slots
    lapse unused: the global rate is never exceeded. Pickles as its settings; each process attaches to the
    actor by name.
    """

    def __init__(
        self,
        provider: str,
        requests_per_minute: float | None = None,
        name: str | None = None,
        *,
        burst: int = 1,
        headroom: float = 0.05,
        lease_seconds: float = 0.05,
        namespace: str = NAMESPACE,
    ) -> None:
        cls = provider_class(provider)
        self.provider = cls.name
        self.requests_per_minute = requests_per_minute or cls.default_requests_per_minute
        self.name = name or f"mmembed-rate-limit-{cls.name}"
        self.namespace = namespace
        self.burst, self.headroom, self.lease_seconds = burst, headroom, lease_seconds
        self.window = cls.rate_window
        # Checked here, in the caller's process, rather than in the actor:
        schedule = SlotSchedule(self.requests_per_minute, burst=burst, headroom=headroom)
        self.interval = schedule.interval
        self._lock = threading.Lock()
        self._slots: collections.deque[tuple[float, int, bool]] = collections.deque()  # (due, epoch, far)
        self._actor: Any = None
        self._check_settings(self._handle())

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_attach, (self.provider, self.requests_per_minute, self.name, self.burst, self.headroom,
                          self.lease_seconds, self.namespace))

    def __repr__(self) -> str:
        return f"RateLimit({self.provider!r}, requests_per_minute={self.requests_per_minute}, name={self.name!r})"

    # -- the Limiter protocol (called by the Transport from its send threads) ---------------------------
    def acquire(self) -> float:
        """Block until this process may send one request; returns the seconds waited."""
        started = time.monotonic()
        due, epoch, far = self._take()
        while True:
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if not far:
                return time.monotonic() - started
            renewed = ray.get(self._handle().renew.remote(epoch))  # a pause may have come meanwhile
            if renewed is None:
                return time.monotonic() - started
            due, epoch, far = self._slot(*renewed, received=time.monotonic())[0]

    def pause(self, seconds: float) -> None:
        """Pause every worker for ``seconds`` (the Transport calls this on a 429)."""
        with self._lock:
            self._slots.clear()
        ray.get(self._handle().pause.remote(seconds))

    # -- introspection --------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """The actor's counters: slots granted, pauses."""
        result: dict[str, int] = ray.get(self._handle().counts.remote())
        return result

    def acquire_cost(self, calls: int = 100) -> float:
        """Seconds one round trip to the actor takes from this process (the cost leasing hides)."""
        handle = self._handle()
        ray.get(handle.settings.remote())
        started = time.perf_counter()
        for _ in range(calls):
            ray.get(handle.settings.remote())
        return (time.perf_counter() - started) / calls

    # -- inside ---------------------------------------------------------------------------------------
    def _take(self) -> tuple[float, int, bool]:
        with self._lock:
            now = time.monotonic()
            grace = max(0.002, self.interval / 2)
            while self._slots and self._slots[0][0] < now - grace:
                self._slots.popleft()  # lapsed: sending it late could crowd the next holder's slot
            if not self._slots:
                count = math.ceil(self.lease_seconds / self.interval) if self.interval else 64
                epoch, offsets = ray.get(self._handle().reserve.remote(count, self.lease_seconds))
                self._slots.extend(self._slot(epoch, offsets, received=time.monotonic()))
            return self._slots.popleft()

    def _slot(self, epoch: int, offsets: list[float], *, received: float) -> list[tuple[float, int, bool]]:
        # The actor's "now" came before our `received`, so due >= the slot's true time: never early.
        return [(received + offset, epoch, offset > self.lease_seconds) for offset in offsets]

    def _handle(self) -> Any:
        if self._actor is None:
            self._actor = _ScheduleActor.options(
                name=self.name, namespace=self.namespace, get_if_exists=True
            ).remote(self.requests_per_minute, burst=self.burst, headroom=self.headroom, window=self.window)
        return self._actor

    def _check_settings(self, handle: Any) -> None:
        interval, burst = ray.get(handle.settings.remote())
        if not math.isclose(interval, self.interval) or burst != self.burst:
            raise ConfigurationError(
                f"a RateLimit named {self.name!r} already runs at another rate; give this key another name="
            )


def _attach(
    provider: str,
    requests_per_minute: float | None,
    name: str,
    burst: int,
    headroom: float,
    lease_seconds: float,
    namespace: str,
) -> RateLimit:
    limit = RateLimit.__new__(RateLimit)
    limit.provider, limit.requests_per_minute = provider, requests_per_minute
    limit.name, limit.namespace = name, namespace
    limit.burst, limit.headroom, limit.lease_seconds = burst, headroom, lease_seconds
    limit.window = provider_class(provider).rate_window
    limit.interval = SlotSchedule(requests_per_minute, burst=burst, headroom=headroom).interval
    limit._lock = threading.Lock()
    limit._slots = collections.deque()
    limit._actor = None  # looked up by name on first use
    return limit


# -- embedding a dataset --------------------------------------------------------------------------------
class _BatchMemory:
    """A per-batch memory in front of the user's cache: re-embedding a batch after a bad row pays nothing twice."""

    def __init__(self, inner: VectorCache | None) -> None:
        self.inner = inner
        self.vectors: dict[str, np.ndarray] = {}

    def __reduce__(self) -> tuple[Any, tuple[VectorCache | None]]:
        return (_BatchMemory, (self.inner,))

    def get_many(self, keys: Sequence[str]) -> Mapping[str, np.ndarray]:
        found = {key: self.vectors[key] for key in keys if key in self.vectors}
        missing = [key for key in keys if key not in found]
        if missing and self.inner is not None:
            found.update(self.inner.get_many(missing))
        return found

    def put_many(self, entries: Iterable[tuple[str, np.ndarray]]) -> None:
        entries = list(entries)
        self.vectors.update(entries)
        if self.inner is not None:
            self.inner.put_many(entries)

    def file_digest(self, path: Any, compute: Any) -> str:
        memo = getattr(self.inner, "file_digest", None)
        return str(memo(path, compute) if memo is not None else compute())


class EmbedBatches:
    """A callable class for ``Dataset.map_batches(..., batch_format="pyarrow")``: adds an embedding per row.

    Each row is a text (``text_column``) or an image (``image_column``: bytes, a local path or an http(s)
    URL; gs:// for an API that reads it). The batch comes back with every input column plus ``embedding`` (float32 list,
    or null) and ``error`` (null, or why that row has no vector: ``"InputError: item 3 bytes (17 B): not an
    image"``). A bad row never fails the batch: the batch is embedded, a row an :class:`InputError` names is
    set aside and the rest embedded again; a 4xx the provider gives a whole batch is narrowed down by
    halving. Vectors already paid for are kept in a per-batch memory (and your ``cache``), so nothing is
    sent twice. Authentication and configuration errors do fail the job: every row would fail the same way.

    ``embedder`` holds :class:`mmembed.Embedder` options; ``rate_limit`` (a :class:`RateLimit`) is passed as
    its ``rate_limiter``. The key is read from the worker's environment.
    """

    def __init__(
        self,
        provider: str,
        *,
        text_column: str | None = None,
        image_column: str | None = None,
        rate_limit: RateLimit | None = None,
        embedder: Mapping[str, Any] | None = None,
        embedding_column: str = "embedding",
        error_column: str = "error",
        task: Literal["document", "query"] = "document",
    ) -> None:
        if text_column is None and image_column is None:
            raise ConfigurationError("EmbedBatches needs text_column=, image_column= or both")
        options = dict(embedder or {})
        if rate_limit is not None:
            options["rate_limiter"] = rate_limit
        self.memory = _BatchMemory(open_cache(options.pop("cache", None)))
        self.embedder = Embedder(provider, cache=self.memory, **options)
        self.text_column, self.image_column = text_column, image_column
        self.embedding_column, self.error_column = embedding_column, error_column
        self.task = task

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.num_rows
        texts = self._column(batch, self.text_column, rows)
        images = self._column(batch, self.image_column, rows)
        items: dict[int, object] = {}
        errors: list[str | None] = [None] * rows
        for i, (text, image) in enumerate(zip(texts, images, strict=True)):
            try:
                items[i] = _row_item(text, image)
            except InputError as err:
                errors[i] = _describe(err)
        vectors: list[np.ndarray | None] = [None] * rows
        try:
            self._embed(list(items), items, vectors, errors)
        finally:
            self.memory.vectors.clear()
        out = batch
        for name in (self.embedding_column, self.error_column):
            if name in out.column_names:
                out = out.drop_columns([name])
        out = out.append_column(self.embedding_column, pa.array(vectors, type=pa.list_(pa.float32())))
        return out.append_column(self.error_column, pa.array(errors, type=pa.string()))

    def _embed(
        self, rows: list[int], items: Mapping[int, object], vectors: list[np.ndarray | None], errors: list[str | None]
    ) -> None:
        pending = list(rows)
        while pending:
            try:
                run = self.embedder.embed_query if self.task == "query" else self.embedder.embed
                for row, vector in zip(pending, run([items[r] for r in pending]), strict=True):
                    vectors[row] = vector
                return
            except (AuthenticationError, ConfigurationError):
                raise  # every row would fail alike: stop the job
            except InputError as err:
                if err.index is None or not 0 <= err.index < len(pending):  # names no row: all share it
                    for row in pending:
                        errors[row] = _describe(err)
                    return
                errors[pending.pop(err.index)] = _describe(err)
            except ProviderError as err:
                if _narrowable(err) and len(pending) > 1:
                    half = len(pending) // 2
                    self._embed(pending[:half], items, vectors, errors)
                    self._embed(pending[half:], items, vectors, errors)
                    return
                for row in pending:
                    errors[row] = _describe(err)
                return
            except EmbeddingError as err:
                for row in pending:
                    errors[row] = _describe(err)
                return

    @staticmethod
    def _column(batch: pa.Table, name: str | None, rows: int) -> list[Any]:
        if name is None:
            return [None] * rows
        if name not in batch.column_names:
            raise ConfigurationError(f"the dataset has no column {name!r}; it has {batch.column_names}")
        values: list[Any] = batch.column(name).to_pylist()
        return values


def _row_item(text: object, image: object) -> object:
    if text is not None and image is not None:
        raise InputError("the row has both a text and an image; give each its own row")
    if text is not None:
        if not isinstance(text, str):
            raise InputError(f"text must be a string, not {type(text).__name__}")
        return text
    if image is None:
        raise InputError("the row has neither a text nor an image")
    if isinstance(image, str):
        return ImageSource(image)
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    raise InputError(f"an image must be bytes, a path or a URL, not {type(image).__name__}")


def _describe(err: EmbeddingError) -> str:
    return f"{type(err).__name__}: {err}"


def _narrowable(err: ProviderError) -> bool:
    """A 4xx (not auth, not 429) for the whole batch: some item in it is to blame, halving finds it."""
    return not isinstance(err, InvalidResponseError) and err.status is not None and 400 <= err.status < 500 and (
        err.status not in (408, 409, 429)
    )


def embed_dataset(
    ds: Dataset,
    provider: str,
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    rate_limit: RateLimit | float | Literal[False] | None = None,
    concurrency: int | tuple[int, int] = 1,
    batch_size: int = 256,
    embedder: Mapping[str, Any] | None = None,
    embedding_column: str = "embedding",
    error_column: str = "error",
    **map_batches_args: Any,
) -> Dataset:
    """``ds`` with ``embedding`` and ``error`` columns added (every input column kept), via :class:`EmbedBatches`.

    ``rate_limit``: a :class:`RateLimit`, a number of requests per minute, None (a shared RateLimit at the
    provider's documented limit, or ``embedder["requests_per_minute"]``), or False (each worker limits
    itself: N workers send N times the rate). ``concurrency`` is the number of embedding actors (Ray's
    ``map_batches`` argument); other keyword arguments (``num_cpus``, ``runtime_env``…) go to ``map_batches``.
    Without ``num_cpus``, each actor gets Ray's 1 CPU, or less on a cluster with fewer than ``2 * concurrency``
    CPUs (the actors then share half of them), so a small cluster never waits for CPUs it does not have.
    """
    cls = provider_class(provider)
    options = dict(embedder or {})
    limit: RateLimit | None
    if rate_limit is None:
        limit = RateLimit(cls.name, options.get("requests_per_minute"))
    elif rate_limit is False:
        limit = None
    elif isinstance(rate_limit, RateLimit):
        limit = rate_limit
    elif isinstance(rate_limit, (int, float)) and not isinstance(rate_limit, bool):
        limit = RateLimit(cls.name, float(rate_limit))
    else:
        raise TypeError(f"rate_limit= takes a RateLimit, a number, None or False, not {rate_limit!r}")
    if "num_cpus" not in map_batches_args and isinstance(concurrency, int):
        # Ray gives each actor 1 CPU: on a cluster smaller than the pool, actors would wait for CPUs forever
        # (or starve the read and write tasks). Give them half the cluster at most; the work is mostly waiting.
        total = float(ray.cluster_resources().get("CPU", 0))  # type: ignore[no-untyped-call]
        if total and concurrency > total / 2:
            map_batches_args["num_cpus"] = total / (2 * concurrency)
    result: Dataset = ds.map_batches(
        EmbedBatches,
        fn_constructor_args=(cls.name,),
        fn_constructor_kwargs={
            "text_column": text_column,
            "image_column": image_column,
            "rate_limit": limit,
            "embedder": options,
            "embedding_column": embedding_column,
            "error_column": error_column,
        },
        batch_format="pyarrow",
        batch_size=batch_size,
        concurrency=concurrency,
        **map_batches_args,
    )
    return result


# -- the destination is the cache -----------------------------------------------------------------------
def content_ids(
    ds: Dataset, *, text_column: str | None = None, image_column: str | None = None, id_column: str = "id"
) -> Dataset:
    """``ds`` with ``id_column`` set to a hash of each row's content (text, image bytes or file, or URL).

    With these ids the destination store is the cache: :func:`filter_new` drops what it already holds,
    before anything is embedded. A row that cannot be read gets a null id (and an error from the embed stage).
    """

    def add_ids(batch: pa.Table) -> pa.Table:
        rows = batch.num_rows
        texts = EmbedBatches._column(batch, text_column, rows)
        images = EmbedBatches._column(batch, image_column, rows)
        ids: list[str | None] = []
        for text, image in zip(texts, images, strict=True):
            try:
                key = to_item(_row_item(text, image))
                ids.append(hashlib.sha256(key.content_key().encode()).hexdigest()[:32])
            except InputError:
                ids.append(None)
        if id_column in batch.column_names:
            batch = batch.drop_columns([id_column])
        return batch.append_column(id_column, pa.array(ids, type=pa.string()))

    result: Dataset = ds.map_batches(add_ids, batch_format="pyarrow")
    return result


def filter_new(ds: Dataset, sink: ChromaDatasink, *, id_column: str | None = None) -> Dataset:
    """The rows of ``ds`` whose id the sink's collection does not hold yet (run it before the embed stage)."""
    column = id_column or sink.id_column

    def drop_stored(batch: pa.Table) -> pa.Table:
        ids = [str(value) for value in batch.column(column).to_pylist() if value is not None]
        stored: set[str] = set()
        if ids:
            with sink.connect() as collection:
                for start in range(0, len(ids), 1000):
                    stored.update(collection.get(ids=ids[start : start + 1000], include=[])["ids"])
        keep = [value is None or str(value) not in stored for value in batch.column(column).to_pylist()]
        return batch.filter(pa.array(keep, type=pa.bool_()))

    result: Dataset = ds.map_batches(drop_stored, batch_format="pyarrow")
    return result


# -- writing to Chroma ----------------------------------------------------------------------------------
class ChromaDatasink(Datasink[dict[str, int]]):
    """A Ray Data sink that writes embedded rows to a Chroma server: ``ds.write_datasink(sink)``.

    Each row's ``id_column`` becomes its id, ``embedding_column`` its vector, ``document_column`` its
    document, ``uri_column`` its URI and ``metadata_columns`` (null values left out) its metadata. Rows are
    upserted (a rerun rewrites, never duplicates) in batches of at most ``batch_size`` (default: the server's
    maximum). Rows without a vector (``embedding = None``, e.g. an image that could not be read) are skipped
    and counted: after the write, :attr:`written` and :attr:`skipped` hold the totals. ``host``, ``port``,
    ``ssl``, ``headers``, ``tenant`` and ``database`` are ``chromadb.HttpClient``'s; the collection is created
    if missing (with ``collection_metadata``, e.g. ``{"hnsw:space": "cosine"}``).
    """

    def __init__(
        self,
        collection: str,
        host: str = "localhost",
        port: int = 8000,
        *,
        ssl: bool = False,
        headers: Mapping[str, str] | None = None,
        tenant: str | None = None,
        database: str | None = None,
        id_column: str = "id",
        embedding_column: str = "embedding",
        document_column: str | None = None,
        uri_column: str | None = None,
        metadata_columns: Sequence[str] = (),
        batch_size: int | None = None,
        collection_metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.collection = collection
        self.host, self.port, self.ssl = host, port, ssl
        self.headers = dict(headers or {})
        self.tenant, self.database = tenant, database
        self.id_column, self.embedding_column = id_column, embedding_column
        self.document_column, self.uri_column = document_column, uri_column
        self.metadata_columns = tuple(metadata_columns)
        self.batch_size = batch_size
        self.collection_metadata = dict(collection_metadata) if collection_metadata else None
        self.written = 0
        self.skipped = 0

    def get_name(self) -> str:
        return f"Chroma({self.collection})"

    def client(self) -> Any:
        """A ``chromadb.HttpClient`` for the server (telemetry off); close it with :func:`close_client`."""
        import chromadb  # the chroma extra; imported where it is used (Ray workers import this module too)
        from chromadb.config import Settings

        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "ssl": self.ssl,
            "headers": self.headers,
            "settings": Settings(anonymized_telemetry=False),
        }
        if self.tenant is not None:
            kwargs["tenant"] = self.tenant
        if self.database is not None:
            kwargs["database"] = self.database
        return chromadb.HttpClient(**kwargs)

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """The destination collection (created if missing, with no embedding function: vectors come made)."""
        client = self.client()
        try:
            yield client.get_or_create_collection(
                self.collection, metadata=self.collection_metadata, embedding_function=None
            )
        finally:
            close_client(client)

    def write(self, blocks: Iterable[Any], ctx: Any) -> dict[str, int]:
        written = skipped = 0
        with self.connect() as collection:
            limit = self.batch_size or collection._client.get_max_batch_size()
            for block in blocks:
                table = block if isinstance(block, pa.Table) else pa.Table.from_pandas(block)
                for start in range(0, table.num_rows, limit):
                    done, left_out = self._write_rows(collection, table.slice(start, limit))
                    written += done
                    skipped += left_out
        return {"written": written, "skipped": skipped}

    def _write_rows(self, collection: Any, table: pa.Table) -> tuple[int, int]:
        rows = table.to_pylist()
        good = [row for row in rows if row.get(self.embedding_column) is not None]
        # Content-hash ids give equal rows one id, and Chroma refuses an upsert that names an id twice:
        # keep the last of each (their vectors are the same).
        good = list({str(row[self.id_column]): row for row in good}.values())
        if good:
            fields: dict[str, Any] = {
                "ids": [str(row[self.id_column]) for row in good],
                "embeddings": [np.asarray(row[self.embedding_column], dtype=np.float32) for row in good],
            }
            if self.document_column:
                fields["documents"] = [row.get(self.document_column) or "" for row in good]
            if self.uri_column:
                fields["uris"] = [row.get(self.uri_column) or "" for row in good]
            if self.metadata_columns:
                metadatas = [
                    {c: row[c] for c in self.metadata_columns if row.get(c) is not None} or None for row in good
                ]
                fields["metadatas"] = metadatas
            collection.upsert(**fields)
        return len(good), len(rows) - len(good)

    def on_write_complete(self, write_result: Any) -> None:
        returns = getattr(write_result, "write_returns", write_result) or []
        self.written = sum(r["written"] for r in returns)
        self.skipped = sum(r["skipped"] for r in returns)


def close_client(client: Any) -> None:
    """Close a Chroma HttpClient and its HTTP sessions (chromadb 1.5's ``close()`` leaves them open)."""
    client.close()
    for holder in (client, getattr(client, "_admin_client", None)):
        session = getattr(getattr(holder, "_server", None), "_session", None)
        if session is not None:
            session.close()
