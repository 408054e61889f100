"""``python -m mmembed.testing``: run the emulator standalone until Ctrl-C (binds loopback by default)."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from .emulator import Emulator

__all__ = ["build_parser", "main", "serve_forever"]

NOTE = "This is an offline EMULATOR: deterministic fake vectors, NOT the real models (for tests, demos, benchmarks)."


def build_parser(prog: str = "python -m mmembed.testing") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve an offline emulator of the registered providers' embedding APIs. " + NOTE,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default: 8765)")
    parser.add_argument("--latency", type=float, default=0.0, metavar="S", help="seconds added to each request")
    parser.add_argument("--rate-limit", type=float, default=None, metavar="RPS",
                        help="requests per second over all endpoints; above it the emulator answers 429")
    parser.add_argument("--rate-window", type=float, default=None, metavar="S",
                        help="count --rate-limit over a sliding window of S seconds (a provider's quota) "
                             "instead of a token bucket")
    parser.add_argument("--max-concurrency", type=int, default=None, metavar="N",
                        help="more requests in flight than this get 429")
    return parser


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    latency: float = 0.0,
    rate_limit: float | None = None,
    max_concurrency: int | None = None,
    stop: threading.Event | None = None,
    out: TextIO | None = None,
    **emulator_options: Any,
) -> None:
    """Run an Emulator until Ctrl-C (or until ``stop`` is set), printing its base URL and what it is.

    ``emulator_options`` go to :class:`~mmembed.testing.Emulator` (``api_keys``, ``fault_rate``, ...).
    """
    out = out or sys.stdout
    stop = stop or threading.Event()
    emulator = Emulator(
        host, port, latency=latency, rate_limit=rate_limit, max_concurrency=max_concurrency, **emulator_options
    )
    with emulator as emu:
        print(f"mmembed emulator listening on {emu.url}", file=out)
        print(NOTE, file=out)
        print("Use it as the base URL of any mmembed provider (base_url=...). Ctrl-C stops it.", file=out, flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            print("stopping", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and serve; returns the exit status."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    try:
        serve_forever(args.host, args.port, latency=args.latency, rate_limit=args.rate_limit,
                      max_concurrency=args.max_concurrency, rate_window=args.rate_window)
    except OSError as exc:
        print(f"cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
