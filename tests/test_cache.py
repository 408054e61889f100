"""The embedding cache: what a failed call already paid for is kept, processes share it, keys follow settings."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import jpeg_bytes, make_embedder
from mmembed import Embedder, EmbeddingCache, InputError, ProviderError
from mmembed.inputs import ImageItem, TextItem
from mmembed.testing import Emulator, Fault, colour_photo
from mmembed.transport import RetryPolicy

TEXTS = [f"text number {i}" for i in range(58)]
GOOD = jpeg_bytes(colour_photo("green", size=(64, 48)))
OTHER = jpeg_bytes(colour_photo("blue", size=(64, 48)))


def sent_texts(emulator: Emulator, *, ok_only: bool = False) -> list[str]:
    return [
        t
        for r in emulator.requests
        if r.path == "/v1/embedding/text" and (r.status == 200 or not ok_only)
        for t in r.json["texts"]
    ]


def image_requests(emulator: Emulator) -> list[int]:
    """The number of images in each image request."""
    return [len(r.files) for r in emulator.requests if r.path == "/v1/embedding/image"]


def clean_run(items: list[object], **options: Any) -> np.ndarray:
    with Emulator() as emulator, make_embedder("nomic", emulator, requests_per_minute=1e6, **options) as embedder:
        return embedder.embed(items)


# -- a call that fails half-way keeps what it already paid for -------------------------------------------


def test_bad_image_late_in_a_long_list_keeps_the_finished_batches(
    tmp_path: Path, mmembed_emulator: Emulator
) -> None:
    items: list[object] = list(TEXTS)
    items.insert(20, GOOD)
    items.insert(55, b"this is not an image")
    cache = tmp_path / "c.sqlite"
    with make_embedder(
        "nomic", mmembed_emulator, cache=cache, max_concurrency=1, requests_per_minute=1e6
    ) as embedder, pytest.raises(InputError) as info:
        embedder.embed(items)
    assert info.value.index == 55
    assert image_requests(mmembed_emulator) == []  # the image batch with the bad item never left
    paid = sent_texts(mmembed_emulator, ok_only=True)
    # Every full text batch went out while the list was read; the last, partial one races the failing image
    # batch at the end (sent, or cancelled before it started): either way the cache holds what was answered.
    assert set(TEXTS[:50]) <= set(paid)
    assert len(EmbeddingCache(cache)) == len(paid)

    mmembed_emulator.clear()
    items[55] = OTHER  # the caller fixes the item and tries again
    with make_embedder("nomic", mmembed_emulator, cache=cache, requests_per_minute=1e6) as embedder:
        vectors = embedder.embed(items)
    assert sorted(sent_texts(mmembed_emulator)) == sorted(set(TEXTS) - set(paid))  # only the rest is sent
    assert image_requests(mmembed_emulator) == [2]  # both images, in one request
    assert np.array_equal(vectors, clean_run(items))


def test_a_batch_that_exhausts_its_retries_leaves_the_others_cached(
    tmp_path: Path, mmembed_emulator: Emulator
) -> None:
    cache = tmp_path / "c.sqlite"
    done = [0]

    def progress(count: int) -> None:  # after three batches, the server breaks for one batch's every attempt
        done[0] += count
        if done[0] == 30:
            mmembed_emulator.inject(Fault("status", status=503, retry_after=0), times=3)

    with make_embedder(
        "nomic", mmembed_emulator, cache=cache, max_concurrency=1, requests_per_minute=1e6
    ) as embedder, pytest.raises(ProviderError) as info:
        embedder.provider.transport.retry = RetryPolicy(max_retries=2, backoff_base=0.01)
        embedder.embed(TEXTS, progress=progress)
    assert info.value.status == 503
    log = mmembed_emulator.requests
    failed = [r for r in log if r.status == 503]
    assert len(failed) == 3 and len({tuple(r.json["texts"]) for r in failed}) == 1  # one batch, three attempts
    lost = set(failed[0].json["texts"])
    paid = set(sent_texts(mmembed_emulator, ok_only=True))
    assert set(TEXTS[:30]) <= paid and not lost & paid
    assert len(EmbeddingCache(cache)) == len(paid)  # every answered batch, and nothing else

    mmembed_emulator.clear()
    with make_embedder("nomic", mmembed_emulator, cache=cache, requests_per_minute=1e6) as embedder:
        vectors = embedder.embed(TEXTS)
    resent = sent_texts(mmembed_emulator)
    assert sorted(resent) == sorted(set(TEXTS) - paid)  # exactly the rest, each once
    assert lost <= set(resent)
    assert np.array_equal(vectors, clean_run(TEXTS))


def test_concurrent_failure_cache_matches_what_was_answered(tmp_path: Path, mmembed_emulator: Emulator) -> None:
    """With requests in parallel, which batches finish before the error varies; the invariant does not."""
    items: list[object] = [*TEXTS, None]
    cache = tmp_path / "c.sqlite"
    with make_embedder("nomic", mmembed_emulator, cache=cache, max_concurrency=4, requests_per_minute=1e6) as e:
        with pytest.raises(InputError) as info:
            e.embed(items)
    assert info.value.index == len(TEXTS)
    paid = set(sent_texts(mmembed_emulator, ok_only=True))
    # Batches already running finish and are stored; one still queued when None is met is cancelled.
    assert len(EmbeddingCache(cache)) == len(paid)
    mmembed_emulator.clear()
    with make_embedder("nomic", mmembed_emulator, cache=cache, requests_per_minute=1e6) as e:
        e.embed(TEXTS)
    assert sorted(sent_texts(mmembed_emulator)) == sorted(set(TEXTS) - paid)


# -- hits --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["nomic", "jina", "vertex"])
def test_a_rerun_sends_nothing_and_returns_the_same_vectors(
    provider: str, tmp_path: Path, mmembed_emulator: Emulator
) -> None:
    items: list[object] = ["a red square", GOOD, "the blue sea", OTHER, "a red square"]
    cache = str(tmp_path / "sub" / "c.sqlite")  # a str path; the folder is created
    with make_embedder(provider, mmembed_emulator, cache=cache, requests_per_minute=1e6) as embedder:
        first = embedder.embed(items)
        sent = len(mmembed_emulator.requests)
        second = embedder.embed(items)
    assert sent > 0 and len(mmembed_emulator.requests) == sent
    assert second.dtype == np.float32 and np.array_equal(first, second)
    assert len(EmbeddingCache(cache)) == 4  # the duplicate is stored once


# -- two processes -----------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from mmembed import Embedder, EmbeddingCache

    url, path, out = sys.argv[1:4]
    cache = EmbeddingCache(path)
    assert cache.get("from-parent") is not None, "the parent's entry is visible"
    with Embedder("jina", base_url=url, api_key="child-key", cache=cache) as embedder:
        np.save(out, embedder.embed([f"shared text {i}" for i in range(12)]))
    for i in range(300):  # and write while the parent writes
        cache.put_many([(f"child-{i}", np.full(8, i, np.float32))])
    """
)


