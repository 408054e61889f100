"""Embedder: route a stream of mixed items to a provider, batch to its caps, run concurrently, keep order.

Data flows one way: caller objects → :func:`mmembed.inputs.to_item` → (cache, de-duplication) → open
batches per route → image preparation on a CPU pool → requests on a network pool → vectors written
back **by index**. At most ``max_concurrency + 1`` batches of one call are outstanding at a time, so a
stream of any length is embedded in bounded memory, and image decoding overlaps with network waits.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import pathlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from . import fallbacks
from .cache import EmbeddingCache, open_cache
from .cpus import cpu_share
from .errors import ConfigurationError, EmbeddingError, InputError
from .fallbacks import Segment
from .inputs import ImageItem, ImageSource, Interleaved, InterleavedItem, Item, MediaSource, TextItem, to_item
from .options import COMMON_OPTIONS, option_specs, options_for
from .providers import PROVIDERS, Provider, ProviderOptions, Ready, Task
from .transport import TransportSnapshot

__all__ = ["Embedder", "provider_class"]

Progress = Callable[[int], None]
# A call of at most this many texts that fits one request runs on the caller's thread (see _Run.execute_inline).
INLINE_MAX = 64


@dataclass
class _Combo:
    """A caller item replaced by leaves (a named fallback): its vector is their weighted mean, re-normalised."""

    children: list[tuple[int | _Combo, float]]


@dataclass
class _Batch:
    """An open or in-flight request: items of one route, with their positions in the caller's input."""

    route: str
    indexes: list[int] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    prepared: list[Future[Ready] | None] = field(default_factory=list)


