"""Embedder: route a stream of mixed items to a provider, batch to its caps, run concurrently, keep order.

Data flows one way: caller objects → :func:`mmembed.inputs.to_item` → (cache, de-duplication) → open
batches per route → image preparation on a CPU pool → requests on a network pool → vectors written
back **by index**. At most ``max_concurrency + 1`` batches of one call are outstanding at a time, so a
stream of any length is embedded in bounded memory, and image decoding overlaps with network waits.
The pipeline's parts (collector, batcher, scheduler) live in :mod:`mmembed._pipeline`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

from . import fallbacks
from ._pipeline import INLINE_MAX, ArrayCollector, Progress, Run, StreamCollector
from .cache import EmbeddingCache, open_cache
from .cpus import cpu_share
from .errors import ConfigurationError, InputError
from .fallbacks import Segment
from .inputs import ImageItem, ImageSource, Interleaved, InterleavedItem, Item, MediaSource, to_item
from .options import COMMON_OPTIONS, option_specs, options_for
from .providers import PROVIDERS, Provider, ProviderOptions, Task
from .transport import TransportSnapshot

__all__ = ["Embedder", "provider_class"]


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

    def embed_multi(self, items: Iterable[object], *, progress: Progress | None = None) -> list[np.ndarray]:
        """Embed items as documents into multi-vectors: per item, a float32 array of unit rows (one per token of
        a text, or per patch of an image), in input order, for late interaction (MaxSim; see :mod:`mmembed.late`).

        Batched, cached, rate-limited and retried as :meth:`embed` is. Only models with multi-vector output
        take it (:meth:`multivector_dimensions` is their row width); another raises
        :class:`~mmembed.ConfigurationError` naming the ones that have it. A PDF goes in page by page
        (:meth:`expand` first): there is no mean of multi-vectors.
        """
        return self._run_multi(items, "document", progress)

    def embed_query_multi(self, items: Iterable[object], *, progress: Progress | None = None) -> list[np.ndarray]:
        """:meth:`embed_multi` with the provider's query task (queries against multi-vector documents)."""
        return self._run_multi(items, "query", progress)

    @property
    def multivector_dimensions(self) -> int | None:
        """The width of each row :meth:`embed_multi` gives (None: the model has no multi-vector output)."""
        return self.provider.multivector_width()

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
        task: Task = "query" if query else "document"
        return Run(self, task, StreamCollector(self, task)).stream(items)

    async def aembed(self, items: Iterable[object]) -> np.ndarray:
        """:meth:`embed` without blocking the event loop (in-flight requests stay within the bound)."""
        return await asyncio.to_thread(self._run, list(items), "document", None)

    async def aembed_query(self, items: Iterable[object]) -> np.ndarray:
        """:meth:`embed_query` without blocking the event loop."""
        return await asyncio.to_thread(self._run, list(items), "query", None)

    def cache_key(self, item: Item, task: Task, *, multi: bool = False) -> str:
        """The content-addressed key of ``item``: provider, model, dimensions, task and content.

        An image's key also holds the size it is shrunk to for upload: other pixels, another vector. The
        base URL is part of it too, so vectors from the emulator or a gateway never answer for the live API.
        A multi-vector (``multi``) has keys of its own: the rows' width stands where the dimensions do.
        """
        p = self.provider
        content = item.content_key(getattr(self.cache, "file_digest", None))
        size = f"multi={p.multivector_width()}" if multi else str(p.dimensions)
        parts = [p.name, p.base_url, p.model_for(item), size, p.task_key(item, task), content]
        if isinstance(item, (ImageItem, InterleavedItem)):
            parts.append(f"side={p.image_spec().min_side}")
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def close(self) -> None:
        """Stop the worker threads and close the provider's and the cache's connections."""
        with self._pools_lock:
            for pool in (self._send_pool, self._prep_pool):
                if pool is not None:
                    pool.shutdown(wait=True)
            self._send_pool = self._prep_pool = None
        self.provider.close()
        if isinstance(self.cache, EmbeddingCache):
            self.cache.close()  # its connection; a later call opens it again

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
        # A small call may turn out to be one text-only request, sent on this thread (see Scheduler.release).
        hold = isinstance(items, (list, tuple)) and len(items) <= INLINE_MAX
        return Run(self, task, ArrayCollector(self, task, progress), hold=hold).execute(items)

    def _run_multi(self, items: Iterable[object], task: Task, progress: Progress | None) -> list[np.ndarray]:
        if isinstance(items, (str, bytes, np.ndarray, Image.Image, os.PathLike, ImageSource, MediaSource, Interleaved)):
            raise TypeError("embed_multi() takes a list (or any iterable) of items; wrap a single item in a list")
        if self.provider.multivector_width() is None:
            raise ConfigurationError(
                f"{self.provider.name}: {self.provider.family.model} has no multi-vector output; "
                f"models that have it: {', '.join(multivector_models()) or 'none registered'}"
            )
        hold = isinstance(items, (list, tuple)) and len(items) <= INLINE_MAX
        collector = ArrayCollector(self, task, progress, multi=True)
        return Run(self, task, collector, hold=hold).execute_multi(items)


def multivector_models() -> list[str]:
    """Every registered provider's models with multi-vector output, as ``provider:model``."""
    return [f"{name}:{model}" for name, cls in PROVIDERS.items() for model in cls.multivector_models()]


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
