"""The pipeline behind :meth:`Embedder.embed` and :meth:`Embedder.embed_stream`: four parts, one path.

::

    items ─▶ collector.admit ─▶ Batcher ─▶ Scheduler ─▶ Run.send ─▶ collector.take
             (item, fallback   (open batch  (≤ concurrency+1 (prepare,   (by index into an array,
              leaves, cache,    per route,   batches out;     provider.   or answers into a stream)
              de-duplication)   to the caps) images prepared  send, cache)
                                             on the CPU pool)

Every call, inline, streamed or into an array, takes this path. A small call whose misses make one all-text
request is sent on the caller's thread: the scheduler *holds* its batches until the items are in and then
chooses (:meth:`Scheduler.release`), because handing one query to a worker thread and back costs more than the
rest of the client's work. At most ``concurrency + 1`` batches of a call are outstanding at a time, so a
stream of any length is embedded in bounded memory, and image decoding overlaps with network waits.
Multi-vectors (:meth:`Embedder.embed_multi`) take the same path: an array collector with ``multi`` set has its own
cache keys and makes :meth:`Run.send` ask the provider's ``send_multi``; batches, windows and retries are shared.
"""

from __future__ import annotations

import functools
import pathlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from . import fallbacks
from .cpus import cpu_share
from .errors import ConfigurationError, EmbeddingError, InputError
from .inputs import ImageItem, Item, to_item
from .providers import Provider, Ready, Task

if TYPE_CHECKING:
    from .embedder import Embedder

Progress = Callable[[int], None]
Answer = tuple[int, "np.ndarray | InputError"]
Adder = Callable[[int, Item, str], None]  # Batcher.add: (slot, item, cache key)
# A call of at most this many items may be sent on the caller's thread (see Scheduler.release).
INLINE_MAX = 64


@dataclass
class Combo:
    """A caller item replaced by leaves (a named fallback): its vector is their weighted mean, re-normalised."""

    children: list[tuple[int | Combo, float]]


@dataclass
class Batch:
    """An open or in-flight request: items of one route, with their slots in the call's collector."""

    route: str
    indexes: list[int] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    prepared: list[Future[Ready] | None] = field(default_factory=list)

    def cancel_preparation(self) -> None:
        """Cancel the image preparations still awaited (running ones finish; a sent batch has none)."""
        for prepared in self.prepared:
            if prepared is not None:
                prepared.cancel()


# -- batching --------------------------------------------------------------------------------------------------
class Batcher:
    """Open batches per route, each closed (handed to ``dispatch``) when the next item does not fit or it is full."""

    def __init__(self, provider: Provider, prep_pool: ThreadPoolExecutor, dispatch: Callable[[Batch], None]) -> None:
        self.provider = provider
        self.prep_pool = prep_pool
        self.dispatch = dispatch
        self.open: dict[str, Batch] = {}
        # Caller images held in memory but not yet encoded: enough to keep every core busy, few enough to
        # bound memory. Paths take no slot (see add).
        self.prep_slots = threading.Semaphore(2 * cpu_share())

    def add(self, slot: int, item: Item, key: str) -> None:
        route = self.provider.route(item)
        batch = self.open.get(route)
        if batch is not None and not self.provider.fits(batch.items, item, route):
            self.dispatch(self.open.pop(route))
            batch = None
        if batch is None:
            batch = self.open[route] = Batch(route)
        batch.indexes.append(slot)
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
            batch.prepared.append(self.prep_pool.submit(self._prepare, item, holds_pixels))
            batch.items.append(ImageItem(source=item.source))
        else:
            batch.items.append(item)
            batch.prepared.append(None)
        if len(batch.items) >= self.provider.cap(route):
            self.dispatch(self.open.pop(route))

    def flush(self) -> None:
        """Close every open batch (the items are all in)."""
        for route in list(self.open):
            self.dispatch(self.open.pop(route))

    def cancel(self) -> None:
        for batch in self.open.values():
            batch.cancel_preparation()

    def _prepare(self, item: Item, holds_slot: bool) -> Ready:
        try:
            return self.provider.prepare(item)
        finally:
            if holds_slot:
                self.prep_slots.release()


