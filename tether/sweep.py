"""`tether sweep SPEC.toml`: a grid of tether runs as Ray tasks, resumable after a crash, with a summary table.

A spec names one tether command (`"flow train"`, `"lm train"`, ...), flags shared by every run (`[fixed]`)
and a cartesian grid of flags (`[grid]`, or several `[[grid]]` tables whose products are concatenated).
Each run is `tether <command> <flags> --run.dir OUT/<run name>`, executed in-process by a Ray task with
`cpus_per_run` torch threads; a run that returns 0 gets a `DONE.json` marker and is skipped next time,
a partial run with a checkpoint continues with `--run.resume`. Every resolved argv is parsed before Ray
starts, so a typo fails in a second, not after the first hour.

Owns the grid, run directories' markers and logs, and the summary; knows nothing about any family: commands
are found by name through `tether.cli`, the same lookup the CLI uses. One Ray task per
(task, method, hyperparameter, seed); fractional GPUs pack small runs (see docs/sweep.md).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shlex
import socket
import sys
import time
import tomllib
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.commands import find
from tether.core.checkpoint import latest_checkpoint
from tether.core.cli import Command
from tether.core.config import ConfigError, check, leaf_fields, parse_args
from tether.core.progress import progress
from tether.core.rundir import read_jsonl, write_json_atomic

__all__ = ["SweepConfig", "RaySpec", "Run", "Sweep", "run_sweep", "load_spec", "resolve_command", "expand_grid",
           "run_name", "run_state", "execute_run", "summary_rows", "MARKER"]

SPEC_KEYS = ("command", "out", "fixed", "grid", "ray")
RAY_KEYS = ("num_cpus", "cpus_per_run", "gpus_per_run", "max_retries")
OWNED = ("run.dir", "run.resume")  # the sweep sets these itself
MARKER = "DONE.json"
LOG = "sweep.log"
MD_EVAL_COLUMNS = 8  # summary.md shows this many eval keys; summary.jsonl has them all


@dataclass(frozen=True)
class SweepConfig:
    """`tether sweep SPEC.toml`: run a grid of tether commands as Ray tasks (docs/sweep.md)."""

    specs: tuple[str, ...] = field(default=(), metadata={"metavar": "SPEC.toml"})
    """The sweep spec: the path of one TOML file (exactly one: `tether sweep SPEC.toml`)."""
    address: str = ""
    """Join this Ray cluster (e.g. auto, or HOST:6379 of `ray start --head`) instead of starting a local one."""
    dry_run: bool = False
    """Print the grid (run names, states and full commands) and exit without starting Ray."""
    num_cpus: int = 0
    """CPUs of the local Ray instance (0 = the spec's [ray] num_cpus, or all cores); ignored with --address."""

    def __post_init__(self) -> None:
        # the count of specs is checked in run_sweep: the default () must build, for --help and parse_args
        check(self.num_cpus >= 0, "num_cpus", self.num_cpus, "an integer >= 0")


@dataclass(frozen=True)
class RaySpec:
    """The spec's [ray] table."""

    num_cpus: int | None = None
    """CPUs of a local Ray instance (None = Ray detects them)."""
    cpus_per_run: int = 1
    """CPUs reserved per run; also its torch / OpenMP thread count."""
    gpus_per_run: float = 0.0
    """GPU fraction per run (0.25 packs four runs per GPU); used only when the cluster has GPUs."""
    max_retries: int = 1
    """Times Ray re-runs a task whose worker died (OOM kill, lost node); the retry resumes from a checkpoint."""


@dataclass(frozen=True)
class Run:
    name: str
    """Directory name under the sweep's `out`, built from the grid values."""
    grid: tuple[tuple[str, Any], ...]
    """The grid values of this run, in axis order."""
    argv: tuple[str, ...]
    """The command's flags, without --run.dir / --run.resume (the sweep adds them)."""


@dataclass(frozen=True)
class Sweep:
    spec: Path
    command: str
    out: Path
    """Absolute: on a cluster every node must see it at the same path (shared storage)."""
    runs: tuple[Run, ...]
    ray: RaySpec
    has_run_section: bool
    """The command's config nests a `run: RunConfig` (run.dir, run.resume); otherwise runs are not resumable."""


# ---------------------------------------------------------------------------------------------- the spec


def resolve_command(command: str) -> Command:
    """The `Command` behind "family name" (or a top-level name other than `sweep`), as the `tether` CLI finds it."""
    if command.strip() == "sweep":
        raise ConfigError("command 'sweep' does not exist for a sweep (sweeps do not nest); "
                          "expected a family command, 'report' or 'demo'")
    return find(command)


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """TOML sub-tables (`[fixed.run]`, unquoted `run.seed = 1`) become dotted flag names."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        path = prefix + key.replace("-", "_")
        if isinstance(value, dict):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _flag_value(key: str, value: Any) -> str:
    """A TOML value as the CLI string parse_args coerces back (lists become comma-separated tuples)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, list) and all(not isinstance(v, list | dict) for v in value):
        return ",".join(_flag_value(key, v) for v in value)
    raise ConfigError(f"sweep flag {key!r}: got {value!r}, expected a string, number, boolean or flat list")


