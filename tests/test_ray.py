"""mmembed.ray: N Ray workers on one key within its limit, bad rows named, rows stored in a real Chroma server.

One Ray session for the module (``ray.init(num_cpus=2)``, loopback only), small datasets: the Ray tests take
well under two minutes on two cores.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")

from conftest import CANARY_KEY, ChromaServer, jpeg_bytes  # noqa: E402
from mmembed import Embedder  # noqa: E402
from mmembed.ray import (  # noqa: E402
    ChromaDatasink,
    EmbedBatches,
    RateLimit,
    SlotSchedule,
    content_ids,
    embed_dataset,
    filter_new,
)
from mmembed.testing import Emulator, colour_photo  # noqa: E402

SRC = str(Path(__file__).resolve().parents[1] / "src")
KEYS = {"NOMIC_API_KEY": CANARY_KEY, "JINA_API_KEY": CANARY_KEY, "GOOGLE_API_KEY": CANARY_KEY}
ACTORS = {"concurrency": 4, "num_cpus": 0.25}  # 4 actors in 1 of the 2 CPUs; the rest for reads and writes


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    # Without this, Ray on Linux may bind the node to the eth0 address instead of 127.0.0.1.
    previous = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": SRC, **KEYS}},  # workers find src/ and read the key there
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()
        if previous is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = previous


@pytest.fixture(scope="module")
def limited() -> Iterator[Emulator]:
    """One emulated key limited to 10 requests per second (429 with Retry-After beyond)."""
    with Emulator(rate_limit=10) as emu:
        yield emu


def reference(provider: str, emulator: Emulator, items: list[Any]) -> np.ndarray:
    """What Embedder.embed gives for ``items`` on its own (another, unlimited emulator: same fake space)."""
    with Embedder(provider, base_url=emulator.url, api_key=CANARY_KEY) as embedder:
        return embedder.embed(items)


def photo_rows(count: int) -> list[dict[str, Any]]:
    """Photos as bytes (one Arrow column holds bytes or strings, not both: paths get their own test)."""
    colours = ["red", "blue", "green", "yellow", "purple", "orange"]
    return [
        {"id": f"p{i}", "text": None, "image": jpeg_bytes(colour_photo(colours[i % 6], size=(320, 240), seed=i))}
        for i in range(count)
    ]


def busiest_second(emulator: Emulator) -> int:
    """The most requests the emulator received within one second."""
    times = sorted(r.time for r in emulator.requests)
    return max((sum(1 for t in times if start <= t < start + 1.0) for start in times), default=0)


def by_id_error(out: list[dict[str, Any]]) -> str:
    return next(r["error"] for r in out if r["id"] == "bad")


# -- the schedule (no Ray) ------------------------------------------------------------------------------
def test_schedule_spaces_slots_at_the_rate_and_a_pause_voids_older_slots() -> None:
    schedule = SlotSchedule(600, headroom=0.0)  # 10 per second: 0.1 s apart
    epoch, offsets = schedule.reserve(5, horizon=0.25)
    assert epoch == 0
    assert np.allclose(np.diff(offsets), 0.1, atol=1e-3) and len(offsets) == 3  # the 4th would be 0.3 s out
    assert schedule.renew(epoch) is None  # no pause since: the slot stands
    schedule.pause(2.0)
    renewed = schedule.renew(epoch)
    assert renewed is not None and renewed[0] == 1 and renewed[1][0] >= 1.99  # after the pause
    burst = SlotSchedule(600, burst=3, headroom=0.0)
    assert np.allclose(burst.reserve(3, horizon=0.0)[1], 0.0, atol=1e-3)  # three at once after idling
    assert SlotSchedule(600, headroom=0.02).interval == pytest.approx(0.1 / 0.98)


# -- EmbedBatches on its own (no Ray actors) ------------------------------------------------------------
def test_embed_batches_names_bad_rows_and_sends_nothing_twice(mmembed_emulator: Emulator, tmp_path: Path) -> None:
    texts = [f"note {i}" for i in range(25)]
    good = jpeg_bytes(colour_photo("red", size=(64, 48)))
    table = pa.table(
        {
            "id": [f"r{i}" for i in range(29)],
            "text": [*texts, None, None, None, "both"],
            "image": [*[None] * 25, good, b"not an image", None, good],
        }
    )
    embed = EmbedBatches(
        "nomic", text_column="text", image_column="image",
        embedder={"base_url": mmembed_emulator.url, "api_key": CANARY_KEY},
    )
    out = embed(table)
    assert out.column_names == ["id", "text", "image", "embedding", "error"]
    errors = out.column("error").to_pylist()
    vectors = out.column("embedding").to_pylist()
    assert errors[:26] == [None] * 26 and all(v is not None for v in vectors[:26])
    assert errors[26].startswith("InputError: item") and "bytes (12 B)" in errors[26]
    assert "neither" in errors[27] and "both" in errors[28]
    assert vectors[26] is None and vectors[27] is None and vectors[28] is None
    expected = reference("nomic", mmembed_emulator, [*texts, good])
    assert np.allclose(np.array(vectors[:26], dtype=np.float32), expected, atol=1e-6)
    # 3 text requests and 1 image request, each paid once, though the batch was embedded twice
    paths = [r.path for r in mmembed_emulator.requests if r.status == 200]
    assert len(paths) == 4 + 4  # 4 for the batch, 4 for the reference above


def test_embed_batches_takes_paths_and_urls_and_narrows_a_refused_batch_to_its_row(
    mmembed_emulator: Emulator, tmp_path: Path
) -> None:
    import functools
    import http.server
    import threading

    path = tmp_path / "blue.jpg"
    path.write_bytes(jpeg_bytes(colour_photo("blue", size=(64, 48))))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/blue.jpg"  # Nomic fetches URLs itself
        elsewhere = "https://images.example.com/sea.jpg"  # the emulator refuses the whole request: 400
        embed = EmbedBatches("nomic", image_column="image", embedder={"base_url": mmembed_emulator.url, "api_key": "k"})
        out = embed(pa.table({"image": [str(path), str(tmp_path / "missing.jpg"), url, elsewhere]}))
        server.shutdown()
    errors = out.column("error").to_pylist()
    assert errors[0] is None and errors[2] is None
    assert errors[1].startswith("InputError: item 1 path") and "missing.jpg: cannot read file" in errors[1]
    assert errors[3].startswith("ProviderError:") and "images.example.com" in errors[3]  # halving found it
    vectors = out.column("embedding").to_pylist()
    expected = reference("nomic", mmembed_emulator, [path])[0]
    assert np.allclose(vectors[0], expected, atol=1e-6) and np.allclose(vectors[2], expected, atol=1e-6)


# -- the core hooks Ray relies on -------------------------------------------------------------------------
class CountingLimiter:
    def __init__(self) -> None:
        self.acquired = 0
        self.paused: list[float] = []

    def acquire(self) -> float:
        self.acquired += 1
        return 0.25  # as if it had waited

    def pause(self, seconds: float) -> None:
        self.paused.append(seconds)


def test_a_custom_rate_limiter_is_called_per_attempt_and_told_of_429s(mmembed_emulator: Emulator) -> None:
    limiter = CountingLimiter()
    embedder = Embedder("nomic", base_url=mmembed_emulator.url, api_key="k", rate_limiter=limiter)
    mmembed_emulator.inject("429")
    embedder.embed([f"t{i}" for i in range(20)])  # 2 requests, one retried
    assert limiter.acquired == 3 and limiter.paused == [1.0]
    stats = embedder.stats
    assert (stats.requests, stats.retries, stats.rate_limited, stats.waited) == (3, 1, 1, pytest.approx(0.75))


class DictCache:
    """A shared cache as a user would plug in: only get_many and put_many."""

    def __init__(self) -> None:
        self.store: dict[str, np.ndarray] = {}

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        return {k: self.store[k] for k in keys if k in self.store}

    def put_many(self, entries: Any) -> None:
        self.store.update(entries)


def test_any_object_with_get_many_and_put_many_is_a_cache(mmembed_emulator: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "red.jpg"
    path.write_bytes(jpeg_bytes(colour_photo("red", size=(64, 48))))
    cache = DictCache()
    items = ["a", "b", path]
    first = Embedder("jina", base_url=mmembed_emulator.url, api_key="k", cache=cache).embed(items)
    sent = len(mmembed_emulator.requests)
    again = Embedder("jina", base_url=mmembed_emulator.url, api_key="k", cache=cache).embed(items)
    assert len(mmembed_emulator.requests) == sent and len(cache.store) == 3  # nothing sent the second time
    assert np.array_equal(first, again)
    with pytest.raises(TypeError, match="get_many"):
        Embedder("jina", api_key="k", cache=42)  # type: ignore[arg-type]


def test_image_threads_follow_the_cpu_share(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmembed import cpus

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0}, raising=False)
    assert cpus.cpu_share() == 1
    embedder = Embedder("jina", api_key="k")
    _, prep = embedder._pools()
    assert prep._max_workers == 1  # not os.cpu_count()
    embedder.close()


@pytest.mark.parametrize("provider", ["nomic", "jina", "vertex"])
def test_an_embedder_pickles_without_its_key_fresh_and_after_use(
    provider: str, mmembed_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mmembed.providers import PROVIDERS

    assert provider in PROVIDERS
    options: dict[str, Any] = {"base_url": mmembed_emulator.url, "api_key": CANARY_KEY}
    if provider == "vertex":
        options.update(project_id="p", credentials=object())  # credentials are dropped like the key
    embedder = Embedder(provider, cache=tmp_path / "c.sqlite", **options)
    fresh = pickle.dumps(embedder)
    vectors = embedder.embed(["a cat", jpeg_bytes(colour_photo("red", size=(64, 48)))])  # pools, cache opened
    used = pickle.dumps(embedder)
    for blob in (fresh, used):
        assert CANARY_KEY.encode() not in blob
    monkeypatch.setenv(embedder.provider.api_key_env_var, CANARY_KEY)
    copy = pickle.loads(used)
    assert np.array_equal(copy.embed(["a cat"]), vectors[:1])
    assert len(copy.cache) == 2  # the same SQLite file, opened anew


def test_every_registered_provider_pickles(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmembed.providers import PROVIDERS

    for name, cls in PROVIDERS.items():
        monkeypatch.setenv(cls.env_var, CANARY_KEY)
        options = dict(cls.test_options)
        if not cls.default_base_url:  # a server of the user's own
            options["base_url"] = "http://localhost:8000"
        blob = pickle.dumps(Embedder(name, **options))
        assert CANARY_KEY.encode() not in blob and pickle.loads(blob).provider_name == name


# -- on Ray ---------------------------------------------------------------------------------------------
def test_rate_limit_is_one_actor_and_pickles_as_its_name(ray_session: None) -> None:
    limit = RateLimit("nomic", requests_per_minute=600_000, name="cost-probe")
    same = pickle.loads(pickle.dumps(limit))
    cost = limit.acquire_cost(50)
    started = time.perf_counter()
    for _ in range(500):
        same.acquire()  # leased 50 ms ahead: ~1 actor call per 500 slots at 10,000/s
    leased = (time.perf_counter() - started) / 500
    counts = limit.counts()
    unleased = RateLimit("nomic", requests_per_minute=600_000, name="cost-probe-unleased", lease_seconds=0)
    started = time.perf_counter()
    for _ in range(200):
        unleased.acquire()  # one actor call per slot
    one_by_one = (time.perf_counter() - started) / 200
    print(f"\nactor round trip {cost * 1e3:.2f} ms; acquire at 10,000/s: {leased * 1e3:.3f} ms leased "
          f"50 ms ahead, {one_by_one * 1e3:.3f} ms one call per slot; {counts}")
    assert cost < 0.05 and counts["granted"] >= 500 and leased < one_by_one
    with pytest.raises(ValueError, match="another rate"):
        RateLimit("nomic", requests_per_minute=60, name="cost-probe")


def test_a_429_met_by_one_worker_pauses_the_others(ray_session: None, mmembed_emulator: Emulator) -> None:
    import threading

    limit = RateLimit("nomic", requests_per_minute=1200, name="pause-probe")  # 20/s: slots 53 ms apart
    workers = [
        Embedder("nomic", base_url=mmembed_emulator.url, api_key="k", rate_limiter=pickle.loads(pickle.dumps(limit)))
        for _ in range(2)
    ]  # as in two processes: each has its own copy, they share only the actor
    mmembed_emulator.inject("429")  # Retry-After: 1
    texts = [[f"w{n} t{i}" for i in range(60)] for n in range(2)]
    threads = [threading.Thread(target=w.embed, args=(t,)) for w, t in zip(workers, texts, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log = sorted(mmembed_emulator.requests, key=lambda r: r.time)
    refused = next(r.time for r in log if r.status == 429)
    during = [round(r.time - refused, 3) for r in log if refused < r.time < refused + 0.9]
    assert limit.counts()["pauses"] == 1 and len(log) == 13  # 12 requests and one retry
    assert all(t < 0.06 for t in during), during  # at most a slot already leased, then silence for both
    assert sum(w.stats.rate_limited for w in workers) == 1


@pytest.mark.parametrize("provider", ["nomic", "jina", "vertex"])
def test_a_worker_rebuilds_an_embedder_from_its_pickle(ray_session: None, provider: str) -> None:
    with Emulator() as emu:
        options = {"base_url": emu.url, "api_key": CANARY_KEY, "project_id": "p"} if provider == "vertex" else {
            "base_url": emu.url, "api_key": CANARY_KEY}
        embedder = Embedder(provider, **options)

        @ray.remote(num_cpus=0.25)
        def remote_embed(e: Embedder) -> tuple[np.ndarray, int]:
            from mmembed.cpus import cpu_share

            return e.embed(["a red square"]), cpu_share()

        vectors, share = ray.get(remote_embed.remote(embedder))  # the key came from the worker's env
        assert np.array_equal(vectors, embedder.embed(["a red square"]))
        assert share == 1  # the task's 0.25 CPU, not the node's 2


def test_four_actors_on_one_key_stay_within_its_limit_and_store_every_good_row(
    ray_session: None, limited: Emulator, chroma_server: ChromaServer, tmp_path: Path
) -> None:
    texts = [{"id": f"t{i}", "text": f"note number {i} about colour {i % 7}", "image": None} for i in range(600)]
    photos = photo_rows(24)
    corrupt = {"id": "bad", "text": None, "image": b"\xff\xd8\xff\xe0 truncated jpeg"}
    rows = [*texts[:300], *photos, corrupt, *texts[300:]]
    limited.clear()
    limit = RateLimit("nomic", requests_per_minute=600, name="acceptance")  # the key's 10 requests per second
    ds = ray.data.from_items(rows, override_num_blocks=8)
    started = time.monotonic()
    embedded = embed_dataset(
        ds, "nomic", text_column="text", image_column="image", rate_limit=limit, batch_size=40,
        embedder={"base_url": limited.url, "max_retries": 8}, concurrency=4,  # 0.25 CPU each, by default here
    ).materialize()
    took = time.monotonic() - started
    out = embedded.take_all()  # (not to_pandas(): Ray's own call trips a pandas deprecation warning)
    stats = limited.stats
    times = [r.time for r in limited.requests]
    steady = (len(times) - 1) / (max(times) - min(times))
    print(f"\nshared limiter: {len(rows)} rows in {took:.1f} s (actors starting included), {stats.requests} "
          f"requests, {steady:.2f} req/s from first to last, busiest second {busiest_second(limited)}, "
          f"{stats.rate_limited} x 429, {limit.counts()}")
    # 10 is what the schedule sends; the emulator stamps arrivals in this busy process (a loaded 2-core machine
    # delays some, which then land with the next), so allow two of jitter. The server's own limit is the
    # guarantee: no 429 (asserted below).
    assert busiest_second(limited) <= 12
    assert [(r["id"], r["error"]) for r in out if r["error"] is not None] == [("bad", by_id_error(out))]
    assert stats.rate_limited == 0
    assert sorted(r["id"] for r in out) == sorted(r["id"] for r in rows)  # every id back exactly once
    assert list(out[0]) == ["id", "text", "image", "embedding", "error"]
    by_id = {r["id"]: r for r in out}
    assert by_id["bad"]["embedding"] is None and by_id["bad"]["error"].startswith("InputError:")
    good = [r for r in rows if r["id"] != "bad"]
    items = [r["text"] if r["text"] is not None else r["image"] for r in good]
    with Emulator() as free:
        expected = reference("nomic", free, items)
    got = np.stack([np.asarray(by_id[r["id"]]["embedding"], dtype=np.float32) for r in good])
    assert np.allclose(got, expected, atol=1e-6)
    assert sum(r["error"] is None for r in out) == len(good)

    sink = ChromaDatasink(
        collection="ray-acceptance", host=chroma_server.host, port=chroma_server.port,
        document_column="text", metadata_columns=["id"], batch_size=100,
    )
    started = time.monotonic()
    embedded.write_datasink(sink)
    print(f"ChromaDatasink: {sink.written} rows written in {time.monotonic() - started:.1f} s")
    assert (sink.written, sink.skipped) == (len(good), 1)
    with sink.connect() as collection:
        stored = collection.get(include=["embeddings"])
    assert sorted(stored["ids"]) == sorted(r["id"] for r in good)
    vectors = dict(zip(stored["ids"], stored["embeddings"], strict=True))
    assert np.allclose(vectors["t5"], by_id["t5"]["embedding"], atol=1e-6)


def test_per_actor_limiters_draw_429s_where_the_shared_one_does_not(ray_session: None, limited: Emulator) -> None:
    """The negative control: each of 4 actors paces itself at the key's rate, so together they send 4x it."""
    rows = [{"text": f"control {i}"} for i in range(800)]
    limited.clear()
    time.sleep(1.0)  # let the emulator's bucket refill after the previous test
    out = embed_dataset(
        ray.data.from_items(rows, override_num_blocks=8), "nomic", text_column="text", rate_limit=False,
        batch_size=100, embedder={"base_url": limited.url, "requests_per_minute": 600, "max_retries": 10}, **ACTORS,
    ).take_all()
    busiest = busiest_second(limited)
    print(f"\nper-actor limiters: {limited.stats.requests} requests, {limited.stats.rate_limited} x 429, "
          f"busiest second {busiest} requests")
    assert limited.stats.rate_limited > 0 and busiest > 10
    assert len(out) == len(rows) and all(r["error"] is None for r in out)  # retries got every row through


def test_content_ids_make_the_destination_the_cache(ray_session: None, chroma_server: ChromaServer) -> None:
    with Emulator() as emu:
        ds = content_ids(ray.data.from_items([{"text": f"doc {i % 5}"} for i in range(10)]), text_column="text")
        ids = [r["id"] for r in ds.take_all()]
        assert len(set(ids)) == 5 and {len(i) for i in ids} == {32}  # same content, same id
        sink = ChromaDatasink(collection="ray-dedup", host=chroma_server.host, port=chroma_server.port)
        first = embed_dataset(ds.limit(3), "jina", text_column="text", rate_limit=False,
                              embedder={"base_url": emu.url}, num_cpus=0.25)
        first.write_datasink(sink)
        new = filter_new(ds, sink)
        assert sorted({r["text"] for r in new.take_all()}) == ["doc 3", "doc 4"]
