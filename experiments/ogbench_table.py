"""Markdown table of an OGBench sweep (docs/results/trqam.md §6): success offline and after online, per method.

usage: python experiments/ogbench_table.py runs/sweep/scene_task2
Groups run directories by their config minus the seed; prints mean ± sd over seeds and the per-seed values.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from tether.core.rundir import read_jsonl


def _hp(cfg: dict, section: str, name: str) -> float:
    """A method hyper-parameter of a run's config.json: nested (`qam.beta`) or, in runs before the sections
    were nested, flat (`beta`)."""
    return cfg[section][name] if section in cfg else cfg[name]


def label(cfg: dict) -> str:
    m = cfg["method"]
    extra = {"qam": f" β={_hp(cfg, 'qam', 'beta'):g}", "trqam": f" ε={_hp(cfg, 'trqam', 'kl_budget'):g}",
             "fql": f" α={_hp(cfg, 'fql', 'alpha'):g}"}
    return m.upper() + extra.get(m, "")


def tail_mean(rows: list[dict], key: str, frac: float = 0.2) -> float | None:
    vals = [r[key] for r in rows if key in r]
    return statistics.fmean(vals[int(len(vals) * (1 - frac)):]) if vals else None


def fmt(vals: list[float | None], pct: bool = False) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    scale = 100 if pct else 1
    mean = statistics.fmean(vals) * scale
    sd = statistics.stdev(vals) * scale if len(vals) > 1 else 0.0
    each = "/".join(f"{v * scale:.3g}" for v in vals)
    return f"{mean:.3g} ± {sd:.2g} ({each})"


def main(root: str) -> None:
    groups: dict[str, list[Path]] = {}
    for run in sorted(p for p in Path(root).iterdir() if (p / "summary.json").exists()):
        groups.setdefault(label(json.loads((run / "config.json").read_text())), []).append(run)
    print("| method | seeds | success % offline (10K) | success % after online (+2K) | kl/path (last 20%) | "
          "λ_eff end | q/mean end | wall min |")
    print("|---|---|---|---|---|---|---|---|")
    for name, runs in groups.items():
        summ = [json.loads((r / "summary.json").read_text()) for r in runs]
        rows = [read_jsonl(r / "metrics.jsonl") for r in runs]
        lam = [next((x["dual/trqam/lambda"] for x in reversed(rs) if "dual/trqam/lambda" in x), None) for rs in rows]
        q = [next((x["q/mean"] for x in reversed(rs) if "q/mean" in x), None) for rs in rows]
        print(f"| {name} | {len(runs)} | {fmt([s['success_offline'] for s in summ], True)} | "
              f"{fmt([s['success_final'] for s in summ], True)} | {fmt([tail_mean(rs, 'kl/path') for rs in rows])} | "
              f"{fmt(lam)} | {fmt(q)} | {fmt([s['seconds'] / 60 for s in summ])} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/sweep/scene_task2")
