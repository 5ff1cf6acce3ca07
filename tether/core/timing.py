"""Wall-clock timing of named phases, reported as `time/<phase>` seconds (summed per interval)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Timer"]


class Timer:
    def __init__(self) -> None:
        self._acc: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._acc[phase] = self._acc.get(phase, 0.0) + time.perf_counter() - start

    def flush(self) -> dict[str, float]:
        """Seconds per phase since the last flush, keyed `time/<phase>`, plus `time/total`."""
        out = {f"time/{k}": v for k, v in self._acc.items()}
        if out:
            out["time/total"] = sum(self._acc.values())
        self._acc.clear()
        return out
