"""The scene comparison of docs/results/trqam.md §6: runs, and their evaluations as JSON lines.

    python experiments/ogbench_scene.py run pilot        # scene task1 from scratch, 50K updates: QAM, FQL, BC
    python experiments/ogbench_scene.py run main         # task2: QAM, TRQAM, FQL, BC x 3 seeds, 50K + 20K online
    python experiments/ogbench_scene.py run sensitivity  # task2: QAM beta, TRQAM eps x {0.1, 0.3, 3, 10}, 2 seeds
    python experiments/ogbench_scene.py rows             # rewrite docs/results/data/ogbench_scene.jsonl
    python experiments/ogbench_scene.py manifest         # the dataset's manifest into docs/results/data
    python experiments/ogbench_scene.py plot             # success curves (mean +- sd over seeds) from the lines

`run BATCH` starts every run of the batch that has no summary.json yet, resuming the ones with a checkpoint
(`--run.resume`), one after another on one training thread plus one evaluation process (start two copies of the
same batch for two cores: a run is held by a lock file while it runs). The runs use `--preset cpu-scene` (4x256,
N_Q 2, batch 256, from scratch, 50K offline updates, 50-episode evaluations every 10K) with `--agent.bf16` (the
flows in bf16, the critic in fp32) where the CPU has native bf16 (AVX512-BF16 or AMX; elsewhere bf16 is several
times slower); BF16=true or BF16=false overrides the detection. The multiplier-1 cells
of the sensitivity sweep are the main comparison's offline evaluations. It needs the 1000 + 100 episode dataset
(`tether flow data --env scene-play --episodes 1000 --workers 2 --out data/ogbench`).

`rows` writes one line per evaluation of every run under runs/ogbench_scene, finished or not, with exactly the
keys task, method, param, value, seed, updates, phase, success, episodes, width, batch, num_qs, and keeps the
committed lines of runs whose directories are not here (an earlier session's); a run whose last evaluation is
among those lines is not run again. For a `phase` "online" line `updates` counts the offline updates plus the
online env steps at that evaluation.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

from tether.core.rundir import read_jsonl

ROOT = Path("runs/ogbench_scene")
OUT = Path("docs/results/data/ogbench_scene.jsonl")
DATA = Path("data/ogbench")
MANIFEST = Path("docs/results/data/ogbench_scene_dataset.json")
PARAM = {"qam": ("beta", "qam.beta"), "trqam": ("epsilon", "trqam.kl_budget"), "fql": ("alpha", "fql.alpha")}
"""method -> (the `param` key of a line, the config field it reads)."""


def run_name(task: int, method: str, value: float | None, seed: int) -> str:
    tag = "" if value is None else f"-{PARAM[method][0]}{value:g}"
    return f"task{task}/{method}{tag}-s{seed}"


DEFAULTS = {"bc": None, "fql": 300.0, "qam": 1.0, "trqam": 1.0}
"""The official scene values: FQL alpha 300, QAM beta (inv_temp) 1, TRQAM epsilon 1."""
ONLINE = ["--schedule.online-steps", "20000"]
"""The main comparison's online phase: 20K env steps, updates from the 5,000th (as the official code)."""


def batch(name: str) -> list[tuple[int, str, float | None, int, list[str]]]:
    """(task, method, value, seed, extra flags) of the runs of one batch, in the order they run."""
    if name == "pilot":  # scene task1, offline: QAM first (the pilot), then FQL and BC next to it
        return [(1, m, DEFAULTS[m], 0, []) for m in ("qam", "fql", "bc")]
    if name == "main":  # scene task2: every method, seed-major so a cut batch has whole seeds
        return [(2, m, DEFAULTS[m], s, ONLINE) for s in (0, 1, 2) for m in ("qam", "trqam", "fql", "bc")]
    if name == "sensitivity":  # scene task2, offline only: QAM beta and TRQAM epsilon x {0.1, 0.3, 1, 3, 10}
        return [(2, m, round(DEFAULTS[m] * x, 6), s, []) for s in (0, 1) for x in (0.1, 10.0, 0.3, 3.0)
                for m in ("qam", "trqam")]
    raise SystemExit(f"batch {name!r}: expected one of ['pilot', 'main', 'sensitivity']")