# -- scheduling ------------------------------------------------------------------------------------------------
class Scheduler:
    """The bounded window of batches in flight: each goes to the network pool once its images are prepared.

    A sender never waits for CPU work: all ``concurrency`` senders talk to the provider, and requests that follow
    one another reuse one idle thread instead of parking a thread per batch (every thread's allocator keeps its
    own high-water mark of request and response bodies). ``early_fail``: a bad image fails its batch at once
    (an array call raises anyway), rather than the batch going without it once the rest is ready (a stream).
    """

    def __init__(
        self,
        concurrency: int,
        send_pool: ThreadPoolExecutor,
        send: Callable[[Batch], None],
        *,
        early_fail: bool,
        hold: bool = False,
    ) -> None:
        self.send_pool = send_pool
        self.send = send
        self.early_fail = early_fail
        self.window = threading.Semaphore(concurrency + 1)
        self.in_flight: set[Future[None]] = set()
        self.held: list[Batch] | None = [] if hold else None

    def dispatch(self, batch: Batch) -> None:
        """Close ``batch``; its request goes to the network pool as soon as its images are prepared."""
        if self.held is not None:
            if not any(batch.prepared):  # text so far: the call may yet be one request for this thread
                self.held.append(batch)
                return
            held, self.held = self.held, None  # images: the pools it is, and nothing waits for the rest
            for earlier in held:
                self.dispatch(earlier)
        self.window.acquire()
        outcome: Future[None] = Future()
        outcome.add_done_callback(lambda _f: self.window.release())
        outcome.add_done_callback(lambda _f: batch.cancel_preparation())  # failed or cancelled: the rest is moot
        self.in_flight.add(outcome)
        preparing = [f for f in batch.prepared if f is not None]
        if not preparing:
            self._submit(batch, outcome)
            return
        remaining, submitted, lock = [len(preparing)], [False], threading.Lock()

        def prepared(future: Future[Ready]) -> None:
            failed = self.early_fail and not future.cancelled() and future.exception() is not None
            with lock:
                remaining[0] -= 1
                go = not submitted[0] and (remaining[0] == 0 or failed)
                submitted[0] = submitted[0] or go
            if go:
                self._submit(batch, outcome)

        for future in preparing:
            future.add_done_callback(prepared)

    def release(self) -> None:
        """The items are all in: send what was held, on this thread if it is one text-only request."""
        held, self.held = self.held, None
        if held is None:
            return
        if len(held) == 1 and all(f is None for f in held[0].prepared):
            self.send(held[0])  # no pool hops: a query's whole cost is its round trip
            return
        for batch in held:
            self.dispatch(batch)

    def _submit(self, batch: Batch, outcome: Future[None]) -> None:
        if not outcome.set_running_or_notify_cancel():
            return  # cancelled after an error, and its preparations with it
        try:
            sent = self.send_pool.submit(self.send, batch)
        except BaseException as exc:  # e.g. the embedder was closed meanwhile: never leave `outcome` pending
            outcome.set_exception(exc)
            return
        sent.add_done_callback(functools.partial(_settle, outcome))

    def raise_failures(self) -> None:
        """Re-raise, in the caller's thread, the error of a batch that has failed (without waiting)."""
        done = {f for f in self.in_flight if f.done()}
        self.in_flight -= done
        for future in done:
            future.result()

    def wait(self, *, any_one: bool = False) -> None:
        """Until every batch is answered (or, ``any_one``, at least one), raising the first error."""
        while self.in_flight:
            done, _ = wait(self.in_flight, return_when=FIRST_COMPLETED if any_one else FIRST_EXCEPTION)
            self.in_flight -= done
            for future in done:
                future.result()
            if any_one:
                return

    def abort(self) -> None:
        """After an error: cancel what has not started; let running requests finish (and fill the cache)."""
        for batch in self.held or ():
            batch.cancel_preparation()
        self.held = None
        for future in self.in_flight:  # a batch whose request never started cancels its images too
            future.cancel()
        wait(self.in_flight)