def test_two_processes_share_one_cache(tmp_path: Path, mmembed_emulator: Emulator) -> None:
    path = tmp_path / "c.sqlite"
    cache = EmbeddingCache(path)
    cache.put_many([("from-parent", np.ones(8, np.float32))])
    out = tmp_path / "child.npy"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, mmembed_emulator.url, str(path), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    for i in range(300):
        cache.put_many([(f"parent-{i}", np.full(8, -i, np.float32))])
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 0, stderr.decode()

    child_vectors = np.load(out)
    requests_by_child = len(mmembed_emulator.requests)
    assert requests_by_child == 1
    with make_embedder("jina", mmembed_emulator, cache=path) as embedder:
        mine = embedder.embed([f"shared text {i}" for i in range(12)])
    assert len(mmembed_emulator.requests) == requests_by_child  # every vector came from the child's writes
    assert np.array_equal(mine, child_vectors)
    keys = [f"child-{i}" for i in range(300)] + [f"parent-{i}" for i in range(300)]
    found = cache.get_many(keys)
    assert len(found) == 600
    assert found["child-299"][0] == 299 and found["parent-299"][0] == -299


# -- connections: one per cache, closed with it ----------------------------------------------------------


def open_handles(path: Path) -> list[str]:
    """This process's open file descriptors on the SQLite file ``path`` (its -wal and -shm files included)."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc/self/fd (Linux) to count open files")
    targets = []
    for fd in fds.iterdir():
        try:
            targets.append(str(fd.readlink()))
        except OSError:  # closed while we listed
            pass
    return [t for t in targets if t.startswith(str(path))]


def test_an_embedder_with_many_threads_holds_one_connection_and_closes_it(
    tmp_path: Path, mmembed_emulator: Emulator
) -> None:
    path = tmp_path / "c.sqlite"
    with make_embedder(
        "nomic", mmembed_emulator, cache=path, max_concurrency=8, requests_per_minute=1e6
    ) as embedder:
        vectors = embedder.embed([f"thread text {i}" for i in range(400)])  # batches stored by worker threads
        assert len([t for t in open_handles(path) if t == str(path)]) == 1  # one connection, whichever thread
    assert vectors.shape[0] == 400 and len(mmembed_emulator.requests) > 1
    assert open_handles(path) == []  # closed with the Embedder, not left to the garbage collector
    with EmbeddingCache(path) as cache:
        assert len(cache) == 400
    assert open_handles(path) == []


def test_a_closed_cache_opens_again_and_threads_share_it(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    cache.close()
    cache.put_many([("after-close", np.ones(4, np.float32))])  # a later call opens it again
    assert cache.get("after-close") is not None

    def write(n: int) -> None:
        for i in range(50):
            cache.put_many([(f"{n}-{i}", np.full(4, n, np.float32))])
            assert cache.get_many([f"{n}-{i}"])[f"{n}-{i}"][0] == n

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 1 + 8 * 50
    cache.close()
    assert open_handles(tmp_path / "c.sqlite") == []


# -- keys follow every setting that changes a vector -------------------------------------------------------


def offline(provider: str, **options: Any) -> Embedder:
    if provider == "vertex":
        options.setdefault("project_id", "p")
    options.setdefault("api_key", "k")
    return Embedder(provider, base_url="http://127.0.0.1:9", **options)


def test_cache_key_changes_with_provider_model_dimensions_and_task() -> None:
    text = TextItem("a red square")
    variants = [
        offline("nomic"),
        offline("nomic", dimensions=256),
        offline("nomic", text_model="nomic-embed-text-v1"),
        offline("jina"),
        offline("jina", dimensions=256),
        offline("jina", model="jina-embeddings-v4"),
        offline("vertex"),
        offline("vertex", dimensions=256),
    ]
    keys = [e.cache_key(text, task) for e in variants for task in ("document", "query")]
    assert len(set(keys)) == len(keys)
    # Settings that do not change the vector do not change the key.
    assert offline("jina").cache_key(text, "query") == offline("jina", max_retries=0, timeout=5).cache_key(
        text, "query"
    )
    assert offline("jina").cache_key(text, "query") == offline("jina", api_key="other").cache_key(text, "query")


def test_nomic_image_keys_ignore_the_task_because_the_endpoint_does() -> None:
    image = ImageItem(source="bytes", raw=GOOD)
    embedder = offline("nomic")
    assert embedder.cache_key(image, "document") == embedder.cache_key(image, "query")
    assert embedder.cache_key(image, "document") != offline("nomic", dimensions=256).cache_key(image, "document")
    assert embedder.cache_key(image, "document") != offline(
        "nomic", text_model="nomic-embed-text-v1"
    ).cache_key(image, "document")  # v1 text pairs with the v1 vision model


def test_image_keys_change_with_the_upload_size() -> None:
    """image_side changes the pixels sent, so the vector: it must not hit a vector made at another size."""
    image = ImageItem(source="bytes", raw=GOOD)
    assert offline("jina").cache_key(image, "document") != offline("jina", image_side=32).cache_key(
        image, "document"
    )
    text = TextItem("x")
    assert offline("jina").cache_key(text, "document") == offline("jina", image_side=32).cache_key(text, "document")


@pytest.mark.parametrize(
    "change",
    [
        {"dimensions": 512},
        {"model": "jina-embeddings-v4"},
        {"image_side": 32},
        "query",
    ],
)
def test_a_changed_setting_misses_the_cache(
    change: dict[str, Any] | str, tmp_path: Path, mmembed_emulator_factory: Callable[..., Emulator]
) -> None:
    emulator = mmembed_emulator_factory()
    cache = tmp_path / "c.sqlite"
    big = jpeg_bytes(colour_photo("red", size=(256, 200)))
    with make_embedder("jina", emulator, cache=cache) as embedder:
        before = embedder.embed(["hello", big])
    emulator.clear()
    options = change if isinstance(change, dict) else {}
    with make_embedder("jina", emulator, cache=cache, **options) as embedder:
        after = embedder.embed_query(["hello", big]) if change == "query" else embedder.embed(["hello", big])
    (request,) = emulator.requests
    if change == {"image_side": 32}:
        assert request.json["input"][0]["image"]  # only the image is re-sent: its upload differs
        assert len(request.json["input"]) == 1
        assert np.array_equal(after[0], before[0]) and not np.array_equal(after[1], before[1])
    else:
        assert len(request.json["input"]) == 2


# -- file digests: a rerun over unchanged files does not read them -------------------------------------------


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every image file whose bytes get hashed (read in full), in order."""
    import mmembed.inputs as inputs

    real = inputs._hash_raw
    seen: list[Path] = []

    def spy(raw: Any) -> str:
        if isinstance(raw, Path):
            seen.append(raw)
        return real(raw)

    monkeypatch.setattr(inputs, "_hash_raw", spy)
    return seen


