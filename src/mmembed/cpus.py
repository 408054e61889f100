"""How many CPUs this process may use: its share of the machine, not the machine's size.

``os.cpu_count()`` counts the node's cores. A worker of a cluster job (a Ray actor given 0.5 CPU, a
container limited to 2 of 64 cores, a process pinned with ``taskset``) that starts one image-decoding
thread per core of the node oversubscribes it many times over. :func:`cpu_share` asks, in order:

1. Ray, when this process is a Ray worker (read from ``sys.modules``: mmembed never imports Ray itself);
2. the scheduler's CPU affinity (``os.sched_getaffinity``, Linux), which containers and ``taskset`` set;
3. ``os.cpu_count()``.
"""

from __future__ import annotations

import math
import os
import sys

__all__ = ["cpu_share"]


def cpu_share() -> int:
    """The CPUs this process should keep busy (at least 1)."""
    assigned = _ray_cpus()
    if assigned is not None:
        return max(1, math.ceil(assigned))
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        try:
            return max(1, len(affinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def _ray_cpus() -> float | None:
    """The CPUs Ray assigned to this worker (a task or actor), or None outside a Ray worker."""
    ray = sys.modules.get("ray")
    if ray is None or not getattr(ray, "is_initialized", lambda: False)():
        return None
    try:
        context = ray.get_runtime_context()
        if context.worker.mode != ray.WORKER_MODE:  # the driver: no assignment, the node's share applies
            return None
        cpus = context.get_assigned_resources().get("CPU")
    except Exception:  # Ray's private layout moved: fall back to the OS's answer
        return None
    return float(cpus) if cpus else None
