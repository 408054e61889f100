"""Bulk ingest on Ray Data: 4 actors on one API key within its limit, bad rows named, rows stored in Chroma.

    python examples/ray_ingest.py [nomic|jina|vertex]          # default: nomic; needs mmembed[ray]

Runs on one machine against mmembed's offline emulator (fake vectors), its key limited to 10 requests per
second, and a ``chroma run`` server it starts on a free loopback port. On a cluster, drop the emulator, call
``ray.init(address=..., runtime_env={"env_vars": {"NOMIC_API_KEY": key}})`` and point the sink at your server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on 127.0.0.1

import ray
import requests

from mmembed.providers import PROVIDERS
from mmembed.ray import ChromaDatasink, RateLimit, content_ids, embed_dataset, filter_new
from mmembed.testing import Emulator, colour_photo

SRC = str(Path(__file__).resolve().parents[1] / "src")


def photo(colour: str, seed: int) -> bytes:
    import io

    buf = io.BytesIO()
    colour_photo(colour, size=(640, 480), seed=seed).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def start_chroma(folder: str) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    chroma = Path(sys.executable).with_name("chroma")
    proc = subprocess.Popen(
        [str(chroma), "run", "--path", folder, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            if requests.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).ok:
                return proc, port
        except requests.RequestException:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("chroma run did not start")


def main(provider: str) -> None:
    cls = PROVIDERS[provider]
    rows = [{"text": f"note {i}: something {('red', 'blue', 'green')[i % 3]}", "image": None} for i in range(200)]
    rows += [{"text": None, "image": photo(("red", "blue", "yellow")[i % 3], i)} for i in range(12)]
    rows.append({"text": None, "image": b"\xff\xd8\xff not really a JPEG"})

    with Emulator(rate_limit=10) as emu, tempfile.TemporaryDirectory() as folder:
        chroma, port = start_chroma(folder)
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            # Workers read the key from their environment: it never travels in a pickle.
            runtime_env={"env_vars": {"PYTHONPATH": SRC, cls.env_var: "emulator-key"}},
        )
        try:
            sink = ChromaDatasink(collection="media", host="127.0.0.1", port=port, document_column="text")
            ds = content_ids(ray.data.from_items(rows), text_column="text", image_column="image")
            ds = filter_new(ds, sink)  # the destination is the cache: ids already stored are not embedded
            limit = RateLimit(provider, requests_per_minute=600)  # the key's 10 requests per second
            options = {"base_url": emu.url, "project_id": "demo"} if provider == "vertex" else {"base_url": emu.url}
            started = time.monotonic()
            embedded = embed_dataset(
                ds, provider, text_column="text", image_column="image", rate_limit=limit,
                concurrency=4, num_cpus=0.25, batch_size=40, embedder=options,
            ).materialize()
            took = time.monotonic() - started
            failed = [row["error"] for row in embedded.take_all() if row["error"] is not None]
            embedded.write_datasink(sink)
            print(f"{embedded.count()} rows embedded in {took:.1f} s on 4 actors: {emu.stats.requests} requests, "
                  f"{emu.stats.rate_limited} x 429 (emulated key: 10 req/s)")
            print(f"{sink.written} rows stored in Chroma, {sink.skipped} skipped: {failed}")
            again = filter_new(content_ids(ray.data.from_items(rows), text_column="text", image_column="image"), sink)
            print(f"a rerun would embed {again.count()} rows (the bad one, which has no vector)")
        finally:
            ray.shutdown()
            chroma.terminate()
            chroma.wait(timeout=10)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "nomic")
