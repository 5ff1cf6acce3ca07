"""Atomic checkpoints of everything a run needs to continue exactly: models, optimizers, duals, counters, RNGs.

A checkpoint is a directory `step_XXXXXXX/` holding `state.pt` (one `torch.save` of a dict) and
`trainer_state.json` (the JSON-able counters, for humans and tools). It is written to a hidden temporary
directory, fsynced, then renamed into place: a rename is atomic on POSIX, so a crash during a save leaves
the previous checkpoints intact and never a half-written `step_*` directory.

Checkpoints are our own trusted files and hold numpy RNG state, so they load with `weights_only=False`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "rng_state", "set_rng_state"]

STATE_FILE = "state.pt"
META_FILE = "trainer_state.json"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path: str | Path, state: dict[str, Any], meta: dict[str, Any] | None = None) -> Path:
    """Atomically write `state` (anything torch.save accepts) and JSON `meta` to directory `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    with open(tmp / STATE_FILE, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    with open(tmp / META_FILE, "w") as f:
        json.dump(meta or {}, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    if path.exists():  # replacing a checkpoint of the same step: keep it until the new one is in place
        path.rename(old)
    tmp.rename(path)
    _fsync_dir(path.parent)
    if old.exists():
        shutil.rmtree(old)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    file = path / STATE_FILE
    if not file.exists():
        raise FileNotFoundError(f"no checkpoint at {path} (missing {STATE_FILE})")
    return torch.load(file, map_location="cpu", weights_only=False)


def latest_checkpoint(checkpoints_dir: str | Path) -> Path | None:
    """The `step_*` directory with the largest step, or None. Temporary dirs (dot-prefixed) are ignored."""
    d = Path(checkpoints_dir)
    if not d.is_dir():
        return None
    steps = [p for p in d.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / STATE_FILE).exists()]
    return max(steps, key=lambda p: int(p.name.split("_")[1]), default=None)


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Capture python, numpy and torch global RNG states plus named torch generators."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    for k, g in (generators or {}).items():
        if k not in state["generators"]:
            raise KeyError(f"checkpoint has no RNG state for generator {k!r}; it has {sorted(state['generators'])}")
        g.set_state(state["generators"][k])