def _settle(outcome: Future[None], sent: Future[None]) -> None:
    """Give ``outcome`` the result of the request it stands for (nothing cancels a submitted request)."""
    error = sent.exception()
    if error is None:
        outcome.set_result(None)
    else:
        outcome.set_exception(error)


# -- collecting ------------------------------------------------------------------------------------------------
class Collector(Protocol):
    """Where a call's items come from and its vectors go: an array in input order, or a stream of answers."""

    streaming: bool

    def admit(self, index: int, obj: object, add: Adder) -> None:
        """Take caller item ``index``: answer it at once (cache, duplicate, error) or ``add`` it to a batch."""

    def owner(self, slot: int) -> int:
        """The caller's index of a batch slot (for errors)."""

    def take(self, batch: Batch, good: list[int], vectors: list[np.ndarray], errors: list[Answer]) -> None:
        """The answer to ``batch``: vectors for its positions ``good``, errors for the items that failed."""


class ArrayCollector:
    """Vectors by index into one array, in input order; duplicates embedded once; fallback leaves combined.

    Slots hold vectors: one per caller item, or one per leaf of an item replaced by a fallback. ``owners`` maps
    a slot to the caller's index (for errors); ``rows`` says how each caller row is made from slots. ``multi``:
    slots hold multi-vectors (one array of rows per item, see :meth:`multi_result`), and no fallback applies.
    """

    streaming = False

    def __init__(self, embedder: Embedder, task: Task, progress: Progress | None, *, multi: bool = False) -> None:
        self.embedder, self.provider, self.cache, self.task = embedder, embedder.provider, embedder.cache, task
        self.multi = multi
        self.progress = progress
        self.results: list[np.ndarray | None] = []
        self.owners: list[int] = []
        self.rows: list[int | Combo] = []
        self.leaf_rows: dict[int, list[int]] = {}  # leaf slot → [leaves of its row still to come] (progress)
        self.rows_lock = threading.Lock()
        self.aliases: dict[int, int] = {}
        self.first_index: dict[str, int] = {}

    def owner(self, slot: int) -> int:
        return self.owners[slot]

    def admit(self, index: int, obj: object, add: Adder) -> None:
        """Admit caller item ``index``: as it is, or as the leaves of its fallback (see :mod:`mmembed.fallbacks`)."""
        try:
            item = to_item(obj)
            leaves = fallbacks.plan(self.provider, item)
            if leaves is not None and self.multi:
                # A mean of multi-vectors means nothing: a PDF goes in page by page, each page its own item.
                raise InputError(
                    f"{self.provider.name}: {self.provider.family.model} cannot embed this "
                    f"{item.kind} as one multi-vector; split it into pages or parts with Embedder.expand()"
                )
        except InputError as err:
            raise err.at(index) from err.__cause__
        if leaves is None:
            self.rows.append(self._slot(index, item, add))
            return
        counter = [1]  # its leaves still unanswered, plus one until all are admitted
        self.rows.append(self._combo(index, leaves, counter, add))
        with self.rows_lock:
            counter[0] -= 1
            done = counter[0] == 0
        if done:
            self._tick(1)

    def _combo(self, index: int, leaves: list[tuple[Item, float]], counter: list[int], add: Adder) -> Combo:
        children: list[tuple[int | Combo, float]] = []
        for leaf, weight in leaves:
            try:
                sub = fallbacks.plan(self.provider, leaf)
            except InputError as err:
                raise err.at(index, err.source or leaf.source) from err.__cause__
            if sub is not None:
                children.append((self._combo(index, sub, counter, add), weight))
            else:
                children.append((self._slot(index, leaf, add, counter), weight))
        return Combo(children)

    def _slot(self, index: int, item: Item, add: Adder, counter: list[int] | None = None) -> int:
        """Give ``item`` a slot and send it, or take it from the cache or an earlier duplicate; returns the slot.

        ``counter`` is the pending-leaf count of the caller row a fallback leaf belongs to (None: its own row).
        """
        slot = len(self.results)
        self.results.append(None)
        self.owners.append(index)
        try:
            key = self.embedder.cache_key(item, self.task, multi=self.multi)
        except InputError as err:
            raise err.at(index) from err.__cause__
        if key in self.first_index:  # the same content twice in one call: embed once
            self.aliases[slot] = self.first_index[key]
            self._tick(counter is None)
            return slot
        self.first_index[key] = slot
        hit = self.cache.get_many([key]).get(key) if self.cache is not None else None
        if hit is not None:
            self.results[slot] = hit
            self._tick(counter is None)
            return slot
        if counter is not None:
            with self.rows_lock:
                counter[0] += 1
                self.leaf_rows[slot] = counter
        add(slot, item, key)
        return slot

    def take(self, batch: Batch, good: list[int], vectors: list[np.ndarray], errors: list[Answer]) -> None:
        for slot, vector in zip(batch.indexes, vectors, strict=True):
            self.results[slot] = vector
        self._tick_slots(batch.indexes)

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

    def result(self) -> np.ndarray:
        """One row per caller item, in input order (never a shifted or partial result)."""
        for index, first in self.aliases.items():
            self.results[index] = self.results[first]
        missing = sum(v is None for v in self.results)
        if missing:
            raise EmbeddingError(f"{missing} items got no vector")
        vectors = [self._row(row) for row in self.rows]
        if not vectors:
            return np.zeros((0, self.embedder.dimensions or 0), dtype=np.float32)
        sizes = {v.shape[0] for v in vectors}
        if len(sizes) > 1:
            raise EmbeddingError(f"vectors of mixed sizes {sorted(sizes)} (a changed cache or model?)")
        return np.stack(vectors).astype(np.float32, copy=False)

    def multi_result(self) -> list[np.ndarray]:
        """One multi-vector (an array of unit rows) per caller item, in input order."""
        for index, first in self.aliases.items():
            self.results[index] = self.results[first]
        arrays = [self._row(row) for row in self.rows]
        widths = {a.shape[-1] for a in arrays}
        if len(widths) > 1 or any(a.ndim != 2 for a in arrays):
            raise EmbeddingError(f"multi-vectors of mixed widths {sorted(widths)} (a changed cache or model?)")
        return [a.astype(np.float32, copy=False) for a in arrays]

    def _row(self, row: int | Combo) -> np.ndarray:
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


