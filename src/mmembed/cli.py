"""The ``mmembed`` command: ingest folders of texts, images, PDFs, video and audio into Chroma, search them.

::

    mmembed ingest ./photos ./notes --provider PROVIDER --collection media
    mmembed search "a red bicycle" --collection media -n 5 --html hits.html
    mmembed emulator --port 8765

Ingest walks folders, embeds images and text files (long ones split into passages) into one mixed
collection, and skips what is already stored unchanged (ids are stable: path + passage number; the
content hash sits in the metadata). PDFs, video and audio are expanded by the provider
(:meth:`mmembed.Embedder.expand`): one record per PDF page (``page`` in the metadata; on models that read
only text and images, also the page's text passages), per video segment or clip (``start``/``end`` seconds),
per audio file; every record has a ``modality``. A kind the model cannot embed is named as skipped; a file
that cannot be embedded is reported by name at the end and the exit status is 1, while everything else is
stored. Search ranks each modality on its own, merges the hits by calibrated relevance (or by reciprocal rank
with ``--fusion rrf``; see :func:`mmembed.chroma.query_mixed`) and shows the page or time of each hit.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _trust
from ._htmltext import html_text
from .errors import ConfigurationError, EmbeddingError, InputError, UnsupportedKindError
from .inputs import FileDigest, file_sha256
from .options import option_specs
from .providers import PROVIDERS

__all__ = ["main"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".rst"})
HTML_SUFFIXES = frozenset({".html", ".htm"})  # embedded as their text (tags, scripts and styles dropped)
# Files expanded into segments by the provider (Embedder.expand): pages of a PDF, segments of a video, audio.
# The suffix only picks files to look at; what a file is, is read from its content.
MEDIA_SUFFIXES = frozenset({".pdf", ".mp4", ".mov", ".m4v", ".webm", ".mkv", ".mp3", ".wav", ".m4a", ".ogg", ".flac"})
PASSAGE_CHARS = 1200
WRITE_BATCH = 500  # records written per Chroma call, as their vectors arrive
CHECK_BATCH = 500  # records looked up in Chroma per call (are they stored, and unchanged?)
IMAGE_CHECK_BATCH = 16
EXIT_OK, EXIT_FAILED_ITEMS, EXIT_ERROR = 0, 1, 2


def default_db() -> Path:
    """Where the embedded Chroma store lives unless ``--db`` or ``MMEMBED_DB`` says otherwise."""
    if os.environ.get("MMEMBED_DB"):
        return Path(os.environ["MMEMBED_DB"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "mmembed" / "chroma"


@dataclass
class Record:
    """One thing to store: an image file, one passage of a text file, or one segment of a PDF, video or audio."""

    id: str
    item: object  # str (a passage), Path (an image) or a segment's item (a page, a video clip, a passage)
    source: str
    modality: str
    digest: str
    passage: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # a segment's metadata: page, start/end seconds


@dataclass
class IngestReport:
    added: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # kinds the model cannot embed


# -- walking and splitting --------------------------------------------------------------------------
def walk(paths: Sequence[str], not_taken: Counter[str] | None = None) -> Iterator[Path]:
    """Files under ``paths`` (sorted, hidden ones skipped) that look like images or texts; each file once.

    ``not_taken`` counts, by suffix (``(none)`` for a name without one), the visible files of the folders that
    are left out, so the summary can say what was not looked at.
    """
    seen: set[Path] = set()  # overlapping arguments (a folder and a file in it) name a file once
    for path in _walk(paths, Counter() if not_taken is None else not_taken):
        if path not in seen:
            seen.add(path)
            yield path


def _walk(paths: Sequence[str], not_taken: Counter[str]) -> Iterator[Path]:
    taken = IMAGE_SUFFIXES | TEXT_SUFFIXES | HTML_SUFFIXES | MEDIA_SUFFIXES
    for raw in paths:
        root = Path(raw).expanduser()
        if root.is_file():
            yield root.resolve()
            continue
        if not root.is_dir():
            raise FileNotFoundError(f"no such file or folder: {raw}")
        root = root.resolve()  # once: a path below it is then absolute and resolved, unless it is a symlink
        for path in sorted(root.rglob("*")):
            if any(part.startswith(".") for part in path.relative_to(root).parts) or not path.is_file():
                continue
            if path.suffix.lower() not in taken:
                not_taken[path.suffix.lower() or "(none)"] += 1
                continue
            yield path.resolve() if path.is_symlink() else path


def _describe_not_taken(not_taken: Counter[str]) -> str:
    """``12 files not taken (.svg 3, .aiff 2, (none) 7)``: the most common suffixes first."""
    total = sum(not_taken.values())
    kinds = ", ".join(f"{suffix} {n}" for suffix, n in sorted(not_taken.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{total} file{'s' if total != 1 else ''} not taken ({kinds})"


def split_passages(text: str, limit: int = PASSAGE_CHARS) -> list[str]:
    """Split on blank lines into passages of at most ``limit`` characters (long paragraphs are cut)."""
    passages: list[str] = []
    current = ""
    for paragraph in (p.strip() for p in text.replace("\r\n", "\n").split("\n\n")):
        if not paragraph:
            continue
        while len(paragraph) > limit:
            cut = paragraph.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            if current:
                passages.append(current)
                current = ""
            passages.append(paragraph[:cut].strip())
            paragraph = paragraph[cut:].strip()
        if current and len(current) + 2 + len(paragraph) > limit:
            passages.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        passages.append(current)
    return passages


def records_for(path: Path, file_digest: FileDigest | None = None, embedder: Any = None) -> list[Record]:
    """The records one file yields; raises InputError for an unreadable file.

    ``file_digest`` (the embedding cache's) lets an unchanged image go unread on a rerun. PDFs, video and
    audio are expanded by ``embedder`` (:meth:`mmembed.Embedder.expand`): one record per page (and, on a
    model that reads only text and images, per text passage of a page), per video segment or clip, per
    audio file; UnsupportedKindError when the model cannot embed the kind.
    """
    base = hashlib.sha256(str(path).encode()).hexdigest()[:20]
    if path.suffix.lower() in MEDIA_SUFFIXES and embedder is not None:
        return _media_records(path, base, file_digest, embedder)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        try:
            digest = file_digest(path, lambda: file_sha256(path)) if file_digest else file_sha256(path)
        except OSError as exc:
            raise InputError(f"cannot read image: {exc.strerror or exc}", source=str(path)) from exc
        return [Record(f"{base}:0", path, str(path), "image", digest)]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read text: {exc}", source=str(path)) from exc
    if path.suffix.lower() in HTML_SUFFIXES:
        text = html_text(text)
    return [
        Record(f"{base}:{i}", passage, str(path), "text", hashlib.sha256(passage.encode()).hexdigest(), i)
        for i, passage in enumerate(split_passages(text))
    ]


def _media_records(path: Path, base: str, file_digest: FileDigest | None, embedder: Any) -> list[Record]:
    try:
        digest = file_digest(path, lambda: file_sha256(path)) if file_digest else file_sha256(path)
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", source=str(path)) from exc
    segments = embedder.expand([path])
    records = []
    for k, segment in enumerate(segments):
        meta = dict(segment.metadata)
        where = ",".join(f"{key}={meta[key]}" for key in sorted(meta))
        content = segment.item.text if segment.modality == "text" else ""
        records.append(
            Record(
                f"{base}:{k}",
                segment.item,
                str(path),
                segment.modality,
                hashlib.sha256(f"{digest}|{where}|{content}".encode()).hexdigest(),
                int(meta.get("passage", 0)),
                meta,
            )
        )
    return records


# -- Chroma ----------------------------------------------------------------------------------------
def close_client(client: Any) -> None:
    """Close a Chroma client, and the HTTP sessions chromadb 1.5's ``close()`` leaves open (HttpClient)."""
    client.close()
    for api in (getattr(client, "_server", None), getattr(getattr(client, "_admin_client", None), "_server", None)):
        session = getattr(api, "_session", None)
        if session is not None:
            session.close()


class _StoreError(Exception):
    """The Chroma store cannot be opened or used (a server that is down, a folder that cannot be written)."""


def open_client(args: argparse.Namespace) -> Any:
    import chromadb

    if args.chroma_url:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(args.chroma_url)
            return chromadb.HttpClient(
                host=parts.hostname or "localhost",
                port=parts.port or (443 if parts.scheme == "https" else 8000),
                ssl=parts.scheme == "https",
            )
        except ValueError as exc:  # chromadb: "Could not connect to a Chroma server"; urllib: a bad port
            raise _StoreError(f"Chroma server {args.chroma_url}: {exc}") from exc
    db = Path(args.db).expanduser() if args.db else default_db()
    try:
        db.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _StoreError(f"cannot create the store folder {db}: {exc.strerror or exc}") from exc
    return chromadb.PersistentClient(path=str(db))


def _store_error(exc: Exception) -> str | None:
    """One line for an error of Chroma's (a bad or missing collection, a server gone), or None for any other."""
    try:
        import httpx
        from chromadb.errors import ChromaError
    except ImportError:
        return None

    if isinstance(exc, _StoreError):
        return str(exc)
    if isinstance(exc, ChromaError):
        return f"Chroma: {' '.join(str(exc).split())}"
    if isinstance(exc, httpx.TransportError):  # the HttpClient's transport: the server went away mid-run
        return f"Chroma server cannot be reached: {' '.join(str(exc).split()) or type(exc).__name__}"
    return None


def embedding_function(args: argparse.Namespace) -> Any:
    from . import chroma

    cls = PROVIDERS[args.provider]
    options: dict[str, Any] = {"dimensions": args.dimensions, "base_url": args.base_url, "cache": cache_path(args)}
    if args.model:
        options[cls.model_keys[0]] = args.model
    for name in provider_flags():
        value = getattr(args, name)
        if value is not None and name not in cls.option_names:
            raise ConfigurationError(f"--{name.replace('_', '-')} is not an option of {args.provider}")
        options[name] = value
    return chroma.function_class(args.provider)(**{k: v for k, v in options.items() if v is not None})


def provider_flags() -> list[str]:
    """Provider-specific string options that are not models (a cloud project, a location...): one flag each."""
    specs = option_specs()
    names = {n for cls in PROVIDERS.values() for n in cls.option_names if n not in cls.model_keys}
    return [n for n in specs if n in names and specs[n].simple_type is str]


def cache_path(args: argparse.Namespace) -> str | None:
    """The embedding cache: ``--cache``, else beside the embedded store (or in the user cache dir for a server).

    It is what makes a failed or interrupted ingest cheap to resume: batches already answered are not resent.
    """
    if args.no_cache:
        return None
    if args.cache:
        return str(args.cache)
    if args.chroma_url:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(base, "mmembed", "embedding-cache.sqlite")
    return str((Path(args.db).expanduser() if args.db else default_db()) / "embedding-cache.sqlite")


def ingest(args: argparse.Namespace) -> int:
    missing = [raw for raw in args.paths if not Path(raw).expanduser().exists()]
    if missing:
        print(f"error: no such file or folder: {missing[0]}", file=sys.stderr)
        return EXIT_ERROR
    function = embedding_function(args)
    not_taken: Counter[str] = Counter()
    with ThreadPoolExecutor(1, thread_name_prefix="mmembed-chroma") as opener:
        opening = opener.submit(open_client, args)  # Chroma takes a few tenths of a second to open: walk meanwhile
        try:
            files = list(walk(args.paths, not_taken))
            client = opening.result()
        except BaseException:
            function.close()
            if opening.exception() is None:
                close_client(opening.result())
            raise
    try:
        return _ingest_files(args, files, function, client, not_taken)
    finally:
        close_client(client)
        function.close()


def _ingest_files(
    args: argparse.Namespace, files: list[Path], function: Any, client: Any, not_taken: Counter[str]
) -> int:
    collection = client.get_or_create_collection(args.collection, embedding_function=function)
    report = IngestReport()
    cache = function.embedder.cache
    progress = _progress(args.quiet)
    writer = _Writer(collection, report, progress)
    digest = getattr(cache, "file_digest", None)
    pending = _pending(collection, files, digest, report, progress, function.embedder)
    try:
        _stream(function.embedder, pending, writer, report)
    except EmbeddingError as err:
        writer.flush()  # what was answered before the failure is stored
        progress.close()
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    progress.close()
    skipped = f", {len(report.skipped)} skipped (kinds {args.provider} cannot embed)" if report.skipped else ""
    if not_taken:
        skipped += f", {_describe_not_taken(not_taken)}"
    print(
        f"{report.added} records added, {report.unchanged} unchanged, {len(report.failed)} files failed{skipped} "
        f"— collection {args.collection!r} now holds {collection.count()} records"
    )
    for source, reason in report.skipped:
        print(f"skipped: {source}: {reason}", file=sys.stderr)
    for source, reason in report.failed:
        print(f"failed: {source}: {reason}", file=sys.stderr)
    return EXIT_FAILED_ITEMS if report.failed else EXIT_OK


def _pending(
    collection: Any,
    files: list[Path],
    file_digest: FileDigest | None,
    report: IngestReport,
    progress: _Progress,
    embedder: Any = None,
) -> Iterator[Record]:
    """The records that need embedding, found as the pipeline asks for them (files are read lazily).

    Images come first: their decoding starts at once on the CPU pool and overlaps reading the texts.
    """
    chunk: list[Record] = []
    for path in sorted(files, key=lambda p: p.suffix.lower() not in IMAGE_SUFFIXES):  # stable: sorted within
        try:
            chunk.extend(records_for(path, file_digest, embedder))
        except UnsupportedKindError as err:  # a kind the model cannot embed: named, not a failure
            report.skipped.append((str(path), err.reason))
        except InputError as err:
            report.failed.append((str(path), err.reason))
        # Photos go on in small chunks, so the first ones are being decoded while the rest are still hashed.
        limit = IMAGE_CHECK_BATCH if path.suffix.lower() in IMAGE_SUFFIXES else CHECK_BATCH
        if len(chunk) >= limit:
            yield from _changed(collection, chunk, report, progress)
            chunk = []
    yield from _changed(collection, chunk, report, progress)


def _stream(embedder: Any, records: Iterator[Record], writer: _Writer, report: IngestReport) -> None:
    """Every record through one pipeline: full batches, concurrent requests, written as vectors arrive.

    Answers are cached as they arrive and Chroma writes are upserts by stable id, so a run killed at any
    moment resumes without paying again for what was answered, and ends with the same records.
    """
    todo: list[Record] = []

    def items() -> Iterator[object]:
        for record in records:
            todo.append(record)
            yield record.item

    for index, value in embedder.embed_stream(items()):
        record = todo[index]
        if isinstance(value, InputError):
            if all(source != record.source for source, _ in report.failed):  # a file is one failure
                report.failed.append((record.source, value.reason))
            writer.drop(record.source)
        else:
            writer.add(record, value)
    writer.flush()


class _Writer:
    """Writes records to Chroma in batches of WRITE_BATCH; the progress bar counts what is stored."""

    def __init__(self, collection: Any, report: IngestReport, progress: Any) -> None:
        self.collection, self.report, self.progress = collection, report, progress
        self.buffer: list[tuple[Record, Any]] = []
        self.failed: set[str] = set()
        self.written: dict[str, int] = {}  # records stored per source in this run

    def add(self, record: Record, vector: Any) -> None:
        self.buffer.append((record, vector))
        if len(self.buffer) >= WRITE_BATCH:
            self.flush()

    def drop(self, source: str) -> None:
        """A file that cannot be embedded: none of its records is stored, whenever the failure came.

        Records of it already written (by this run, or by an earlier one that was killed) are deleted, so what a
        bad file leaves in the store never depends on timing.
        """
        if source in self.failed:
            return
        self.failed.add(source)
        self.collection.delete(where={"source": source})
        removed = self.written.pop(source, 0)
        self.report.added -= removed
        self.progress.update(-removed)

    def flush(self) -> None:
        from .chroma import MODALITY_KEY, record_modalities

        rows = [(r, v) for r, v in self.buffer if r.source not in self.failed]
        self.buffer = []
        if rows:
            record_modalities(self.collection, {r.modality for r, _ in rows})
        for has_text in (True, False):  # one upsert with documents, one with uris (Chroma wants whole columns)
            part = [(r, v) for r, v in rows if _text_of(r) is not None] if has_text else [
                (r, v) for r, v in rows if _text_of(r) is None
            ]
            if not part:
                continue
            content = {"documents": [_text_of(r) for r, _ in part]} if has_text else {
                "uris": [r.source for r, _ in part]
            }
            self.collection.upsert(
                ids=[r.id for r, _ in part],
                embeddings=[v for _, v in part],
                metadatas=[
                    {
                        **r.extra,
                        "source": r.source,
                        "sha256": r.digest,
                        "passage": r.passage,
                        MODALITY_KEY: r.modality,
                    }
                    for r, _ in part
                ],
                **content,
            )
        for r, _ in rows:
            self.written[r.source] = self.written.get(r.source, 0) + 1
        self.report.added += len(rows)
        self.progress.update(len(rows))


def _text_of(record: Record) -> str | None:
    from .inputs import TextItem

    if isinstance(record.item, str):
        return record.item
    return record.item.text if isinstance(record.item, TextItem) else None


def _changed(collection: Any, records: list[Record], report: IngestReport, progress: _Progress) -> list[Record]:
    """Records whose id is new or whose content hash differs from the stored one (stale ones are deleted)."""
    if not records:
        return []
    got = collection.get(ids=[r.id for r in records], include=["metadatas"])
    metas = zip(got["ids"], got["metadatas"] or [], strict=False)
    stored = {rid: str((meta or {}).get("sha256", "")) for rid, meta in metas}
    todo = [r for r in records if stored.get(r.id) != r.digest]
    report.unchanged += len(records) - len(todo)
    stale = [r.id for r in todo if r.id in stored]
    if stale:
        collection.delete(ids=stale)
    progress.grow(len(todo))
    return todo


class _Progress:
    """Counts records as they are stored; the total grows as files are found to need work."""

    def grow(self, n: int) -> None:
        pass

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class _Bar(_Progress):
    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def grow(self, n: int) -> None:
        if n:
            self.bar.total = (self.bar.total or 0) + n
            self.bar.refresh()

    def update(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _progress(quiet: bool) -> _Progress:
    if quiet:
        return _Progress()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Progress()
    return _Bar(tqdm(total=0, unit="record", desc="stored", file=sys.stderr, disable=None))


# -- search ----------------------------------------------------------------------------------------
def search(args: argparse.Namespace) -> int:
    if not args.query and not args.image:
        print("error: give a QUERY text, --image PATH, or both", file=sys.stderr)
        return EXIT_ERROR
    client = open_client(args)
    try:
        return _search(args, client)
    finally:
        close_client(client)


def _search(args: argparse.Namespace, client: Any) -> int:
    from . import chroma
    from .inputs import ImageSource

    collection = client.get_collection(args.collection)
    override = None
    if args.base_url:  # the user's own host; the rest of the config is the store's, and so is its key variable
        stored = chroma.embedding_function_of(collection)
        config = stored.get_config()
        _trust.check_key_var(PROVIDERS[stored.provider], config.get("api_key_env_var"), stored.name())
        override = type(stored)(**{**config, "base_url": args.base_url})
        collection = client.get_collection(args.collection, embedding_function=override)
    try:
        result = chroma.query_mixed(
            collection,
            query_texts=[args.query] if args.query else None,
            query_images=[ImageSource(args.image)] if args.image else None,
            n_results=args.n,
            fusion=args.fusion,
        )
    except EmbeddingError as err:
        return _fail(str(err))
    finally:
        if override is not None:
            override.close()
    labels = [*([f"text {args.query!r}"] if args.query else []), *([f"image {args.image}"] if args.image else [])]
    pages = []
    for q, label in enumerate(labels):
        hits = _hits(result, q)
        if len(labels) > 1:
            print(f"\nquery: {label}")
        print(_table(hits, args.fusion))
        pages.append((label, hits))
    if args.html:
        Path(args.html).write_text(_html_page(pages), encoding="utf-8")
        print(f"wrote {args.html}")
    return EXIT_OK


@dataclass
class Hit:
    rank: int
    modality: str
    source: str
    score: float
    distance: float
    text: str | None
    page: int | None = None
    start: float | None = None
    end: float | None = None

    @property
    def at(self) -> str:
        """Where in its source the hit lies: ``p. 3``, ``0:16-0:32``, or '' for a whole file."""
        if self.page is not None:
            return f"p. {self.page}"
        if self.start is not None and self.end is not None:
            return f"{_clock(self.start)}-{_clock(self.end)}"
        return ""


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _hits(result: Any, q: int) -> list[Hit]:
    """The fused hits of query ``q`` (the texts' and images' rankings merged)."""
    hits = []
    ids = result["ids"][q] if result["ids"] else []
    for i in range(len(ids)):
        meta = (result["metadatas"][q][i] if result["metadatas"] else None) or {}
        doc = result["documents"][q][i] if result["documents"] else None
        hits.append(
            Hit(
                rank=i + 1,
                modality=str(meta.get("modality", "?")),
                source=str(meta.get("source") or (result["uris"][q][i] if result["uris"] else "") or ids[i]),
                score=float(result["scores"][q][i]),
                distance=float(result["distances"][q][i]),
                text=doc,
                page=int(meta["page"]) if isinstance(meta.get("page"), int) else None,
                start=_number(meta.get("start")),
                end=_number(meta.get("end")),
            )
        )
    return hits


def _table(hits: list[Hit], fusion: str = "calibrated") -> str:
    if not hits:
        return "no results"
    rrf = fusion == "rrf"  # RRF's scores are 1/(60 + rank) sums; calibrated ones -log10 of a chance count
    rows = [("rank", "modality", "rrf" if rrf else "relevance", "similarity", "source")]
    rows += [
        (str(h.rank), h.modality, f"{h.score:.4f}" if rrf else f"{h.score:.1f}", f"{1 - h.distance:.3f}",
         _short(h.source) + _at(h))
        for h in hits
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    return "\n".join("  ".join(r[c].ljust(widths[c]) for c in range(4)) + "  " + r[4] for r in rows)


def _at(hit: Hit) -> str:
    return f"  ({hit.at})" if hit.at else ""


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def _html_page(pages: list[tuple[str, list[Hit]]]) -> str:
    sections = "".join(
        f"<h1>Results for {html.escape(label)}</h1><ol>{''.join(_card(hit) for hit in hits)}</ol>"
        for label, hits in pages
    )
    return (
        "<!doctype html><meta charset=utf-8><title>mmembed search</title>"
        "<style>body{font-family:sans-serif}li{margin:1em 0;list-style:none}img{max-width:240px}</style>"
        + sections
    )


def _card(hit: Hit) -> str:
    body = html.escape((hit.text or "")[:400])
    if hit.modality == "image":
        thumb = _thumbnail(hit.source)
        body = f'<img src="{thumb}" alt="">' if thumb else "(image not readable here)"
    elif hit.page is not None:  # a PDF page (or a passage of one): the page's thumbnail, then its text
        thumb = _page_thumbnail(hit.source, hit.page)
        body = (f'<img src="{thumb}" alt="page {hit.page}"><br>' if thumb else "") + body
    return (
        f"<li><b>#{hit.rank}</b> {hit.modality} · score {hit.score:.4g} · "
        f"similarity {1 - hit.distance:.3f}<br><code>{html.escape(hit.source)}</code><br>{body}</li>"
    )


def _page_thumbnail(source: str, page: int) -> str | None:
    """Page ``page`` of the PDF at ``source`` as a small JPEG data URI (None when it cannot be read)."""
    from PIL import Image

    from .documents import render_page
    from .images import ImageSpec, prepare_image

    try:
        path = Path(source)
        if not path.is_file() or path.stat().st_size > 50 * 1024 * 1024:
            return None
        image = render_page(path.read_bytes(), page, 160, 200_000)
        encoded = prepare_image(image, ImageSpec(min_side=160, formats=frozenset({"JPEG"})))
    except (OSError, InputError, Image.DecompressionBombError):
        return None
    return f"data:{encoded.media_type};base64,{base64.b64encode(encoded.data).decode()}"


def _thumbnail(source: str) -> str | None:
    from PIL import Image

    from .images import ImageSpec, prepare_image

    try:
        path = Path(source)
        if not path.is_file():
            return None
        encoded = prepare_image(path, ImageSpec(min_side=160, formats=frozenset({"JPEG", "PNG"})))
    except (OSError, InputError, Image.DecompressionBombError):
        return None
    return f"data:{encoded.media_type};base64,{base64.b64encode(encoded.data).decode()}"


# -- entry point -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmembed", description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    def store_options(p: argparse.ArgumentParser) -> None:
        where = p.add_mutually_exclusive_group()
        where.add_argument("--db", help=f"embedded Chroma folder (default {default_db()}, or $MMEMBED_DB)")
        where.add_argument("--chroma-url", help="a Chroma server, e.g. http://localhost:8000")
        p.add_argument("--collection", required=True, help="collection name")
        p.add_argument("--base-url", help="provider base URL (scheme + host), e.g. the emulator's")

    ing = sub.add_parser("ingest", help="embed folders of images, texts, PDFs, video and audio into a collection")
    ing.add_argument("paths", nargs="+", help="files or folders")
    ing.add_argument("--provider", choices=sorted(PROVIDERS), required=True)
    ing.add_argument("--model", help="model (for a provider with several model roles: the first, e.g. its text model)")
    ing.add_argument("--dimensions", type=int, help="vector size for every modality")
    ing.add_argument("--cache", help="SQLite embedding cache (default: embedding-cache.sqlite in the store folder)")
    ing.add_argument("--no-cache", action="store_true", help="do not cache embeddings")
    specs = option_specs()
    for name in provider_flags():
        takers = ", ".join(n for n, c in PROVIDERS.items() if name in c.option_names)
        ing.add_argument(f"--{name.replace('_', '-')}", help=f"{takers}: {specs[name].doc}")
    ing.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    store_options(ing)
    ing.set_defaults(func=ingest)

    sea = sub.add_parser("search", help="search a collection; every modality ranked fairly")
    sea.add_argument("query", nargs="?", help="query text")
    sea.add_argument("--image", help="query image (path or URL)")
    sea.add_argument("-n", type=int, default=10, help="number of results (default 10)")
    sea.add_argument("--html", help="also write an HTML page with thumbnails of the image hits and PDF pages")
    sea.add_argument(
        "--fusion",
        choices=("calibrated", "rrf"),
        default="calibrated",
        help="merge the modalities by calibrated relevance (default) or by reciprocal rank (rrf)",
    )
    store_options(sea)
    sea.set_defaults(func=search)

    emu = sub.add_parser("emulator", help="run the offline emulator of the provider APIs")
    emu.add_argument("--host", default="127.0.0.1")
    emu.add_argument("--port", type=int, default=8765)
    emu.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    emu.add_argument("--rate-limit", type=float, help="requests per second before 429s")
    emu.set_defaults(func=run_emulator)
    return parser


def run_emulator(args: argparse.Namespace) -> int:
    from .testing.__main__ import main as emulator_main

    argv = ["--host", args.host, "--port", str(args.port), "--latency", str(args.latency)]
    if args.rate_limit:
        argv += ["--rate-limit", str(args.rate_limit)]
    return emulator_main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except EmbeddingError as err:
        return _fail(str(err))
    except ImportError as err:
        return _fail(f"{err} (install mmembed[cli])")
    except Exception as err:
        line = _store_error(err) if args.command != "emulator" else None
        if line is None:
            raise
        return _fail(line)


def _fail(message: str) -> int:
    """An error as one line on stderr, and the exit status that says so."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