def _flags(pairs: list[tuple[str, Any]]) -> list[str]:
    # `--preset NAME` must stay two tokens for parse_args; a bool uses `--key=value` so it never eats a token
    argv: list[str] = []
    for key, value in pairs:
        text = _flag_value(key, value)
        argv += [f"--{key}={text}"] if isinstance(value, bool) else [f"--{key}", text]
    return argv


def expand_grid(grids: list[dict[str, Any]]) -> list[tuple[tuple[str, Any], ...]]:
    """Cartesian product of each grid table (first axis slowest), the tables' products concatenated."""
    points = []
    for grid in grids:
        for i, (key, values) in enumerate(grid.items()):
            if not isinstance(values, list) or not values:
                raise ConfigError(f"grid axis {key!r} (table {i}): got {values!r}, expected a non-empty list "
                                  "of values, e.g. [0, 1]")
        points += [tuple(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    return points


def run_name(point: tuple[tuple[str, Any], ...]) -> str:
    """`method=bc,run.seed=0`: deterministic, filesystem-safe, at most ~200 characters (long ones end in a hash)."""
    def fmt(v: Any) -> str:
        return "+".join(fmt(x) for x in v) if isinstance(v, list) else _flag_value("", v)

    name = ",".join(f"{k}={fmt(v)}" for k, v in point) or "run"
    safe = re.sub(r"[^A-Za-z0-9._,=+-]", "_", name).lstrip(".") or "run"
    if len(safe) > 200:
        safe = safe[:188] + "-" + hashlib.sha1(name.encode()).hexdigest()[:11]
    return safe


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _ray_spec(table: dict[str, Any]) -> RaySpec:
    bad = [k for k in table if k not in RAY_KEYS]
    if bad:
        raise ConfigError(f"[ray] key {bad[0]!r} unknown; allowed: {', '.join(RAY_KEYS)}")
    ray = RaySpec(**table)
    check(ray.num_cpus is None or (_is_int(ray.num_cpus) and ray.num_cpus >= 1), "ray.num_cpus",
          ray.num_cpus, "an integer >= 1")
    check(_is_int(ray.cpus_per_run) and ray.cpus_per_run >= 1, "ray.cpus_per_run", ray.cpus_per_run,
          "an integer >= 1")
    check(isinstance(ray.gpus_per_run, int | float) and not isinstance(ray.gpus_per_run, bool)
          and 0 <= ray.gpus_per_run, "ray.gpus_per_run",
          ray.gpus_per_run, "a number >= 0 (a fraction such as 0.25 packs runs on one GPU)")
    check(_is_int(ray.max_retries) and ray.max_retries >= 0, "ray.max_retries", ray.max_retries,
          "an integer >= 0")
    return ray


def _grid_tables(raw: Any) -> list[dict[str, Any]]:
    tables = [raw] if isinstance(raw, dict) else raw
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"grid: got {raw!r}, expected a [grid] table or [[grid]] tables")
    return [_flatten(t) for t in tables] or [{}]


def _check_keys(fixed: dict[str, Any], grids: list[dict[str, Any]]) -> None:
    for key in list(fixed) + [k for g in grids for k in g]:
        if key in OWNED:
            raise ConfigError(f"flag {key!r} is set by the sweep (run.dir = out/<run name>, run.resume when a "
                              "checkpoint exists); remove it from the spec")
    both = sorted({k for g in grids for k in g} & set(fixed))
    if both:
        raise ConfigError(f"flag {both[0]!r} is both in [fixed] and [grid]; keep one")


def load_spec(path: str | Path) -> Sweep:
    """Read and validate a spec: every run's argv is parsed by the command's config before anything runs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep spec {path} not found")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"sweep spec {path}: invalid TOML: {e}") from None
    try:
        return _validated(path, raw)
    except ConfigError as e:
        raise ConfigError(f"sweep spec {path}: {e}") from None


def _validated(path: Path, raw: dict[str, Any]) -> Sweep:
    bad = [k for k in raw if k not in SPEC_KEYS]
    if bad:
        raise ConfigError(f"unknown top-level key {bad[0]!r}; allowed: {', '.join(SPEC_KEYS)}")
    check(isinstance(raw.get("command"), str), "command", raw.get("command"), 'a tether command such as "flow train"')
    cmd = resolve_command(raw["command"])
    fixed, grids = _flatten(raw.get("fixed", {})), _grid_tables(raw.get("grid", {}))
    _check_keys(fixed, grids)
    has_run = all(k in leaf_fields(cmd.config) for k in OWNED)
    out = Path(raw.get("out", f"runs/sweep/{path.stem}")).expanduser().resolve()
    runs, seen = [], set()
    for point in expand_grid(grids):
        name = run_name(point)
        if name in seen:
            raise ConfigError(f"two grid points share the run name {name!r}; make the [[grid]] tables disjoint")
        seen.add(name)
        argv = tuple(_flags(list(fixed.items()) + list(point)))
        probe = list(argv) + (["--run.dir", str(out / name)] if has_run else [])
        try:
            parse_args(cmd.config, probe, presets=cmd.presets, positional=cmd.positional,
                       aliases=cmd.aliases)
        except ConfigError as e:
            raise ConfigError(f"run {name!r} (tether {raw['command']} {shlex.join(argv)}): {e}") from None
        runs.append(Run(name, point, argv))
    return Sweep(path, raw["command"], out, tuple(runs), _ray_spec(raw.get("ray", {})), has_run)


# ---------------------------------------------------------------------------------------------- one run


def run_state(run_dir: Path) -> str:
    """done (marker present), resume (a checkpoint to continue from) or fresh."""
    if (run_dir / MARKER).exists():
        return "done"
    return "resume" if latest_checkpoint(run_dir / "checkpoints") is not None else "fresh"


def _full_argv(argv: list[str], run_dir: Path, state: str, has_run: bool) -> list[str]:
    if not has_run:
        return list(argv)
    return list(argv) + ["--run.dir", str(run_dir)] + (["--run.resume"] if state == "resume" else [])


def _error_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def execute_run(command: str, argv: list[str], run_dir: str, has_run: bool, threads: int) -> dict[str, Any]:
    """The body of one Ray task (also callable directly): run the command in-process, mark it done on success.

    The command's output goes to <run dir>/sweep.log. The resume decision is taken here, not at submission,
    so a task that Ray retries after its worker died continues from the checkpoint the dead one left.
    """
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    state = run_state(path)
    if state == "done":
        return {"status": "skipped", **json.loads((path / MARKER).read_text())}
    if has_run and state == "fresh":  # rows of an attempt that died before its first checkpoint
        for stale in ("metrics.jsonl", "eval.jsonl"):
            (path / stale).unlink(missing_ok=True)
    full = _full_argv(argv, path, state, has_run)
    start, error = time.perf_counter(), ""
    with open(path / LOG, "a") as log, redirect_stdout(log), redirect_stderr(log):
        print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()}: tether {command} {shlex.join(full)}")
        try:
            cmd = resolve_command(command)
            rc = cmd.run(parse_args(cmd.config, full, presets=cmd.presets, positional=cmd.positional,
                       aliases=cmd.aliases)) or 0
            error = "" if rc == 0 else f"exit code {rc}"
        except SystemExit as e:  # a command that calls sys.exit(code)
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            error = "" if rc == 0 else f"exit code {rc}"
        except Exception as e:  # reported by the sweep; the other runs go on
            traceback.print_exc()
            error, rc = _error_line(e), 1
    result = {"returncode": rc, "wall_s": round(time.perf_counter() - start, 2), "host": socket.gethostname(),
              "resumed": state == "resume", "argv": list(argv), "command": command}
    if error:
        return {"status": "failed", "error": error, **result}
    # atomic: a crash never leaves a half-written marker that would skip the run
    write_json_atomic(path / MARKER, {**result, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return {"status": "done", **result}


# ---------------------------------------------------------------------------------------------- the sweep


def _check_markers(sweep: Sweep) -> None:
    """A finished run whose flags changed since would be silently skipped with stale results: refuse."""
    for run in sweep.runs:
        marker = sweep.out / run.name / MARKER
        if marker.exists() and json.loads(marker.read_text()).get("argv") != list(run.argv):
            raise ConfigError(f"run {run.name!r} in {sweep.out} finished with other flags "
                              f"({shlex.join(json.loads(marker.read_text()).get('argv', []))}); the spec now says "
                              f"{shlex.join(run.argv)}. Use another `out`, or delete {marker.parent} to re-run it")


def _print_dry_run(sweep: Sweep) -> None:
    print(f"sweep {sweep.spec}: {len(sweep.runs)} runs of `tether {sweep.command}` into {sweep.out}")
    if not sweep.has_run_section:
        print(f"note: `{sweep.command}` has no run section: no --run.dir/--run.resume; a crashed run restarts")
    for run in sweep.runs:
        state = run_state(sweep.out / run.name)
        argv = _full_argv(list(run.argv), sweep.out / run.name, state, sweep.has_run_section)
        print(f"  [{state:>6}] {run.name}\n           tether {sweep.command} {shlex.join(argv)}")


def _init_ray(sweep: Sweep, cfg: SweepConfig) -> bool:
    """Connect to (or start) Ray; returns whether this call started it (and so must shut it down)."""
    try:
        import ray  # lazy: optional dependency
    except ImportError:
        raise ConfigError("tether sweep needs Ray: pip install 'tether-rl[scale]' (--dry-run works without)") from None
    if ray.is_initialized():
        return False
    if cfg.address:
        ray.init(address=cfg.address, logging_level="WARNING")
    else:
        ray.init(num_cpus=cfg.num_cpus or sweep.ray.num_cpus, include_dashboard=False, logging_level="WARNING")
    return True


def _launch(sweep: Sweep, pending: list[Run]) -> dict[str, dict[str, Any]]:
    """Submit every pending run as a Ray task; collect results as they finish, with progress."""
    import ray

    gpus = sweep.ray.gpus_per_run if ray.cluster_resources().get("GPU", 0) > 0 else 0
    task = ray.remote(execute_run).options(num_cpus=sweep.ray.cpus_per_run, num_gpus=gpus,
                                           max_retries=sweep.ray.max_retries)
    refs = {task.remote(sweep.command, list(r.argv), str(sweep.out / r.name), sweep.has_run_section,
                        sweep.ray.cpus_per_run): r for r in pending}
    results: dict[str, dict[str, Any]] = {}
    with progress(len(refs), "sweep", every_s=0.0) as bar:
        while refs:
            [ready], _ = ray.wait(list(refs), num_returns=1)
            run = refs.pop(ready)
            try:
                res = ray.get(ready)
            except Exception as e:  # the worker itself died (after its retries): still only this run fails
                res = {"status": "failed", "error": _error_line(e), "wall_s": None}
            results[run.name] = res
            if res["status"] == "failed":
                print(f"[sweep] FAILED {run.name}: {res['error']} (log: {sweep.out / run.name / LOG})", flush=True)
            bar.update(1, last=run.name, failed=sum(r["status"] == "failed" for r in results.values()))
    return results


def summary_rows(sweep: Sweep, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run: status, wall time, error, and the last row of its eval.jsonl."""
    rows = []
    for run in sweep.runs:
        res = results.get(run.name, {"status": "not run"})
        evals = read_jsonl(sweep.out / run.name / "eval.jsonl")
        rows.append({"run": run.name, "status": res["status"], "wall_s": res.get("wall_s"),
                     "error": res.get("error", ""), "grid": dict(run.grid), **(evals[-1] if evals else {})})
    return rows


def _fmt(v: Any) -> str:
    return "-" if v is None or v == "" else f"{v:.4g}" if isinstance(v, float) else str(v)


def write_summary(sweep: Sweep, rows: list[dict[str, Any]]) -> str:
    """out/summary.md and out/summary.jsonl; returns the Markdown."""
    eval_keys = list(dict.fromkeys(k for r in rows for k in r if k.startswith("eval/")))
    cols = ["run", "status", "wall_s", "step"] + eval_keys[:MD_EVAL_COLUMNS]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "skipped", "failed")}
    lines = [f"# sweep {sweep.spec.name}: `tether {sweep.command}`", "",
             f"{len(rows)} runs: {counts['done']} done, {counts['skipped']} skipped (finished earlier), "
             f"{counts['failed']} failed. Last row of each run's eval.jsonl"
             + (f" (first {MD_EVAL_COLUMNS} keys; all in summary.jsonl)."
                if len(eval_keys) > MD_EVAL_COLUMNS else "."), ""]
    if not sweep.has_run_section:
        lines += [f"`{sweep.command}` has no run section: runs were not given --run.dir and cannot resume; their "
                  f"output is in {LOG} of each run directory.", ""]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    lines += [""] + [f"- {r['run']}: {r['error']}" for r in rows if r["status"] == "failed"]
    text = "\n".join(lines).rstrip() + "\n"
    sweep.out.mkdir(parents=True, exist_ok=True)
    (sweep.out / "summary.md").write_text(text)
    (sweep.out / "summary.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return text


def run_sweep(cfg: SweepConfig) -> int:
    """Validate the spec, run the runs not yet finished as Ray tasks, write the summary; 1 if any run failed."""
    check(len(cfg.specs) == 1, "specs", cfg.specs, "exactly one spec file: tether sweep SPEC.toml")
    sweep = load_spec(cfg.specs[0])
    _check_markers(sweep)
    if cfg.dry_run:
        _print_dry_run(sweep)
        return 0
    results = {r.name: {"status": "skipped", **json.loads((sweep.out / r.name / MARKER).read_text())}
               for r in sweep.runs if run_state(sweep.out / r.name) == "done"}
    pending = [r for r in sweep.runs if r.name not in results]
    print(f"sweep {sweep.spec}: {len(sweep.runs)} runs, {len(results)} finished earlier, {len(pending)} to run "
          f"-> {sweep.out}", flush=True)
    if pending:
        started = _init_ray(sweep, cfg)
        try:
            results.update(_launch(sweep, pending))
        finally:
            if started:
                import ray

                ray.shutdown()
    print(write_summary(sweep, summary_rows(sweep, results)), end="", file=sys.stdout)
    return 1 if any(r["status"] == "failed" for r in results.values()) else 0
