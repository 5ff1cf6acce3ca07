"""The scene comparison of docs/results/trqam.md §6: runs, and their evaluations as JSON lines.

    python experiments/ogbench_scene.py run pilot        # QAM beta 1 from scratch on scene task1, 50K updates
    python experiments/ogbench_scene.py rows             # rewrite docs/results/data/ogbench_scene.jsonl
    python experiments/ogbench_scene.py manifest         # the dataset's manifest into docs/results/data

`run BATCH` starts every run of the batch that has no summary.json yet, resuming the ones with a checkpoint
(`--run.resume`), one after another on one training thread plus one evaluation process; it needs the 1000 + 100
episode dataset (`tether flow data --env scene-play --episodes 1000 --workers 2 --out data/ogbench`).
`rows` writes one line per evaluation of every run under runs/ogbench_scene, finished or not, with exactly the
keys task, method, param, value, seed, updates, phase, success, episodes, width, batch, num_qs. For a `phase`
"online" line `updates` counts the offline updates plus the online env steps at that evaluation.
"""

from __future__ import annotations

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


def batch(name: str) -> list[tuple[int, str, float | None, int, list[str]]]:
    """(task, method, value, seed, extra flags) of the runs of one batch."""
    if name == "pilot":
        return [(1, "qam", 1.0, 0, [])]
    raise SystemExit(f"batch {name!r}: expected one of ['pilot']")


def run(name: str) -> None:
    flags = ["--preset", "cpu-scene", "--agent.bf16", os.environ.get("BF16", "true")]
    for task, method, value, seed, extra in batch(name):
        out = ROOT / run_name(task, method, value, seed)
        if (out / "summary.json").exists():
            print(f"{out}: finished, skipped", flush=True)
            continue
        hp = [] if value is None else [f"--{PARAM[method][1]}", str(value)]
        resume = ["--run.resume", "true"] if (out / "checkpoints").exists() and any((out / "checkpoints").iterdir()) \
            else []
        cmd = ["tether", "flow", "train", *flags, "--task", f"scene-play-singletask-task{task}-v0",
               "--method", method, *hp, "--run.seed", str(seed), "--run.dir", str(out), *resume, *extra]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


def param(cfg: dict) -> tuple[str | None, float | None]:
    if cfg["method"] not in PARAM:
        return None, None
    key, field = PARAM[cfg["method"]]
    section, leaf = field.split(".")
    return key, cfg[section][leaf]


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
    OUT.write_text("".join(json.dumps(x) + "\n" for x in lines))
    print(f"{OUT}: {len(lines)} lines", file=sys.stderr)


def manifest() -> None:
    """The generated dataset's manifest (spec, sha256 and transitions per file, ogbench version) next to the
    results, so a regenerated dataset can be checked against the one the numbers came from."""
    m = json.loads((DATA / "manifest.json").read_text())
    MANIFEST.write_text(json.dumps(m, indent=1) + "\n")
    print(f"{MANIFEST}: {m['files']}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] in ("rows", "manifest"):
        {"rows": rows, "manifest": manifest}[sys.argv[1]]()
    elif len(sys.argv) == 3 and sys.argv[1] == "run":
        run(sys.argv[2])
    else:
        raise SystemExit(__doc__)
