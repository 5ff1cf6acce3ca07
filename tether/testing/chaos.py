"""Chaos check of crash-proof runs: `kill -9` real `tether lm train` and `tether flow train` processes at random
moments, restart each until it finishes (with `--run.resume` once it has a checkpoint), and compare it with the
same run left alone.

    python -m tether.testing.chaos --trials 20 --out runs/chaos

Per run it checks: the run finishes after its restarts; every checkpoint it left loads (0 corrupt); its
metrics.jsonl and eval.jsonl rows equal the uninterrupted run's (timings aside); no evaluation worker outlives a
killed trainer. It prints one JSON line per run and a closing verdict line. The slow test lane runs it
(`tests/testing/test_chaos.py`); docs/reliability.md lists what it guarantees.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from tether.core.checkpoint import load_checkpoint
from tether.core.rundir import RunDir, read_jsonl

__all__ = ["LM", "flow_command", "straight_run", "chaos_run", "main"]

LM = ["lm", "train", "--preset", "smoke", "--steps", "16", "--run.save-every", "1", "--rollout.prompts-per-step", "4",
      "--rollout.group-size", "4", "--eval.every", "4", "--eval.n-prompts", "8", "--eval.k", "2",
      "--samples-every", "0"]
"""A few-second GRPO run of the shipped medium base, a checkpoint every step, evaluations every 4."""


def flow_command(data_dir: Path, bc_dir: Path) -> list[str]:
    """A few-second TRQAM run on scene task2 (tiny nets, 5-step online episodes so online saves come often)."""
    return ["flow", "train", "--preset", "smoke", "--method", "trqam", "--data-dir", str(data_dir), "--bc-dir",
            str(bc_dir), "--eval-workers", "1", "--max-episode-steps", "5", "--schedule.offline-steps", "30",
            "--schedule.online-steps", "30", "--schedule.eval-every", "10", "--run.save-every", "4"]


def _children(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (Linux /proc; [] elsewhere)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start(args: list[str], run_dir: Path, log) -> subprocess.Popen:
    resume = ["--run.resume"] if RunDir.state(run_dir) == "resumable" else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.Popen([sys.executable, "-m", "tether.cli", *args, "--run.dir", str(run_dir), *resume],
                            stdout=log, stderr=log, env=env)


def _rows(run_dir: Path, name: str) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/"))} for r in read_jsonl(run_dir / name)]


def straight_run(args: list[str], out: Path) -> float:
    """The uninterrupted reference run in `out`; returns its wall time."""
    with open(out.with_suffix(".log"), "w") as log:
        t0 = time.perf_counter()
        if subprocess.run([sys.executable, "-m", "tether.cli", *args, "--run.dir", str(out)], stdout=log, stderr=log,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}).returncode:
            raise RuntimeError(f"the uninterrupted run failed; see {out.with_suffix('.log')}")
    return time.perf_counter() - t0


def chaos_run(args: list[str], straight: Path, out: Path, *, kills: int, rng: random.Random,
              duration: float) -> dict:
    """Run `args` in `out`, SIGKILL it `kills` times at random moments, restart it until it finishes and compare
    it with the uninterrupted run in `straight`; returns the verdict row. A run that finishes before its first
    kill lands is tried again in a new folder (`out` + "-again"), so every trial really is killed."""
    done, orphans, starts = 0, 0, 0
    with open(out.with_suffix(".log"), "w") as log:
        while True:
            proc = _start(args, out, log)
            starts += 1
            if done < kills:
                time.sleep(rng.uniform(0.2, 0.8) * duration)
                if proc.poll() is None:
                    workers = _children(proc.pid)
                    proc.kill()
                    proc.wait()
                    done += 1
                    time.sleep(0.5)
                    orphans += sum(_alive(w) for w in workers)
                    continue
                if done == 0:  # finished before the first kill: not a trial yet
                    proc.wait()
                    out = out.with_name(out.name + "-again")
                    continue
            if proc.wait() == 0 and _rows(out, "metrics.jsonl")[-1:] == _rows(straight, "metrics.jsonl")[-1:]:
                break
            if starts > 3 * kills + 10:
                raise RuntimeError(f"the run did not finish after {starts} starts; see {out.with_suffix('.log')}")
    corrupt = 0
    for ckpt in sorted((out / "checkpoints").glob("step_*")):
        try:
            load_checkpoint(ckpt)
        except Exception:  # noqa: BLE001 - any failure to load is what this check counts
            corrupt += 1
    equal = all(_rows(straight, n) == _rows(out, n) for n in ("metrics.jsonl", "eval.jsonl"))
    return {"run": str(out), "kills": done, "starts": starts, "corrupt_checkpoints": corrupt,
            "orphan_workers": orphans, "equal": equal}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=20, help="killed runs in all, alternating lm and flow")
    p.add_argument("--out", default="runs/chaos", help="work directory (a new one per invocation is safest)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments and counts")
    p.add_argument("--skip-flow", action="store_true", help="lm runs only (ogbench not installed)")
    a = p.parse_args(argv)
    out, rng = Path(a.out), random.Random(a.seed)
    out.mkdir(parents=True, exist_ok=True)
    jobs = {"lm": LM}
    if not a.skip_flow:
        from tether.flow.ogbench import data as od

        od.generate(od.DataSpec("scene-play", episodes=2, seed=0, episodes_per_shard=1, episode_steps=120),
                    out / "data")
        jobs["flow"] = flow_command(out / "data", out / "bc")
    straight_run(jobs.get("flow", LM), out / "warm-up")  # the first flow run trains the shared BC cache
    durations = {name: straight_run(args, out / f"{name}-straight") for name, args in jobs.items()}
    rows = []
    for i in range(a.trials):
        name = list(jobs)[i % len(jobs)]
        row = chaos_run(jobs[name], out / f"{name}-straight", out / f"{name}-{i:02d}", kills=1 + rng.randrange(2),
                        rng=rng, duration=durations[name])
        print(json.dumps(row), flush=True)
        rows.append(row)
    ok = [r for r in rows if r["equal"] and r["kills"] and not r["corrupt_checkpoints"] and not r["orphan_workers"]]
    print(f"chaos: {len(ok)}/{len(rows)} resumed and equal ({sum(r['kills'] for r in rows)} kills); "
          f"{sum(r['corrupt_checkpoints'] for r in rows)} corrupt checkpoints; "
          f"{sum(r['orphan_workers'] for r in rows)} orphan workers", flush=True)
    return 0 if len(ok) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