def native_bf16() -> bool:
    """The CPU computes bf16 natively (AVX512-BF16 or AMX): only there is `--agent.bf16` faster than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def run(name: str) -> None:
    bf16 = os.environ.get("BF16", "auto")
    flags = ["--preset", "cpu-scene", "--agent.bf16", str(native_bf16()).lower() if bf16 == "auto" else bf16]
    for task, method, value, seed, extra in batch(name):
        out = ROOT / run_name(task, method, value, seed)
        last = 50_000 + (int(extra[extra.index("--schedule.online-steps") + 1])
                         if "--schedule.online-steps" in extra else 0)
        if (out / "summary.json").exists() or (not out.exists() and done_elsewhere(task, method, value, seed, last)):
            print(f"{out}: finished, skipped", flush=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = open(f"{out}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{out}: running in another process, skipped", flush=True)
            continue
        hp = [] if value is None else [f"--{PARAM[method][1]}", str(value)]
        resume = ["--run.resume", "true"] if (out / "checkpoints").exists() and any((out / "checkpoints").iterdir()) \
            else []
        cmd = ["tether", "flow", "train", *flags, "--task", f"scene-play-singletask-task{task}-v0",
               "--method", method, *hp, "--run.seed", str(seed), "--run.dir", str(out), *resume, *extra]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        lock.close()
        rows()


def param(cfg: dict) -> tuple[str | None, float | None]:
    if cfg["method"] not in PARAM:
        return None, None
    key, field = PARAM[cfg["method"]]
    section, leaf = field.split(".")
    return key, cfg[section][leaf]


def line_key(r: dict) -> tuple:
    return r["task"], r["method"], r["param"], r["value"], r["seed"], r["updates"], r["phase"]


def committed() -> list[dict]:
    return [json.loads(x) for x in OUT.read_text().splitlines()] if OUT.exists() else []


def done_elsewhere(task: int, method: str, value: float | None, seed: int, last_update: int) -> bool:
    """An earlier session's committed lines hold this run's last evaluation."""
    name = f"scene-play-singletask-task{task}-v0"
    return any((r["task"], r["method"], r["value"], r["seed"], r["updates"]) == (name, method, value, seed,
                                                                                last_update) for r in committed())


def rows() -> None:
    lines = []
    for cfg_path in sorted(ROOT.glob("task*/*/config.json")):
        cfg = json.loads(cfg_path.read_text())
        key, value = param(cfg)
        offline = cfg["schedule"]["offline_steps"]
        for r in read_jsonl(cfg_path.parent / "eval.jsonl") if (cfg_path.parent / "eval.jsonl").exists() else []:
            lines.append({"task": cfg["task"], "method": cfg["method"], "param": key, "value": value,
                          "seed": cfg["run"]["seed"], "updates": r["step"],
                          "phase": "offline" if r["step"] <= offline else "online", "success": r["eval/success"],
                          "episodes": cfg["schedule"]["eval_episodes"], "width": cfg["agent"]["hidden"][0],
                          "batch": cfg["schedule"]["batch_size"], "num_qs": cfg["agent"]["num_qs"]})
    here = {(x["task"], x["method"], x["value"], x["seed"]) for x in lines}
    kept = [r for r in committed() if (r["task"], r["method"], r["value"], r["seed"]) not in here]
    lines = sorted(kept + lines, key=lambda r: tuple("" if v is None else str(v) for v in line_key(r)))
    OUT.write_text("".join(json.dumps(x) + "\n" for x in lines))
    print(f"{OUT}: {len(lines)} lines", file=sys.stderr)


def manifest() -> None:
    """The generated dataset's manifest (spec, sha256 and transitions per file, ogbench version) next to the
    results, so a regenerated dataset can be checked against the one the numbers came from."""
    m = json.loads((DATA / "manifest.json").read_text())
    MANIFEST.write_text(json.dumps(m, indent=1) + "\n")
    print(f"{MANIFEST}: {m['files']}", file=sys.stderr)


FIGURE = Path("docs/results/figures/trqam_scene_curves.png")


def plot() -> None:
    """Success vs updates per (task, method, value), mean +- sd over seeds, one panel per task, from the lines (so it
    needs no run directory)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lines = committed()
    tasks = sorted({r["task"] for r in lines})
    if not tasks:
        raise SystemExit(f"{OUT}: no lines to plot")
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        groups: dict[str, dict[int, list[float]]] = {}
        for r in lines:
            if r["task"] == task:
                name = r["method"].upper() + ("" if r["param"] is None else f" {r['param']}={r['value']:g}")
                groups.setdefault(name, {}).setdefault(r["updates"], []).append(100 * r["success"])
        for name, by_step in sorted(groups.items()):
            steps = sorted(by_step)
            mean = np.array([np.mean(by_step[t]) for t in steps])
            sd = np.array([np.std(by_step[t]) for t in steps])
            n = max(len(v) for v in by_step.values())
            ax.plot(steps, mean, marker="o", ms=3, label=f"{name} ({n} seed{'s' * (n > 1)})")
            ax.fill_between(steps, mean - sd, mean + sd, alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel("updates (offline; then + online env steps)")
        ax.set_ylabel("success % (50 episodes)")
        ax.set_ylim(-2, 102)
        ax.legend(fontsize=7)
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=120)
    print(f"wrote {FIGURE}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] in ("rows", "manifest", "plot"):
        {"rows": rows, "manifest": manifest, "plot": plot}[sys.argv[1]]()
    elif len(sys.argv) == 3 and sys.argv[1] == "run":
        run(sys.argv[2])
    else:
        raise SystemExit(__doc__)
