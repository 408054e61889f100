"""Throughput against a self-hosted server of fixed capacity: how much of the GPU each client pattern uses.

    .venv/bin/python benchmarks/selfhosted.py            # about a minute; prints a Markdown table
    .venv/bin/python benchmarks/selfhosted.py --append   # ... and appends it to benchmarks/RESULTS.md

An emulated vLLM server serving CLIP (``mmembed.testing.vllm``) runs in its own process with a capacity: it
embeds ``--capacity`` items a second, one request after another, holds ``--queue`` requests waiting and answers
503 beyond that (vLLM's ``--max-num-queued-reqs``). Its own clock gives each run's throughput (items served
from the first start to the last finish), so the *fraction of capacity* is the server's figure, not the
client's. The contenders embed the same items (small photos and short texts):

* **mmembed, no settings** — ``Embedder("vllm", base_url=...)``: adaptive concurrency, images one per request
  (what every vLLM takes);
* **mmembed, image_batch** — the same with ``image_batch=True`` (servers with batched chat embeddings);
* **mmembed, flood** — a fixed 64 requests in flight (``max_concurrency=64`` and a rate limit, which turns the
  adaptive limit off): what a client that only retries does;
* **one at a time** — the request pattern of Chroma's ``OpenCLIPEmbeddingFunction`` (the anchor users pick for
  local CLIP): it encodes one item per model call, in a loop; here each call is one HTTP request, sequential.

The default capacity (100 items/s) keeps the request rate of one-photo requests within what two shared cores
can push through a Python client and server; at 200 items/s the flood row shows that ceiling (it cannot use
the capacity either), and ``image_batch`` still reaches it.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
MODEL = "openai/clip-vit-base-patch32"


def serve(conn: Connection, capacity: float, queue: int) -> None:
    """The emulator's process: serve until told to stop, then send the capacity's counters and the 503 count."""
    from mmembed.testing import Emulator
    from mmembed.testing._selfhosted import Capacity

    cap = Capacity(capacity, queue=queue)
    with Emulator(vllm_capacity=cap, vllm_batched_chat=True) as emu:
        conn.send(emu.url_for("vllm"))
        while True:
            message = conn.recv()
            if message == "stop":
                break
            stats = cap.stats()
            conn.send((stats.served, stats.achieved, emu.stats.responses_by_status.get(503, 0), emu.stats.requests))
            cap.reset()
            emu.clear()


@dataclass
class Row:
    name: str
    wall: float
    served: int
    achieved: float
    refused: int
    requests: int


def items(photos: int, texts: int) -> list[Any]:
    from mmembed.testing import colour_photo

    colours = ("red", "green", "blue", "yellow", "purple", "orange")
    out: list[Any] = []
    for i in range(photos):
        buf = io.BytesIO()
        colour_photo(colours[i % len(colours)], size=(64, 48), seed=i).save(buf, "PNG")
        out.append(buf.getvalue())
    return out + [f"caption {i}: a {colours[i % len(colours)]} thing" for i in range(texts)]


def with_mmembed(url: str, batch: list[Any], **options: Any) -> None:
    from mmembed import Embedder

    with Embedder("vllm", base_url=url, model=MODEL, **options) as embedder:
        vectors = embedder.embed(batch)
    assert vectors.shape[0] == len(batch)


def one_at_a_time(url: str, batch: list[Any]) -> None:
    """One request per item, in a loop (Chroma's OpenCLIP function's pattern), retrying a 503 after 0.1 s."""
    import base64

    session = requests.Session()
    for item in batch:
        if isinstance(item, str):
            body: dict[str, Any] = {"model": MODEL, "input": [item]}
        else:
            uri = "data:image/png;base64," + base64.b64encode(item).decode()
            body = {"model": MODEL, "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": uri}}]}]}
        while session.post(f"{url}/v1/embeddings", json=body, timeout=60).status_code == 503:
            time.sleep(0.1)


def run(conn: Connection, url: str, name: str, batch: list[Any], client: Any, **options: Any) -> Row:
    started = time.monotonic()
    client(url, batch, **options)
    wall = time.monotonic() - started
    conn.send("stats")
    served, achieved, refused, count = conn.recv()
    return Row(name, wall, served, achieved, refused, count)


def table(rows: list[Row], capacity: float, queue: int, photos: int, texts: int) -> str:
    lines = [
        f"### Self-hosted: a vLLM server of {capacity:g} items/s with {queue} requests of queue "
        f"({photos} photos 64x48 + {texts} texts)",
        "",
        "`.venv/bin/python benchmarks/selfhosted.py`: the emulated server's own clock gives the throughput "
        "(items from its first start to its last finish). *fraction*: of the capacity; *503s*: refusals the "
        "client met (and retried); *requests*: all the server received.",
        "",
        "| client | wall s | items/s (server) | fraction of capacity | 503s | requests |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row.name} | {row.wall:.2f} | {row.achieved:.0f} | {row.achieved / capacity:.2f} | "
                     f"{row.refused} | {row.requests} |")
    base = next(r for r in rows if r.name.startswith("one at a time"))
    best = rows[0]
    lines += ["", f"mmembed with no settings: {base.wall / best.wall:.1f} x the one-at-a-time pattern's speed "
                  f"({best.achieved / capacity:.2f} vs {base.achieved / capacity:.2f} of capacity)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--capacity", type=float, default=100.0)
    parser.add_argument("--queue", type=int, default=8)
    parser.add_argument("--photos", type=int, default=400)
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(theirs, args.capacity, args.queue), daemon=True)
    server.start()
    url = ours.recv()
    batch = items(args.photos, args.texts)
    rows = [
        run(ours, url, "mmembed, no settings (adaptive)", batch, with_mmembed),
        run(ours, url, "mmembed, `image_batch=True`", batch, with_mmembed, image_batch=True),
        run(ours, url, "mmembed, flood (64 in flight, no adaptivity)", batch, with_mmembed, max_concurrency=64,
            requests_per_minute=1e9),
        run(ours, url, "one at a time (Chroma OpenCLIP's pattern)", batch, one_at_a_time),
    ]
    ours.send("stop")
    server.join(10)
    text = table(rows, args.capacity, args.queue, args.photos, args.texts)
    print(text)
    if args.append:
        with (HERE / "RESULTS.md").open("a") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    sys.exit(main())
