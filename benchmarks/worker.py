"""Measure one contender in this process: ``python benchmarks/worker.py SPEC.json RESULT.json``.

Setup (imports, client construction, collection creation) is not timed; the timed section is the work
itself. CPU seconds and peak RSS are this process's own: the emulator runs in another one.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import traceback
from pathlib import Path


def rss_mb() -> float:
    """Current resident set size in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    out_path = Path(sys.argv[2])
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from contenders import CONTENDERS

    result: dict[str, object] = {}
    try:
        run = CONTENDERS[spec["contender"]](spec)
        result["rss_before_mb"] = rss_mb()
        started, cpu_started = time.perf_counter(), time.process_time()
        out = run()
        result["wall_s"] = time.perf_counter() - started
        result["cpu_s"] = time.process_time() - cpu_started
        count, dims = out() if callable(out) else out
        result.update(vectors=count, dims=dims)
    except Exception as exc:  # a contender that fails is reported, not hidden
        traceback.print_exc()
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["extra"] = spec.get("extra")
    out_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
