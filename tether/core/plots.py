"""Headless learning curves from run directories: several runs overlaid, mean +- sd over seeds.

Runs whose configs differ only in seed fields are one group; its curve is the mean over seeds at each
logged step, with a +-1 sd band. Figures are written with the Agg backend (no display needed).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tether.core.rundir import read_jsonl

__all__ = ["plot_curves", "group_runs", "flatten", "config_label", "run_config", "is_noise_field"]


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _is_seed(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1]
    return leaf == "seed" or leaf.endswith("_seed")


def is_noise_field(key: str) -> bool:
    """Fields that name or place a run rather than configure it: seeds anywhere, and the run section's
    directory/name/resume/logging fields (a `correction.name` or `model.path` is a real difference)."""
    parts = key.split(".")
    if _is_seed(key):
        return True
    return (len(parts) == 1 or parts[0] == "run") and parts[-1] in (
        "dir", "name", "resume", "root", "tensorboard", "log_every", "save_every")


def run_config(run: Path) -> dict[str, Any]:
    p = Path(run) / "config.json"
    return flatten(json.loads(p.read_text())) if p.exists() else {}


def group_runs(runs: list[Path]) -> dict[str, list[Path]]:
    """Group run dirs whose configs agree on every non-seed field; label groups by what differs."""
    configs = {r: run_config(r) for r in runs}
    keyed: dict[str, list[Path]] = defaultdict(list)
    for r, c in configs.items():
        keyed[json.dumps({k: v for k, v in c.items() if not is_noise_field(k)}, sort_keys=True, default=str)].append(r)
    reps = {k: configs[v[0]] for k, v in keyed.items()}
    return {config_label(reps[k], list(reps.values()), v[0]): v for k, v in keyed.items()}


def config_label(cfg: dict[str, Any], all_cfgs: list[dict[str, Any]], run: Path) -> str:
    keys = sorted({k for c in all_cfgs for k in c if not is_noise_field(k)})
    differing = [k for k in keys if len({json.dumps(c.get(k), default=str) for c in all_cfgs}) > 1]
    if not differing:
        return Path(run).name.rsplit("_seed", 1)[0]
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={cfg.get(k)}" for k in differing[:3])


def _curve(runs: list[Path], key: str, file: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    series = []
    for r in runs:
        rows = [(row["step"], row[key]) for row in read_jsonl(Path(r) / file) if key in row]
        if rows:
            series.append(dict(rows))
    if not series:
        return None
    steps = sorted(set.intersection(*(set(s) for s in series)))
    vals = np.array([[s[t] for t in steps] for s in series], dtype=float)  # (seeds, steps)
    return np.array(steps), vals.mean(0), vals.std(0)


def plot_curves(runs: list[Path], keys: list[str], out_png: str | Path, *, file: str = "metrics.jsonl") -> Path | None:
    """One panel per key; one line (mean +- sd over seeds) per group of runs. None if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = group_runs([Path(r) for r in runs])
    keys = [k for k in keys if any(_curve(g, k, file) is not None for g in groups.values())]
    if not keys:
        return None
    ncol = min(3, len(keys))
    nrow = (len(keys) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.0 * nrow), squeeze=False)
    colors = {label: f"C{i % 10}" for i, label in enumerate(groups)}  # one colour per group in every panel
    for ax, key in zip(axes.flat, keys, strict=False):
        for label, g in groups.items():
            c = _curve(g, key, file)
            if c is None:
                continue
            steps, mean, sd = c
            ax.plot(steps, mean, color=colors[label], label=f"{label} (n={len(g)})" if len(g) > 1 else label)
            if len(g) > 1:
                ax.fill_between(steps, mean - sd, mean + sd, color=colors[label], alpha=0.2)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines()}  # groups absent from panel 1 too
    fig.legend(list(handles.values()), list(handles), fontsize=7, loc="lower center",
               ncol=min(3, len(handles)), bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.04 * ((len(handles) + 2) // 3), 1, 1))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png
