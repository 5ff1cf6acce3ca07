"""One directory per run: the replayable config, the environment, metrics, evals, samples and checkpoints.

Layout:
    config.json              resolved config (exact dataclass dump); replays the run
    env.json                 git sha + dirty flag, versions, seed, threads, command line
    metrics.jsonl            one object per logged step: {"step": int, "<ns>/<key>": float, ...}
    eval.jsonl               same, for evaluations
    samples/step_XXXXXXX.jsonl
    checkpoints/step_XXXXXXX/
    tb/                      TensorBoard event files (optional: run.tensorboard)
    wandb/                   W&B run files (optional: run.wandb; offline unless WANDB_MODE says otherwise)

Does not own what is logged or when; the trainer decides. Every jsonl line is written and flushed whole,
so a crash leaves at worst a run that `--run.resume` can continue.

A run directory is in one of three states (`RunDir.state`), each handled by `RunDir.from_config`:
    fresh      no run yet (or an empty directory): the run starts
    resumable  a complete checkpoint exists: `--run.resume` continues it; without the flag the run is refused
    started    a run began but died before its first checkpoint: it starts again, after saying so; its logs are
               moved to `interrupted-<time>/` (never deleted); `--run.resume` there is an error that says this
On resume the command's config must equal the run's `config.json`, apart from `RESUME_FREE` fields
(bookkeeping that cannot change results); any other difference is refused, naming the fields.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tether import __version__
from tether.core.checkpoint import clean_stale, latest_checkpoint
from tether.core.config import ConfigError, flatten, from_dict, to_dict
from tether.core.extras import require

__all__ = ["RunConfig", "RunDir", "RESUME_FREE", "git_info", "read_jsonl", "write_json_atomic"]

RESUME_FREE = ("run.resume", "run.tensorboard", "run.wandb", "eval_workers", "eval_envs")
"""Config fields a resumed run may change: where it logs and how many processes evaluate, never what it computes."""


def git_info() -> dict[str, Any]:
    """Git sha and dirty flag of the tether source tree (None outside a checkout)."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=5).stdout.strip())
        return {"git_sha": sha, "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "git_dirty": None}


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON via a hidden temporary file and a rename: readers never see a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def _parse_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """Rows of a jsonl file and the numbers of the lines that are not JSON objects with an integer "step"
    (a torn last line, from a crash mid-write, is neither: it is dropped silently)."""
    rows, bad = [], []
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    for i, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i < len(lines) and line.strip():
                bad.append(i)
            continue
        if isinstance(row, dict) and isinstance(row.get("step", 0), int):
            rows.append(row)
        else:
            bad.append(i)
    return rows, bad


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON-object rows of a jsonl file; other lines are skipped with one warning line on stderr."""
    rows, bad = _parse_jsonl(Path(path))
    if bad:
        print(f"warning: {path}: line(s) {bad[:5]} are not JSON objects with an integer step; skipped",
              file=sys.stderr, flush=True)
    return rows


@dataclass(frozen=True)
class RunConfig:
    """The `run` section every trainer config nests: where the run lives and how it is logged."""

    dir: str = ""
    """Run directory (default: runs/<family>/<command>-<time>)."""
    seed: int = 0
    """Seed of every RNG stream of the run."""
    resume: bool = False
    """Continue the run in --run.dir from its last checkpoint (exact on CPU with fixed seeds)."""
    tensorboard: bool = False
    """Also write TensorBoard event files to <run dir>/tb; needs pip install 'tether-rl[tensorboard]'."""
    wandb: bool = False
    """Also log the config and every metrics row to Weights & Biases, offline in <run dir>/wandb unless WANDB_MODE
    is set (`wandb sync` uploads it later); needs pip install 'tether-rl[wandb]'."""
    log_every: int = 1
    """Steps between metric flushes to metrics.jsonl."""
    save_every: int = 0
    """Steps between checkpoints (0 = only at the end)."""

    def __post_init__(self) -> None:
        if self.log_every < 1:
            raise ValueError(f"run.log_every={self.log_every} must be >= 1")
        if self.save_every < 0:
            raise ValueError(f"run.save_every={self.save_every} must be >= 0")
        if self.resume and not self.dir:
            raise ValueError("run.resume needs --run.dir, the run to continue")
        if self.wandb:  # here, when the flags are parsed: before any work starts or any file is written
            require("wandb", purpose="--run.wandb")
        if self.tensorboard:
            require("tensorboard", purpose="--run.tensorboard")


def _wandb_run(path: Path, config: dict[str, Any]) -> Any:
    """A W&B run logging to <path>/wandb: offline (nothing leaves the machine) unless the user set WANDB_MODE;
    project WANDB_PROJECT or "tether", named after the run directory, the config as its hyper-parameters."""
    import wandb  # lazy: optional dependency, checked by `require` before any file was written

    return wandb.init(dir=str(path), config=config, name=path.name, mode=os.environ.get("WANDB_MODE") or "offline",
                      project=os.environ.get("WANDB_PROJECT") or "tether")


class RunDir:
    def __init__(self, path: str | Path, tensorboard: bool = False, wandb: bool = False) -> None:
        self.path = Path(path)
        clean_stale(self.path / "checkpoints")  # what saves killed mid-way left, when a run starts or resumes
        self._tb = None
        self._wandb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # lazy: optional dependency

            self._tb = SummaryWriter(str(self.path / "tb"))
        if wandb:
            self._wandb = _wandb_run(self.path, self.config_dict())

    @classmethod
    def create(cls, path: str | Path, config: Any, *, seed: int, tensorboard: bool = False, wandb: bool = False,
               overwrite: bool = False) -> RunDir:
        """Start a fresh run. Refuses to mix two runs in one directory unless `overwrite`."""
        path = Path(path)
        if wandb:
            require("wandb", purpose="--run.wandb")
        _check_writable(path)
        if (path / "metrics.jsonl").exists() and not overwrite:
            raise FileExistsError(f"run directory {path} already holds a run; pass --run.resume to continue "
                                  "it or choose another --run.dir")
        path.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.jsonl", "eval.jsonl"):
            (path / name).unlink(missing_ok=True)
        write_json_atomic(path / "config.json", to_dict(config))
        write_json_atomic(path / "env.json", {
            **git_info(), "tether": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": np.__version__, "platform": platform.platform(), "seed": seed,
            "torch_threads": torch.get_num_threads(), "argv": sys.argv,
        })
        return cls(path, tensorboard, wandb)

    @staticmethod
    def state(path: str | Path) -> str:
        """'fresh', 'resumable' (a complete checkpoint exists) or 'started' (logs or config, no checkpoint)."""
        path = Path(path)
        if latest_checkpoint(path / "checkpoints") is not None:
            return "resumable"
        started = any((path / n).exists() for n in ("metrics.jsonl", "eval.jsonl", "config.json"))
        return "started" if started else "fresh"

    @classmethod
    def from_config(cls, run: RunConfig, config: Any, default_dir: str) -> RunDir:
        """The run directory of `config`, handled by its state (module docstring); checks happen before any
        file is written. With `run.resume`, reopens it (a new W&B run of the same name)."""
        path = Path(run.dir or default_dir)
        state = cls.state(path)
        if run.resume:
            if state != "resumable":
                why = "has no run" if state == "fresh" else "holds a run that stopped before its first checkpoint"
                raise ConfigError(f"run.resume: {path} {why}, so there is nothing to continue; run the same command "
                                  "without --run.resume to start it")
            check_resume_config(path, config)
            return cls.open(path, run.tensorboard, run.wandb)
        if state == "resumable":
            raise FileExistsError(f"run directory {path} already holds a run with a checkpoint; pass --run.resume "
                                  "to continue it or choose another --run.dir")
        if state == "started":
            moved = set_aside_interrupted(path)
            print(f"{path}: the run there stopped before its first checkpoint; starting it again "
                  f"(its logs are in {moved})", file=sys.stderr, flush=True)
        return cls.create(path, config, seed=run.seed, tensorboard=run.tensorboard, wandb=run.wandb)

    @classmethod
    def open(cls, path: str | Path, tensorboard: bool = False, wandb: bool = False) -> RunDir:
        path = Path(path)
        if wandb:
            require("wandb", purpose="--run.wandb")
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} is not a run directory (no config.json)")
        return cls(path, tensorboard, wandb)

    def config_dict(self) -> dict[str, Any]:
        return json.loads((self.path / "config.json").read_text())

    def _append(self, name: str, row: dict[str, Any]) -> None:
        (self.path / name).parent.mkdir(parents=True, exist_ok=True)
        with open(self.path / name, "a") as f:
            f.write(json.dumps(row) + "\n")

    def _mirror(self, step: int, metrics: dict[str, float]) -> None:
        """Copy a logged row to TensorBoard and W&B when they are on."""
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(dict(metrics), step=step)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self._append("metrics.jsonl", {"step": step, **metrics})
        self._mirror(step, metrics)

    def log_eval(self, step: int, metrics: dict[str, float]) -> None:
        self._append("eval.jsonl", {"step": step, **metrics})
        self._mirror(step, metrics)

    def write_jsonl(self, relpath: str, rows: list[dict[str, Any]]) -> Path:
        p = self.path / relpath
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return p

    def checkpoint_path(self, step: int) -> Path:
        return self.path / "checkpoints" / f"step_{step:07d}"

    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.path / "checkpoints")

    def truncate_after(self, step: int) -> None:
        """Drop logged rows past `step` (what a killed run logged after its last checkpoint), before resuming.

        A file holding lines that are not rows (edited by hand, damaged) is first copied to
        `<name>.before-resume`, so nothing that was on disk is lost."""
        for name in ("metrics.jsonl", "eval.jsonl"):
            rows, bad = _parse_jsonl(self.path / name)
            if bad:
                keep = self.path / f"{name}.before-resume"
                keep.write_bytes((self.path / name).read_bytes())
                print(f"warning: {self.path / name}: line(s) {bad[:5]} are not rows; the file as it was is kept "
                      f"in {keep}", file=sys.stderr, flush=True)
            self.write_jsonl(name, [r for r in rows if r.get("step", 0) <= step])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _check_writable(path: Path) -> None:
    """A one-line error, before anything is written, when the run directory cannot be created or written."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and (not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK)):
        what = "is not a directory" if not existing.is_dir() else "is not writable"
        raise ConfigError(f"run directory {path}: {existing} {what}; choose another --run.dir")


def check_resume_config(path: Path, config: Any) -> None:
    """Refuse to resume `path` with a config that differs from its config.json (RESUME_FREE fields aside), or
    when config.json is unreadable or not a valid config of this command."""
    file = path / "config.json"
    try:
        stored = json.loads(file.read_text())
        from_dict(type(config), stored)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"run.resume: {file} is not valid JSON ({e}); restore it or start a new --run.dir") from None
    except ConfigError as e:
        raise ConfigError(f"run.resume: {file} is not a valid config of this command ({e}); is {path} a run of "
                          "another command? Choose its own command or a new --run.dir") from None
    old, new = flatten(stored), flatten(to_dict(config))
    free = set(RESUME_FREE)
    diff = sorted(k for k in old.keys() | new.keys() if k not in free and old.get(k) != new.get(k))
    if diff:
        shown = ", ".join(f"{k}: run {old.get(k)!r}, now {new.get(k)!r}" for k in diff[:5])
        more = f" and {len(diff) - 5} more" if len(diff) > 5 else ""
        raise ConfigError(f"run.resume: the config differs from {file} ({shown}{more}); resume with the run's "
                          "settings, or start a new --run.dir to change them")


def set_aside_interrupted(path: Path) -> Path:
    """Move a run's logs (not its checkpoints: there are none) into `interrupted-<time>/`; returns that folder."""
    import time

    dest = path / f"interrupted-{time.strftime('%Y%m%d-%H%M%S')}"
    dest.mkdir()
    for name in ("config.json", "env.json", "metrics.jsonl", "eval.jsonl", "samples", "tb", "wandb"):
        if (path / name).exists():
            (path / name).rename(dest / name)
    return dest