class StreamCollector:
    """Answers ``(index, vector or InputError)`` as requests come back; a bad item is reported on its own.

    Content in flight is sent once: a later item with the same content waits for the first one's answer.
    """

    streaming = True

    def __init__(self, embedder: Embedder, task: Task) -> None:
        self.embedder, self.provider, self.cache, self.task = embedder, embedder.provider, embedder.cache, task
        self.answers: queue.SimpleQueue[list[Answer]] = queue.SimpleQueue()
        self.pending: dict[str, int] = {}  # key -> index of the item in flight with that content
        self.waiting: dict[int, list[int]] = {}  # that index -> later items with the same content

    def owner(self, slot: int) -> int:
        return slot

    def admit(self, index: int, obj: object, add: Adder) -> None:
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
        add(index, item, key)

    def take(self, batch: Batch, good: list[int], vectors: list[np.ndarray], errors: list[Answer]) -> None:
        answers = errors + [(batch.indexes[i], vector) for i, vector in zip(good, vectors, strict=True)]
        for key in batch.keys:
            self.pending.pop(key, None)
        self.answers.put(answers)

    def answered(self) -> Iterator[Answer]:
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


# -- one call --------------------------------------------------------------------------------------------------
class Run:
    """One embed call: a collector fed by the items, a batcher, a scheduler, and the send that joins them."""

    def __init__(self, embedder: Embedder, task: Task, collector: Collector, *, hold: bool = False) -> None:
        self.provider, self.cache, self.task = embedder.provider, embedder.cache, task
        self.collector = collector
        # A multi-vector call: the same batches, windows and retries; another request and other cache keys.
        self.multi = bool(getattr(collector, "multi", False))
        if not self.multi and self.provider.multivector_only():
            raise ConfigurationError(
                f"{self.provider.name}: {self.provider.family.model} gives multi-vectors only (one row per token "
                "or image patch): use embed_multi() / embed_query_multi()"
            )
        send_pool, prep_pool = embedder._pools()
        self.scheduler = Scheduler(
            self.provider.concurrency, send_pool, self.send, early_fail=not collector.streaming, hold=hold
        )
        self.batcher = Batcher(self.provider, prep_pool, self.scheduler.dispatch)

    def execute(self, items: Iterable[object]) -> np.ndarray:
        """Every item into an array collector, in input order."""
        self._collect(items)
        return self._array().result()

    def execute_multi(self, items: Iterable[object]) -> list[np.ndarray]:
        """Every item into a multi-vector array collector: one array of rows per item, in input order."""
        self._collect(items)
        return self._array().multi_result()

    def _array(self) -> ArrayCollector:
        if not isinstance(self.collector, ArrayCollector):
            raise TypeError("execute() needs an ArrayCollector")
        return self.collector

    def _collect(self, items: Iterable[object]) -> None:
        self._array()
        try:
            for index, obj in enumerate(items):
                self.collector.admit(index, obj, self.batcher.add)
                self.scheduler.raise_failures()
            self._close()
            self.scheduler.wait()
        except BaseException:
            self._abort()
            raise

    def stream(self, items: Iterable[object]) -> Iterator[Answer]:
        """Every item into a stream collector, yielding answers as they come (see :meth:`Embedder.embed_stream`)."""
        collector = self.collector
        if not isinstance(collector, StreamCollector):
            raise TypeError("stream() needs a StreamCollector")
        try:
            for index, obj in enumerate(items):
                collector.admit(index, obj, self.batcher.add)
                yield from collector.answered()
                self.scheduler.raise_failures()
            self._close()
            while self.scheduler.in_flight:
                self.scheduler.wait(any_one=True)
                yield from collector.answered()
            yield from collector.answered()
        except BaseException:  # an error, or the caller stopped reading (GeneratorExit)
            self._abort()
            raise

    def send(self, batch: Batch) -> None:
        """Prepare, send and cache one batch, and hand its answer to the collector (on a sender thread)."""
        ready: list[Ready] = []
        good: list[int] = []
        errors: list[Answer] = []
        for i in range(len(batch.items)):
            try:
                ready.append(self._ready(batch, i))
                good.append(i)
            except InputError as err:
                if not self.collector.streaming:
                    raise
                errors.append((batch.indexes[i], err))
        # The request holds the encoded images now; the batch, which outlives it (in_flight), drops them.
        batch.prepared.clear()
        vectors = self._request(batch, ready, good, errors)
        if self.cache is not None and vectors:
            self.cache.put_many(zip((batch.keys[i] for i in good), vectors, strict=True))
        self.collector.take(batch, good, vectors, errors)

    def _request(self, batch: Batch, ready: list[Ready], good: list[int], errors: list[Answer]) -> list[np.ndarray]:
        """The provider's vectors for ``ready``; a one-item request the API refused is that item's error."""
        if not ready:
            return []
        try:
            if self.multi:
                return self.provider.send_multi(batch.route, ready, self.task)
            return self.provider.send(batch.route, ready, self.task)
        except InputError as err:  # a request of one item, refused for that item: a stream goes on without it
            if len(ready) != 1:
                raise
            i = good[0]
            located = err.at(self.collector.owner(batch.indexes[i]), batch.items[i].source)
            if not self.collector.streaming:
                raise located from err.__cause__
            errors.append((batch.indexes[i], located))
            good.clear()
            return []

    def _ready(self, batch: Batch, i: int) -> Ready:
        item = batch.items[i]
        future = batch.prepared[i]
        try:
            return future.result() if future is not None else self.provider.prepare(item)
        except InputError as err:
            raise err.at(self.collector.owner(batch.indexes[i]), item.source) from err.__cause__

    def _close(self) -> None:
        self.batcher.flush()
        self.scheduler.release()

    def _abort(self) -> None:
        self.batcher.cancel()
        self.scheduler.abort()