class Embedder:
    """Embed texts and images through any registered provider, as documents or as queries.

    >>> from mmembed.testing import Emulator
    >>> provider = next(iter(PROVIDERS))  # the first registered provider (any that needs no cloud project)
    >>> with Emulator() as emu:  # an offline stand-in for every registered provider's API
    ...     embedder = Embedder(provider, base_url=emu.url, api_key="test-key")
    ...     vectors = embedder.embed(["a red square", "the blue sea"])
    ...     vectors.shape == (2, embedder.dimensions)
    True

    Options (:class:`mmembed.options.EmbedderOptions`, declared once for every adapter): ``model`` (or the model
    roles a provider declares instead, e.g. ``text_model`` + ``vision_model``); ``dimensions`` (every modality);
    ``api_key`` (never stored anywhere but memory) or ``api_key_env_var``; ``base_url`` (replaces scheme and host
    only); ``timeout`` (seconds an attempt may take in all) and ``max_retries``; ``max_concurrency`` and
    ``requests_per_minute`` (defaults follow each provider's documented limits) or a shared ``rate_limiter`` (any
    object with ``acquire() -> float`` and ``pause(seconds)``); ``cache`` (a path to a SQLite file, or any
    :class:`mmembed.cache.VectorCache`: re-runs send nothing); ``allow_private_urls`` (let client-side downloads
    reach loopback/private hosts); ``image_side`` (override the upload size); a provider's own options (e.g. a
    cloud project, location and credentials; :func:`mmembed.options.options_for` lists them); ``media_limits``
    (:class:`~mmembed.MediaLimits`: caps and settings for PDFs, video and audio). ``None`` means "not given".
    An Embedder pickles as its key-free :meth:`config`.

    Items are texts, images, PDFs, videos, audio and :class:`~mmembed.Interleaved` groups; what a model
    cannot take natively goes through a named fallback (:mod:`mmembed.fallbacks`), so ``embed`` always
    gives one row per item. :meth:`expand` splits items into pages and segments first, when you want
    one vector per page or per video segment.
    """

    def __init__(self, provider: str, **options: Any) -> None:
        cls = provider_class(provider)
        given: dict[str, Any] = {key: value for key, value in options.items() if value is not None}
        _check_options(cls, given)
        self._options = given
        common = {key: given[key] for key in ProviderOptions.__dataclass_fields__ if key in given}
        own = {key: given[key] for key in cls.option_names if key in given}
        self.provider: Provider = cls(ProviderOptions(**common), **own)
        self.cache = open_cache(given.get("cache"))
        self._pools_lock = threading.Lock()
        self._send_pool: ThreadPoolExecutor | None = None
        self._prep_pool: ThreadPoolExecutor | None = None

    def __reduce__(self) -> tuple[Any, tuple[str, dict[str, Any]]]:
        """Pickle as a config that rebuilds everything: no key, no credentials, no threads or connections.

        The rebuilt Embedder reads its key from the environment variable in use here (``api_key_env_var``),
        so a worker process needs that variable set (with Ray: ``runtime_env={"env_vars": {...}}``).
        """
        return (_rebuild, (self.provider.name, self.config()))

    def config(self) -> dict[str, Any]:
        """The options this Embedder was made with, without secrets (the key, credentials).

        ``Embedder(embedder.provider_name, **embedder.config())`` builds an equivalent Embedder whose key comes
        from the environment variable this one resolved.
        """
        specs = {spec.name: spec for spec in options_for(type(self.provider))}
        config = {key: value for key, value in self._options.items() if not specs[key].secret}
        config["api_key_env_var"] = self.provider.api_key_env_var
        if isinstance(self.cache, EmbeddingCache):
            config["cache"] = str(self.cache.path)
        return config

    def __repr__(self) -> str:
        return f"Embedder({self.provider!r}, cache={self.cache!r})"

    # -- public API ---------------------------------------------------------------------------------
    @property
    def provider_name(self) -> str:
        return self.provider.name

    @property
    def stats(self) -> TransportSnapshot:
        """Counters so far: requests sent, retries, 429s, seconds waited on the rate limiter, bytes sent."""
        return self.provider.transport.stats.snapshot()

    @property
    def dimensions(self) -> int | None:
        """The size of every vector (None until the first response for an unknown model)."""
        return self.provider.output_dimensions()

    def embed(self, items: Iterable[object], *, progress: Progress | None = None) -> np.ndarray:
        """Embed items as documents: a float32 array with one unit vector per item, in input order."""
        return self._run(items, "document", progress)

    def embed_query(self, items: Iterable[object], *, progress: Progress | None = None) -> np.ndarray:
        """Embed items as search queries (the provider's query task), in input order."""
        return self._run(items, "query", progress)

    def expand(self, items: Iterable[object]) -> list[Segment]:
        """Split items into the segments that each deserve a vector, with where they lie in their parent.

        A PDF gives one segment per page (``metadata={"page": n}``; on a model that reads only text and images,
        the rendered page plus its text passages, ``{"page": n, "passage": k}``); a video gives its segments (on
        a model with a fixed window per request: ``video_interval`` seconds each) or itself, with ``{"start": s,
        "end": e}`` seconds; other items give themselves. ``embed([s.item for s in segments])`` then embeds them,
        one row each::

            segments = embedder.expand([Path("report.pdf"), Path("talk.mp4"), "a note"])
            vectors = embedder.embed([s.item for s in segments])

        Raises :class:`~mmembed.InputError` (with ``.index``) for an item the model cannot embed.
        """
        if isinstance(items, (str, bytes, np.ndarray, Image.Image, os.PathLike, ImageSource, MediaSource, Interleaved)):
            raise TypeError("expand() takes a list (or any iterable) of items; wrap a single item in a list")
        out: list[Segment] = []
        for index, obj in enumerate(items):
            try:
                out.extend(fallbacks.segments(self.provider, to_item(obj), index))
            except InputError as err:
                raise err.at(index) from err.__cause__
        return out

    def embed_stream(
        self, items: Iterable[object], *, query: bool = False
    ) -> Iterator[tuple[int, np.ndarray | InputError]]:
        """Embed a stream of items, yielding ``(index, vector)`` as each request is answered.

        Results come in completion order, not input order (``index`` is the item's position in ``items``).
        Batches fill to the provider's caps and run concurrently, exactly as in :meth:`embed`, and at most
        ``max_concurrency + 1`` batches are outstanding, so memory stays bounded however long the stream. An
        item that cannot be embedded yields ``(index, InputError)`` and the others go on; a failure of the
        provider itself (after its retries) raises. With ``cache=``, every answer is stored as it arrives.
        ``query=True`` uses the provider's query task.

        >>> from mmembed.testing import Emulator
        >>> with Emulator() as emu:
        ...     embedder = Embedder(next(iter(PROVIDERS)), base_url=emu.url, api_key="test-key")
        ...     sorted((i, type(v).__name__) for i, v in embedder.embed_stream(["a text", b"not an image"]))
        [(0, 'ndarray'), (1, 'InputError')]
        """
        if isinstance(items, (str, bytes, np.ndarray, Image.Image, os.PathLike, ImageSource, MediaSource, Interleaved)):
            raise TypeError("embed_stream() takes an iterable of items; wrap a single item in a list")
        return _Run(self, "query" if query else "document", None, stream=True).stream(items)

    async def aembed(self, items: Iterable[object]) -> np.ndarray:
        """:meth:`embed` without blocking the event loop (in-flight requests stay within the bound)."""
        return await asyncio.to_thread(self._run, list(items), "document", None)

    async def aembed_query(self, items: Iterable[object]) -> np.ndarray:
        """:meth:`embed_query` without blocking the event loop."""
        return await asyncio.to_thread(self._run, list(items), "query", None)

    def cache_key(self, item: Item, task: Task) -> str:
        """The content-addressed key of ``item``: provider, model, dimensions, task and content.

        An image's key also holds the size it is shrunk to for upload: other pixels, another vector. The
        base URL is part of it too, so vectors from the emulator or a gateway never answer for the live API.
        """
        p = self.provider
        content = item.content_key(getattr(self.cache, "file_digest", None))
        parts = [p.name, p.base_url, p.model_for(item), str(p.dimensions), p.task_key(item, task), content]
        if isinstance(item, (ImageItem, InterleavedItem)):
            parts.append(f"side={p.image_spec().min_side}")
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def close(self) -> None:
        """Stop the worker threads and close the provider's connections."""
        with self._pools_lock:
            for pool in (self._send_pool, self._prep_pool):
                if pool is not None:
                    pool.shutdown(wait=True)
            self._send_pool = self._prep_pool = None
        self.provider.close()

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pipeline -------------------------------------------------------------------------------
    def _pools(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        with self._pools_lock:
            if self._send_pool is None or self._prep_pool is None:
                self._send_pool = ThreadPoolExecutor(self.provider.concurrency, thread_name_prefix="mmembed-send")
                # One thread per CPU this process may use (a Ray actor's share, the affinity mask), not per
                # core of the node: 32 decoding threads in an actor given 1 CPU only fight each other.
                self._prep_pool = ThreadPoolExecutor(cpu_share(), thread_name_prefix="mmembed-prep")
            return self._send_pool, self._prep_pool

    def _run(self, items: Iterable[object], task: Task, progress: Progress | None) -> np.ndarray:
        if isinstance(items, (str, bytes, np.ndarray, Image.Image, os.PathLike, ImageSource, MediaSource, Interleaved)):
            raise TypeError("embed() takes a list (or any iterable) of items; wrap a single item in a list")
        run = _Run(self, task, progress)
        if isinstance(items, (list, tuple)) and len(items) <= INLINE_MAX:
            inline = run.execute_inline(items)
            if inline is not None:
                return inline
        return run.execute(items)


class _Run:
    """The state of one embed call."""

    def __init__(self, embedder: Embedder, task: Task, progress: Progress | None, *, stream: bool = False) -> None:
        self.embedder = embedder
        self.provider = embedder.provider
        self.cache = embedder.cache
        self.task = task
        self.progress = progress
        self.send_pool, self.prep_pool = embedder._pools()
        # Slots hold vectors: one per caller item, or one per leaf of an item replaced by a fallback. ``owner``
        # maps a slot to the caller's index (for errors); ``rows`` says how each caller row is made from slots.
        self.results: list[np.ndarray | None] = []
        self.owner: list[int] = []
        self.rows: list[int | _Combo] = []
        self.leaf_rows: dict[int, list[int]] = {}  # leaf slot → [leaves of its row still to come] (progress)
        self.rows_lock = threading.Lock()
        self.aliases: dict[int, int] = {}
        self.first_index: dict[str, int] = {}
        self.open: dict[str, _Batch] = {}
        self.in_flight: set[Future[None]] = set()
        self.window = threading.Semaphore(self.provider.concurrency + 1)
        # Caller images held in memory but not yet encoded: enough to keep every core busy, few enough to
        # bound memory. Paths take no slot (see _add).
        self.prep_slots = threading.Semaphore(2 * cpu_share())
        # Streaming (embed_stream): answers go to this queue as (indexes, vectors or errors), not to `results`,
        # and a bad item is reported on its own instead of failing its batch.
        self.streaming = stream
        self.answers: queue.SimpleQueue[list[tuple[int, np.ndarray | InputError]]] = queue.SimpleQueue()
        self.pending: dict[str, int] = {}  # streaming: key -> index of the item in flight with that content
        self.waiting: dict[int, list[int]] = {}  # streaming: that index -> later items with the same content

    def execute(self, items: Iterable[object]) -> np.ndarray:
        try:
            for index, obj in enumerate(items):
                self._admit_row(index, obj)
                self._raise_failures()
            for batch in list(self.open.values()):
                self._dispatch(batch)
            self.open.clear()
            self._drain()
        except BaseException:
            self._abort()
            raise
        return self._assemble()

    def stream(self, items: Iterable[object]) -> Iterator[tuple[int, np.ndarray | InputError]]:
        """The pipeline of :meth:`execute`, yielding answers as they come (see :meth:`Embedder.embed_stream`)."""
        try:
            for index, obj in enumerate(items):
                self._admit_streamed(index, obj)
                yield from self._answered()
                self._raise_failures()
            for batch in list(self.open.values()):
                self._dispatch(batch)
            self.open.clear()
            while self.in_flight:
                done, _ = wait(self.in_flight, return_when=FIRST_COMPLETED)
                self.in_flight -= done
                for future in done:
                    future.result()
                yield from self._answered()
            yield from self._answered()
        except BaseException:  # an error, or the caller stopped reading (GeneratorExit)
            self._abort()
            raise

    def _admit_streamed(self, index: int, obj: object) -> None:
        try:
            item = to_item(obj)
            if fallbacks.plan(self.provider, item) is not None:
                # A fallback (a whole PDF on a text+image model, an Interleaved to average): its leaves are
                # embedded together by a call of their own, and the item is answered in place. Expanded items
                # (Embedder.expand, as the CLI streams them) never take this path.
                self.answers.put([(index, self.embedder._run([item], self.task, None)[0])])
                return
            key = self.embedder.cache_key(item, self.task)
        except InputError as err:
            self.answers.put([(index, err.at(index))])
            return
        first = self.pending.get(key)
        if first is not None:  # the same content is in flight: answer both with one vector
            self.waiting.setdefault(first, []).append(index)
            return
        hit = self.cache.get_many([key]).get(key) if self.cache is not None else None
        if hit is not None:
            self.answers.put([(index, hit)])
            return
        self.pending[key] = index
        self._add(index, item, key)

    def _answered(self) -> Iterator[tuple[int, np.ndarray | InputError]]:
        """What workers have answered so far (and the duplicates waiting for it), without blocking."""
        while True:
            try:
                answers = self.answers.get_nowait()
            except queue.Empty:
                return
            for index, value in answers:
                yield index, value
                for twin in self.waiting.pop(index, ()):
                    yield twin, value.at(twin) if isinstance(value, InputError) else value

    def _send_streamed(self, batch: _Batch) -> None:
        """Send the items of ``batch`` that could be prepared; report the others one by one."""
        ready: list[Ready] = []
        good: list[int] = []
        answers: list[tuple[int, np.ndarray | InputError]] = []
        for i in range(len(batch.items)):
            try:
                ready.append(self._ready(batch, i))
                good.append(i)
            except InputError as err:
                answers.append((batch.indexes[i], err))
        batch.prepared.clear()
        if ready:
            vectors = self.provider.send(batch.route, ready, self.task)
            if self.cache is not None:
                self.cache.put_many(zip((batch.keys[i] for i in good), vectors, strict=True))
            answers += [(batch.indexes[i], vector) for i, vector in zip(good, vectors, strict=True)]
        for i in range(len(batch.items)):
            self.pending.pop(batch.keys[i], None)
        self.answers.put(answers)

    def execute_inline(self, items: Sequence[object]) -> np.ndarray | None:
        """A small all-text call whose misses fit one request: sent on the caller's thread, no pool hops.

        A query is usually one text: handing it to a worker thread and back costs more than the rest of the
        client's work. Cache, de-duplication, order, retries and errors are exactly the pipeline's (it is the
        same ``_send``). Returns None, having sent nothing, when the call needs the pipeline (images, more
        than one request, an item that is not valid).
        """
        try:
            converted = [to_item(obj) for obj in items]
        except InputError:
            return None  # the pipeline raises it, placed at its index
        if not all(isinstance(item, TextItem) for item in converted):
            return None
        keys = [self.embedder.cache_key(item, self.task) for item in converted]
        hits = self.cache.get_many(list(dict.fromkeys(keys))) if self.cache is not None else {}
        batch: _Batch | None = None
        first: dict[str, int] = {}
        for index, (item, key) in enumerate(zip(converted, keys, strict=True)):
            if key in first or key in hits:
                first.setdefault(key, index)
                continue
            first[key] = index
            route = self.provider.route(item)
            if batch is None:
                batch = _Batch(route)
            elif batch.route != route or not self.provider.fits(batch.items, item, route):
                return None
            batch.indexes.append(index)
            batch.keys.append(key)
            batch.items.append(item)
            batch.prepared.append(None)
        self.results = [hits.get(key) for key in keys]
        self.owner = list(range(len(keys)))
        self.rows = list(range(len(keys)))
        self.aliases = {i: first[key] for i, key in enumerate(keys) if first[key] != i}
        self._tick(len(keys) - (len(batch.items) if batch is not None else 0))
        if batch is not None:
            self._send(batch)
        return self._assemble()

    def _admit_row(self, index: int, obj: object) -> None:
        """Admit caller item ``index``: as it is, or as the leaves of its fallback (see :mod:`mmembed.fallbacks`)."""
        try:
            item = to_item(obj)
            leaves = fallbacks.plan(self.provider, item)
        except InputError as err:
            raise err.at(index) from err.__cause__
        if leaves is None:
            self.rows.append(self._admit(index, item))
            return
        counter = [1]  # its leaves still unanswered, plus one until all are admitted
        self.rows.append(self._combo(index, leaves, counter))
        with self.rows_lock:
            counter[0] -= 1
            done = counter[0] == 0
        if done:
            self._tick(1)

    def _combo(self, index: int, leaves: list[tuple[Item, float]], counter: list[int]) -> _Combo:
        children: list[tuple[int | _Combo, float]] = []
        for leaf, weight in leaves:
            try:
                sub = fallbacks.plan(self.provider, leaf)
            except InputError as err:
                raise err.at(index, err.source or leaf.source) from err.__cause__
            if sub is not None:
                children.append((self._combo(index, sub, counter), weight))
            else:
                children.append((self._admit(index, leaf, counter), weight))
        return _Combo(children)

    def _admit(self, index: int, item: Item, counter: list[int] | None = None) -> int:
        """Give ``item`` a slot and send it, or take it from the cache or an earlier duplicate; returns the slot.

        ``counter`` is the pending-leaf count of the caller row a fallback leaf belongs to (None: its own row).
        """
        slot = len(self.results)
        self.results.append(None)
        self.owner.append(index)
        try:
            key = self.embedder.cache_key(item, self.task)
        except InputError as err:
            raise err.at(index) from err.__cause__
        if key in self.first_index:  # the same content twice in one call: embed once
            self.aliases[slot] = self.first_index[key]
            self._tick(counter is None)
            return slot
        if self.cache is not None:
            hit = self.cache.get_many([key]).get(key)
            if hit is not None:
                self.results[slot] = hit
                self.first_index[key] = slot
                self._tick(counter is None)
                return slot
        self.first_index[key] = slot
        if counter is not None:
            with self.rows_lock:
                counter[0] += 1
                self.leaf_rows[slot] = counter
        self._add(slot, item, key)
        return slot

    def _add(self, index: int, item: Item, key: str) -> None:
        route = self.provider.route(item)
        batch = self.open.get(route)
        if batch is not None and not self.provider.fits(batch.items, item, route):
            self._dispatch(self.open.pop(route))
            batch = None
        if batch is None:
            batch = self.open[route] = _Batch(route)
        batch.indexes.append(index)
        batch.keys.append(key)
        if isinstance(item, ImageItem) and item.raw is not None:
            # Decode on the CPU pool now; the batch keeps only a pixel-less stand-in, so a caller's big
            # in-memory image is released as soon as it is encoded. A path holds no pixels until a worker
            # reads it, so it takes no slot: reading the input never waits for decoding, and the items after
            # a run of photos (texts for another endpoint) are sent while the photos are still being shrunk.
            # The queue stays bounded by the batch window.
            holds_pixels = not isinstance(item.raw, pathlib.Path)
            if holds_pixels:
                self.prep_slots.acquire()
            future = self.prep_pool.submit(self._prepare, item, holds_pixels)
            batch.items.append(ImageItem(source=item.source))
            batch.prepared.append(future)
        else:
            batch.items.append(item)
            batch.prepared.append(None)
        if len(batch.items) >= self.provider.cap(route):
            self._dispatch(self.open.pop(route))

    def _prepare(self, item: Item, holds_slot: bool) -> Ready:
        try:
            return self.provider.prepare(item)
        finally:
            if holds_slot:
                self.prep_slots.release()

    def _dispatch(self, batch: _Batch) -> None:
        """Close ``batch``; its request goes to the network pool as soon as its images are prepared.

        A sender never waits for CPU work: all ``max_concurrency`` senders talk to the provider, and requests
        that follow one another reuse one idle thread instead of parking a thread per batch (every thread's
        allocator keeps its own high-water mark of request and response bodies).
        """
        self.window.acquire()
        outcome: Future[None] = Future()
        outcome.add_done_callback(lambda _f: self.window.release())
        outcome.add_done_callback(lambda _f: _cancel_preparation(batch))  # failed or cancelled: the rest is moot
        self.in_flight.add(outcome)
        preparing = [f for f in batch.prepared if f is not None]
        if not preparing:
            self._submit(batch, outcome)
            return
        remaining, submitted, lock = [len(preparing)], [False], threading.Lock()

        def prepared(future: Future[Ready]) -> None:
            # Report a bad image early; when streaming, the batch goes without it, once the rest is ready.
            failed = not self.streaming and not future.cancelled() and future.exception() is not None
            with lock:
                remaining[0] -= 1
                go = not submitted[0] and (remaining[0] == 0 or failed)
                submitted[0] = submitted[0] or go
            if go:
                self._submit(batch, outcome)

        for future in preparing:
            future.add_done_callback(prepared)

    def _submit(self, batch: _Batch, outcome: Future[None]) -> None:
        if not outcome.set_running_or_notify_cancel():
            return  # cancelled after an error, and its preparations with it
        try:
            sent = self.send_pool.submit(self._send, batch)
        except BaseException as exc:  # e.g. the embedder was closed meanwhile: never leave `outcome` pending
            outcome.set_exception(exc)
            return
        sent.add_done_callback(functools.partial(_settle, outcome))

    def _send(self, batch: _Batch) -> None:
        if self.streaming:
            self._send_streamed(batch)
            return
        ready = [self._ready(batch, i) for i in range(len(batch.items))]
        # The request holds the encoded images now; the batch, which outlives it (in_flight), drops them.
        batch.prepared.clear()
        vectors = self.provider.send(batch.route, ready, self.task)
        for index, vector in zip(batch.indexes, vectors, strict=True):
            self.results[index] = vector
        if self.cache is not None:
            self.cache.put_many(zip(batch.keys, vectors, strict=True))
        self._tick_slots(batch.indexes)

    def _ready(self, batch: _Batch, i: int) -> Ready:
        item = batch.items[i]
        future = batch.prepared[i]
        try:
            return future.result() if future is not None else self.provider.prepare(item)
        except InputError as err:
            slot = batch.indexes[i]
            raise err.at(self.owner[slot] if self.owner else slot, item.source) from err.__cause__

    def _raise_failures(self) -> None:
        done = {f for f in self.in_flight if f.done()}
        self.in_flight -= done
        for future in done:
            future.result()  # re-raises the worker's error in the caller's thread

    def _drain(self) -> None:
        while self.in_flight:
            done, _ = wait(self.in_flight, return_when=FIRST_EXCEPTION)
            self.in_flight -= done
            for future in done:
                future.result()

    def _abort(self) -> None:
        """After an error: cancel what has not started; let running requests finish (and fill the cache)."""
        for batch in self.open.values():
            _cancel_preparation(batch)
        for future in self.in_flight:  # a batch whose request never started cancels its images too
            future.cancel()
        wait(self.in_flight)

    def _tick(self, count: int) -> None:
        if self.progress is not None and count:
            self.progress(count)

    def _tick_slots(self, slots: list[int]) -> None:
        """Progress counts caller rows: a leaf's row is done when its last leaf is answered."""
        done = 0
        with self.rows_lock:
            for slot in slots:
                counter = self.leaf_rows.pop(slot, None)
                if counter is None:
                    done += 1
                    continue
                counter[0] -= 1
                done += counter[0] == 0
        self._tick(done)

    def _assemble(self) -> np.ndarray:
        for index, first in self.aliases.items():
            self.results[index] = self.results[first]
        missing = sum(v is None for v in self.results)
        if missing:  # never hand back a shifted or partial result
            raise EmbeddingError(f"{missing} items got no vector")
        vectors = [self._row(row) for row in self.rows]
        if not vectors:
            return np.zeros((0, self.embedder.dimensions or 0), dtype=np.float32)
        sizes = {v.shape[0] for v in vectors}
        if len(sizes) > 1:
            raise EmbeddingError(f"vectors of mixed sizes {sorted(sizes)} (a changed cache or model?)")
        return np.stack(vectors).astype(np.float32, copy=False)


    def _row(self, row: int | _Combo) -> np.ndarray:
        if isinstance(row, int):
            found = self.results[row]
            if found is None:
                raise EmbeddingError("an item got no vector")
            return found
        parts = [(self._row(child), weight) for child, weight in row.children]
        sizes = {v.shape[0] for v, _ in parts}
        if len(sizes) > 1:
            raise EmbeddingError(f"the parts of one item got vectors of mixed sizes {sorted(sizes)}")
        combined: np.ndarray = fallbacks.combine(parts)
        return combined


def _settle(outcome: Future[None], sent: Future[None]) -> None:
    """Give ``outcome`` the result of the request it stands for (nothing cancels a submitted request)."""
    error = sent.exception()
    if error is None:
        outcome.set_result(None)
    else:
        outcome.set_exception(error)


def _cancel_preparation(batch: _Batch) -> None:
    """Cancel the image preparations a batch still waits for (running ones finish; a sent batch has none)."""
    for prepared in batch.prepared:
        if prepared is not None:
            prepared.cancel()


def provider_class(name: str) -> type[Provider]:
    """The registered provider class called ``name`` (case-insensitive)."""
    key = name.lower().strip() if isinstance(name, str) else name
    if key not in PROVIDERS:
        raise ConfigurationError(f"unknown provider {name!r}; choose one of {sorted(PROVIDERS)}")
    return PROVIDERS[key]


def _check_options(cls: type[Provider], given: dict[str, Any]) -> None:
    """Refuse options that do not exist, or that this provider does not take."""
    for key in given:
        if key in COMMON_OPTIONS or key in cls.option_names:
            continue
        if key not in option_specs():
            raise TypeError(f"Embedder() got an unexpected keyword argument {key!r}")
        takes = [spec.name for spec in cls.own_option_specs() if not spec.secret]
        raise ConfigurationError(
            f"{cls.name} does not take {key}=; its own options are " + (", ".join(f"{n}=" for n in takes) or "none")
        )


def _rebuild(provider: str, config: dict[str, Any]) -> Embedder:
    return Embedder(provider, **config)
