"""What the benchmarks record about the machine next to every timing (imported by the scripts in this folder)."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (timings are only comparable within one CPU)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def runq_wait_s() -> float:
    """Seconds this process spent runnable but waiting for a core (/proc schedstat), all threads."""
    total = 0
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            total += int(f.read().split()[1])
    return total / 1e9
