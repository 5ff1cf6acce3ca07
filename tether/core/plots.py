"""Headless learning curves from run directories: several runs overlaid, mean +- sd over seeds.

Runs whose configs differ only in seed and bookkeeping fields are one group; its curve is the mean over seeds at
each logged step, with a +-1 sd band. Groups are labelled by the config fields that differ between them.
Figures are written with the Agg backend (no display needed).
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tether.core.config import flatten
from tether.core.rundir import read_jsonl

__all__ = ["plot_curves", "group_runs", "run_labels", "flatten", "config_label", "label_fields", "differing_fields",
           "run_config", "is_noise_field", "is_bookkeeping_field"]

# Leaf names of fields that place, save or log a run without changing what it computes; a differing output
# directory or log interval is no difference between two runs' results.
BOOKKEEPING = frozenset({"out", "out_dir", "tensorboard", "wandb", "log_every", "save_every", "samples_every", "json",
                         "dry_run"})
# The same, but only in the run section or at the top level: `correction.name` and `model.path` are real choices.
RUN_BOOKKEEPING = frozenset({"dir", "name", "root", "resume"})


def _is_seed(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1]
    return leaf == "seed" or leaf.endswith("_seed")


def is_bookkeeping_field(key: str) -> bool:
    """Output and logging fields (run.dir, run.tensorboard, run.log_every, ..., any `out`): never a difference."""
    parts = key.split(".")
    return parts[-1] in BOOKKEEPING or (parts[-1] in RUN_BOOKKEEPING and (len(parts) == 1 or parts[0] == "run"))


def is_noise_field(key: str) -> bool:
    """Fields two runs of one group may differ in: seeds (grouped over) and bookkeeping fields."""
    return _is_seed(key) or is_bookkeeping_field(key)


def run_config(run: Path) -> dict[str, Any]:
    """The flattened config.json of a run ({} when there is none, or one warning line when it is unreadable)."""
    p = Path(run) / "config.json"
    if not p.exists():
        return {}
    try:
        cfg = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        print(f"warning: {p} is not valid JSON ({e}); the run is shown without its config", file=sys.stderr)
        return {}
    if not isinstance(cfg, dict):
        print(f"warning: {p} is not a JSON object; the run is shown without its config", file=sys.stderr)
        return {}
    return flatten(cfg)


def differing_fields(cfgs: list[dict[str, Any]], *, seeds: bool = False) -> list[str]:
    """Flattened keys whose values differ between the configs, in config order; bookkeeping fields are left out,
    and so are seeds unless `seeds`. A key absent from a config counts as None, so a field that is None or empty
    in every run but one is still a difference."""
    keys = dict.fromkeys(k for c in cfgs for k in c)
    return [k for k in keys if not is_bookkeeping_field(k) and (seeds or not _is_seed(k))
            and len({json.dumps(c.get(k), sort_keys=True, default=str) for c in cfgs}) > 1]


def _short(key: str, keys: list[str]) -> str:
    """The leaf of a dotted key when it names the field unambiguously among `keys`, else the whole key."""
    parts = key.split(".")
    if parts[-1] == "name" and len(parts) > 1:  # correction.name=dcmdp reads as correction=dcmdp, not name=dcmdp
        return ".".join(parts[:-1])
    return parts[-1] if sum(k.rsplit(".", 1)[-1] == parts[-1] for k in keys) == 1 else key


def _value(v: Any) -> str:
    return '""' if v == "" else str(v)


def _distinct(cfgs: list[dict[str, Any]], keys: list[str]) -> int:
    return len({json.dumps([c.get(k) for k in keys], default=str) for c in cfgs})


def label_fields(cfgs: list[dict[str, Any]]) -> list[str]:
    """The differing fields that tell the configs apart, in config order: a field joins only when it splits
    configs the fields before it leave tied (`steps` that always moves with `preset` adds nothing to a label)."""
    chosen: list[str] = []
    for k in differing_fields(cfgs):
        if _distinct(cfgs, chosen + [k]) > _distinct(cfgs, chosen):
            chosen.append(k)
    return chosen


def config_label(cfg: dict[str, Any], all_cfgs: list[dict[str, Any]], run: Path) -> str:
    """`field=value` for the fields that tell `all_cfgs` apart (bookkeeping and seeds left out), or the run
    directory's name (less any `_seed<N>` suffix) when no field does."""
    fields = label_fields(all_cfgs)
    if not fields:
        return Path(run).name.rsplit("_seed", 1)[0]
    return ", ".join(f"{_short(k, fields)}={_value(cfg.get(k))}" for k in fields)


def _tag(label: str, run: Path) -> str:
    """A repeated label plus the run's directory name (its parent too when the label already is that name)."""
    p = Path(run)
    return f"{p.parent.name}/{p.name}" if label == p.name else f"{label} ({p.name})"


def _unique(labels: list[str], runs: list[Path]) -> list[str]:
    """Disambiguate repeated labels with the directory name, then with a counter."""
    counts = Counter(labels)
    labels = [_tag(lab, r) if counts[lab] > 1 else lab for lab, r in zip(labels, runs, strict=True)]
    seen: Counter[str] = Counter()
    out = []
    for lab in labels:
        seen[lab] += 1
        out.append(lab if seen[lab] == 1 else f"{lab} #{seen[lab]}")
    return out


def group_runs(runs: list[Path]) -> dict[str, list[Path]]:
    """Group run dirs whose configs agree on every field but seeds and bookkeeping; label groups by what differs.
    A run without a config.json is a group of its own (nothing says it repeats another)."""
    configs = {r: run_config(r) for r in runs}
    keyed: dict[str, list[Path]] = defaultdict(list)
    for r, c in configs.items():
        kept = {k: v for k, v in c.items() if not is_noise_field(k)}
        keyed[json.dumps(kept, sort_keys=True, default=str) if c else f"dir:{Path(r).resolve()}"].append(r)
    reps = [configs[v[0]] for v in keyed.values()]
    known = [c for c in reps if c]  # a missing config.json says nothing about which fields differ
    labels = [config_label(c, known, v[0]) if c else Path(v[0]).name for c, v in zip(reps, keyed.values(), strict=True)]
    return dict(zip(_unique(labels, [v[0] for v in keyed.values()]), keyed.values(), strict=True))


def run_labels(runs: list[Path]) -> dict[Path, tuple[str, str]]:
    """(group label, unique run label) of every run: the group's label of `group_runs`, and for a group of several
    runs the seed fields that tell them apart (else the directory name) after a '/'."""
    out: dict[Path, tuple[str, str]] = {}
    for group, members in group_runs(runs).items():
        cfgs = [run_config(r) for r in members]
        seeds = differing_fields(cfgs, seeds=True) if len(members) > 1 else []
        for r, c in zip(members, cfgs, strict=True):
            tail = ",".join(f"{_short(k, seeds)}={_value(c.get(k))}" for k in seeds) or Path(r).name
            out[r] = (group, f"{group}/{tail}" if len(members) > 1 else group)
    unique = _unique([lab for _, lab in out.values()], list(out))
    return {r: (g, u) for (r, (g, _)), u in zip(out.items(), unique, strict=True)}


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
