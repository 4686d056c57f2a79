"""Which machine a benchmark ran on, and how fast it was at that moment.

Every benchmark prints this first: figures from two machines, or from one VM at two hours,
differ by more than most code changes (a shared host's speed moves by tens of percent), so
a figure means little without the CPU it came from and a reading of its speed then. The
speed probe is a fixed interpreted loop: its time scales with the interpreter's speed on
this CPU at this moment, so two runs' figures can be compared after dividing by it.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

#: Iterations of the probe loop (~0.2-0.5 s on the machines we have seen).
PROBE_LOOPS = 2_000_000


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def speed_probe() -> float:
    """Nanoseconds per iteration of a fixed pure-Python loop (best of three): lower is faster."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(PROBE_LOOPS):
            total += i
        best = min(best, time.perf_counter() - started)
    return best / PROBE_LOOPS * 1e9


def describe() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cpu_model()}, {cores} cores usable, Python {platform.python_version()}; "
        f"speed probe {speed_probe():.1f} ns per loop step (lower is faster)"
    )
