"""Namespaced metrics that stay tensors until one flush per log interval.

Owns metric-key validation and averaging. Keys are `<namespace>/<name>`; the namespace must be one of
`NAMESPACES` so that every key has a home in `docs/metrics.md`. `flush()` is the single place that calls
`.item()` (one device sync per log interval); logging itself never syncs.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

__all__ = ["Metrics", "NAMESPACES", "check_key"]

NAMESPACES = ("loss", "kl", "dual", "mismatch", "reward", "rollout", "eval", "grad", "time", "perf", "clip",
              "diag", "optim", "q", "lens")
_KEY = re.compile(r"^[a-z][a-z0-9_]*(/[a-z0-9_@.\-]+)+$")


def check_key(key: str) -> None:
    """Raise ValueError unless `key` is `<known namespace>/<snake_case name>`."""
    ns = key.split("/", 1)[0]
    if not _KEY.match(key) or ns not in NAMESPACES:
        raise ValueError(f"metric key {key!r} must look like '<namespace>/<name>' with namespace in {NAMESPACES}; "
                         "document new keys in docs/metrics.md")


class Metrics:
    """Accumulate scalar metrics between flushes; `flush()` returns the means as floats."""

    def __init__(self) -> None:
        self._sums: dict[str, Tensor | float] = {}
        self._counts: dict[str, int] = {}

    def log(self, key: str, value: Tensor | float) -> None:
        check_key(key)
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise ValueError(f"metric {key!r} must be a scalar, got shape {tuple(value.shape)}")
            value = value.detach().reshape(()).to(torch.float64)
        else:
            value = float(value)
        self._sums[key] = self._sums.get(key, 0.0) + value
        self._counts[key] = self._counts.get(key, 0) + 1

    def log_dict(self, values: dict[str, Tensor | float]) -> None:
        for k, v in values.items():
            self.log(k, v)

    def flush(self) -> dict[str, float]:
        """Means of everything logged since the last flush (the single `.item()` site)."""
        out = {k: float(s) / self._counts[k] for k, s in self._sums.items()}
        self._sums.clear()
        self._counts.clear()
        return out

    def state_dict(self) -> dict[str, dict]:
        """The partial sums since the last flush (for a checkpoint taken between two flushes; syncs once)."""
        return {"sums": {k: float(v) for k, v in self._sums.items()}, "counts": dict(self._counts)}

    def load_state_dict(self, state: dict[str, dict]) -> None:
        """Continue the partial sums of a checkpoint, so the row that spans it gets the uninterrupted mean."""
        self._sums = {k: torch.tensor(v, dtype=torch.float64) for k, v in state["sums"].items()}
        self._counts = {k: int(v) for k, v in state["counts"].items()}
