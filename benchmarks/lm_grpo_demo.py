"""GRPO demonstration: ground-truth-reward GRPO on the shipped medium base, several seeds, held-out gain.

Runs `tether lm train --preset gsm-tiny --run.seed S [extra flags]` for each seed (2 processes at a time,
one torch thread each), then reads each run's eval.jsonl and prints one JSON line with, per metric, the
value before training (step 0), after training, and the gain's mean and sample std over seeds, plus the
wall time of each run. Usage:
    python benchmarks/lm_grpo_demo.py --seeds 0 1 2 --out runs/lm_demo [-- --optim.lr 1e-4 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

KEYS = ("greedy_acc", "sample_acc", "pass@8", "maj@8", "len_mean", "unparsable_frac")


def summarize(runs: list[Path], split: str = "heldout") -> dict:
    out: dict = {}
    for key in KEYS:
        full = f"eval/{split}/{key}"
        pairs = []
        for r in runs:
            rows = [json.loads(line) for line in (r / "eval.jsonl").read_text().splitlines() if line.strip()]
            pairs.append((rows[0][full], rows[-1][full]))
        gains = [b - a for a, b in pairs]
        out[key] = {"before": [round(a, 4) for a, _ in pairs], "after": [round(b, 4) for _, b in pairs],
                    "gain_mean": round(statistics.mean(gains), 4),
                    "gain_sd": round(statistics.stdev(gains), 4) if len(gains) > 1 else 0.0}
    return out


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="runs/lm_demo")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--preset", default="gsm-tiny")
    args = ap.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    runs, walls, pending = [], {}, list(args.seeds)
    active: dict[int, tuple[subprocess.Popen, float]] = {}
    while pending or active:
        while pending and len(active) < args.parallel:
            s = pending.pop(0)
            d = Path(args.out) / f"seed{s}"
            runs.append(d)
            cmd = [sys.executable, "-c", "import sys; from tether.cli import main; sys.exit(main())", "lm", "train",
                   "--preset", args.preset, "--run.seed", str(s), "--run.dir", str(d), *extra]
            log = open(Path(args.out) / f"seed{s}.log", "w")
            active[s] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), time.perf_counter())
        time.sleep(1.0)
        for s, (p, t0) in list(active.items()):
            if p.poll() is not None:
                if p.returncode != 0:
                    raise SystemExit(f"seed {s} failed (exit {p.returncode}); see {args.out}/seed{s}.log")
                walls[s] = round(time.perf_counter() - t0, 1)
                del active[s]
    print(json.dumps({"bench": "lm_grpo_demo", "preset": args.preset, "extra": extra, "seeds": args.seeds,
                      "wall_s": [walls[s] for s in args.seeds], "heldout": summarize(runs)}))


if __name__ == "__main__":
    main()
