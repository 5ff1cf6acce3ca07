"""Progress reporting for long loops: a rich bar with live metrics and ETA on a terminal, plain periodic
lines otherwise (CI, log files), so logs stay readable and greppable."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["progress", "Progress"]


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


class Progress:
    def __init__(self, total: int, desc: str, stream: TextIO, every_s: float, enabled: bool) -> None:
        self.total, self.desc, self.stream, self.every_s, self.enabled = total, desc, stream, every_s, enabled
        self.n = 0
        self.start = self._last = time.perf_counter()
        self._rich = None
        self.metrics: dict[str, float] = {}

    def update(self, n: int = 1, **metrics: float) -> None:
        self.n += n
        self.metrics.update(metrics)
        if not self.enabled:
            return
        if self._rich is not None:
            bar, task = self._rich
            bar.update(task, advance=n, live=_fmt(self.metrics))
            return
        now = time.perf_counter()
        if now - self._last >= self.every_s or self.n >= self.total:
            self._last = now
            elapsed = now - self.start
            eta = elapsed / max(self.n, 1) * (self.total - self.n)
            print(f"[{self.desc}] {self.n}/{self.total} elapsed {elapsed:.0f}s eta {eta:.0f}s {_fmt(self.metrics)}",
                  file=self.stream, flush=True)


@contextmanager
def progress(total: int, desc: str, *, stream: TextIO | None = None, every_s: float = 10.0,
             enabled: bool = True) -> Iterator[Progress]:
    """Context manager yielding a `Progress`; call `.update(n, **live_metrics)` each iteration."""
    stream = stream or sys.stderr
    p = Progress(total, desc, stream, every_s, enabled)
    if enabled and stream.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), TextColumn("{task.fields[live]}"), transient=False)
        with bar:
            p._rich = (bar, bar.add_task(desc, total=total, live=""))
            yield p
    else:
        yield p