def photo_files(folder: Path, colours: tuple[str, ...] = ("red", "green", "blue")) -> list[Path]:
    paths = []
    for colour in colours:
        path = folder / f"{colour}.jpg"
        path.write_bytes(jpeg_bytes(colour_photo(colour, size=(96, 64))))
        paths.append(path)
    return paths


def test_unchanged_files_are_not_read_again(
    tmp_path: Path, mmembed_emulator: Emulator, hashed: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmembed.cache

    monkeypatch.setattr(mmembed.cache, "RACY_SECONDS", 0.0)  # the files were written a moment ago
    paths = photo_files(tmp_path)
    cache = tmp_path / "cache.sqlite"
    first = make_embedder("nomic", mmembed_emulator, cache=cache).embed(paths)
    assert hashed == paths
    hashed.clear()
    mmembed_emulator.clear()

    again = make_embedder("nomic", mmembed_emulator, cache=cache).embed(paths)
    assert hashed == []  # neither read to hash them nor sent
    assert mmembed_emulator.requests == []
    assert (again == first).all()


def test_a_file_changed_behind_an_unchanged_mtime_is_read_and_sent_again(
    tmp_path: Path, mmembed_emulator: Emulator, hashed: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same size, and the old mtime put back: the change time (which nothing can set back) still moved."""
    import os

    import mmembed.cache

    monkeypatch.setattr(mmembed.cache, "RACY_SECONDS", 0.0)
    red = tmp_path / "photo.bmp"  # uncompressed: another picture of the same size has the same length
    colour_photo("red", size=(96, 64)).save(red, "BMP")
    cache = tmp_path / "cache.sqlite"
    first = make_embedder("nomic", mmembed_emulator, cache=cache).embed([red])
    old = os.stat(red)
    if old.st_ctime_ns % 1_000_000_000 == 0:
        pytest.skip("this file system keeps whole-second times: RACY_SECONDS, switched off here, covers it")
    colour_photo("green", size=(96, 64)).save(red, "BMP")
    os.utime(red, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert os.stat(red).st_size == old.st_size and os.stat(red).st_mtime_ns == old.st_mtime_ns
    hashed.clear()
    mmembed_emulator.clear()

    second = make_embedder("nomic", mmembed_emulator, cache=cache).embed([red])
    assert hashed == [red]
    assert len(mmembed_emulator.requests) == 1
    assert not np.allclose(first, second)  # the green picture's vector, not the red one's from the cache


def test_a_file_hashed_in_the_tick_of_its_last_change_is_hashed_again(
    tmp_path: Path, mmembed_emulator: Emulator, hashed: list[Path]
) -> None:
    """Written and hashed within RACY_SECONDS: a same-tick rewrite could hide, so the memo is not trusted."""
    paths = photo_files(tmp_path, ("red",))
    cache = tmp_path / "cache.sqlite"
    make_embedder("nomic", mmembed_emulator, cache=cache).embed(paths)
    make_embedder("nomic", mmembed_emulator, cache=cache).embed(paths)
    assert hashed == paths * 2
    assert len(mmembed_emulator.requests) == 1  # the vector itself still came from the cache


def test_a_file_that_vanished_is_named(tmp_path: Path, mmembed_emulator: Emulator) -> None:
    gone = tmp_path / "gone.jpg"
    with pytest.raises(InputError, match="cannot read file") as info:
        make_embedder("nomic", mmembed_emulator, cache=tmp_path / "cache.sqlite").embed(["a text", gone])
    assert info.value.index == 1 and "gone.jpg" in str(info.value)
