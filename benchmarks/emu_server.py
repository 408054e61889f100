"""The mmembed emulator in its own process, with its request log readable over stdin/stdout.

``python -m mmembed.testing`` serves the same emulator, but offers no way to read its request log from
outside; this wrapper adds exactly that, so the benchmark can count requests, 429s and upload bytes per
contender while the emulator's CPU and memory stay out of the measured client's process.

Protocol: the first stdout line is ``{"url": ...}``; then each stdin line ``stats`` answers one JSON line
(a summary of the requests since the last ``clear``), ``clear`` answers ``{}``; EOF stops the emulator.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from typing import Any

from mmembed.testing import Emulator, RecordedRequest


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def summary(emu: Emulator, cpu_at_clear: float) -> dict[str, Any]:
    records = emu.requests
    stats = emu.stats
    images = sum(_image_count(r) for r in records)
    return {
        "requests": len(records),
        "by_status": {str(k): v for k, v in sorted(stats.responses_by_status.items())},
        "rate_limited": stats.rate_limited,
        "max_in_flight": stats.max_in_flight,
        "connections": stats.connections,
        "body_bytes": sum(r.body_size for r in records),
        "image_parts": images,
        "image_bytes": sum(_image_bytes(r) for r in records),
        "embed_requests": sum(1 for r in records if r.path.startswith(("/v1/embedding", "/v1/embeddings"))),
        "emulator_cpu_s": cpu_seconds() - cpu_at_clear,
    }


def _jina_images(record: RecordedRequest) -> list[str]:
    body = record.json
    inputs = body.get("input") if isinstance(body, dict) else None
    if not isinstance(inputs, list):
        return []
    out = []
    for item in inputs:
        if isinstance(item, dict):
            out += [v for k, v in item.items() if k in ("image", "bytes", "url") and isinstance(v, str)]
    return out


def _image_count(record: RecordedRequest) -> int:
    if record.path == "/v1/embedding/image":
        return sum(1 for f in record.files if f[0] == "images") + len(record.form.get("urls", []))
    return len(_jina_images(record)) if record.path == "/v1/embeddings" else 0


def _image_bytes(record: RecordedRequest) -> int:
    """Bytes of image payload as sent: file parts as is, base64 strings by their length."""
    if record.path == "/v1/embedding/image":
        return sum(len(f[3]) for f in record.files if f[0] == "images")
    return sum(len(s) for s in _jina_images(record)) if record.path == "/v1/embeddings" else 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=None)
    parser.add_argument("--rate-window", type=float, default=None)
    parser.add_argument("--max-concurrency", type=int, default=None)
    args = parser.parse_args()
    with Emulator(latency=args.latency, rate_limit=args.rate_limit, rate_window=args.rate_window,
                  max_concurrency=args.max_concurrency) as emu:
        print(json.dumps({"url": emu.url}), flush=True)
        cpu_at_clear = cpu_seconds()
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                print(json.dumps(summary(emu, cpu_at_clear)), flush=True)
            elif command == "clear":
                emu.clear()
                cpu_at_clear = cpu_seconds()
                print("{}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
