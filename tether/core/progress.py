"""Progress reporting for long loops: a rich bar with live metrics and ETA on a terminal, plain periodic
lines otherwise (CI, log files), so logs stay readable and greppable; and the few-line summary a training
command closes with (where the run is, its headline numbers, what to run next).

Progress goes to stderr by default, so a command's stdout stays machine-readable (`--json` prints one object);
the summary is a command's result and goes to stdout.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

__all__ = ["progress", "Progress", "print_summary"]


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


class Progress:
    def __init__(self, total: int, desc: str, stream: TextIO, every_s: float, enabled: bool, *,
                 initial: int = 0, first_s: float = 2.0) -> None:
        self.total, self.desc, self.stream, self.every_s, self.enabled = total, desc, stream, every_s, enabled
        self.n = self.initial = initial
        self.first_s = min(first_s, every_s)
        self.start = self._last = time.perf_counter()
        self._printed = False
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
        # the first line comes after `first_s`, not `every_s`: a slow loop says it is alive within seconds
        wait = self.every_s if self._printed else self.first_s
        if now - self._last >= wait or self.n >= self.total:
            self._last, self._printed = now, True
            elapsed = now - self.start
            done = self.n - self.initial  # the rate counts this process's work only, not resumed items
            eta = f"{elapsed / done * (self.total - self.n):.0f}s" if done > 0 else "?"
            line = f"[{self.desc}] {self.n}/{self.total} elapsed {elapsed:.0f}s eta {eta} {_fmt(self.metrics)}"
            print(line.rstrip(), file=self.stream, flush=True)


@contextmanager
def progress(total: int, desc: str, *, stream: TextIO | None = None, every_s: float = 10.0, first_s: float = 2.0,
             initial: int = 0, enabled: bool = True) -> Iterator[Progress]:
    """Context manager yielding a `Progress`; call `.update(n, **live_metrics)` each iteration.

    Writes to `stream` (default stderr). Plain lines come `first_s` seconds after the start, then every
    `every_s` seconds and at the end. `initial` items count as done already (a resumed run) but not in the ETA.
    """
    stream = stream or sys.stderr
    p = Progress(total, desc, stream, every_s, enabled, initial=initial, first_s=first_s)
    if enabled and stream.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        # rich's default console is stdout: give it our stream, or `cmd --json | jq` would get the bar
        bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), TextColumn("{task.fields[live]}"), transient=False,
                           console=Console(file=stream))
        with bar:
            p._rich = (bar, bar.add_task(desc, total=total, completed=initial, live=""))
            yield p
    else:
        yield p


def print_summary(title: str, run_dir: str | Path, headline: Mapping[str, float | str | None], *,
                  tensorboard: bool = False, stream: TextIO | None = None) -> str:
    """Print (to stdout by default) and return the few lines that close a training command: what finished and
    where the run is, its headline numbers (None = not measured, left out), and the commands to run next."""
    shown = [f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in headline.items() if v is not None]
    lines = [f"{title}: {run_dir}"] + (["  " + ", ".join(shown)] if shown else [])
    lines += ["next:", f"  tether report {run_dir}"]
    if tensorboard:
        lines.append(f"  tensorboard --logdir {Path(run_dir) / 'tb'}")
    text = "\n".join(lines)
    print(text, file=stream or sys.stdout, flush=True)
    return text
