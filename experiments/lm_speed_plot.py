"""Plot the LM engine's speed ratios from benchmark JSON lines (`experiments/lm_benchmarks.sh` writes them).

Left: rollout tokens/s relative to HF `generate` (eager and compiled engine) per model and dtype. Right: GRPO
step speed relative to TRL `GRPOTrainer` without gradient checkpointing (tether eager, compiled decode,
compiled decode + blocks, and the same without sharing the G rows' prompt when the run has it; TRL with gradient
checkpointing for reference). The dashed line is the issue's target (2x). Several result files may be given: for
each benchmark, model and dtype the last line read wins, so a newer run replaces an older one.
Usage: python experiments/lm_speed_plot.py RESULTS.jsonl [MORE.jsonl ...] OUT.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tether.core.rundir import read_jsonl  # noqa: E402

MODELS = {64: "(a) d=64", 128: "(b) d=128"}


def load(paths: list[Path]) -> list[dict]:
    """The benchmark lines of all files, the last one per (benchmark, model, dtype), in first-seen order."""
    latest = {}
    for path in paths:
        rows = read_jsonl(path)
        if not rows:
            raise ValueError(f"{path} holds no benchmark JSON lines")
        for r in rows:
            latest[(r["bench"], r.get("hidden"), r.get("dtype"), r.get("bf16"), r.get("compiled"))] = r
    return list(latest.values())


def bars(ax, groups: list[str], series: dict[str, list[float]], title: str, ylabel: str) -> None:
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, values, width, label=name)
        for x, v in zip(xs, values, strict=True):
            ax.text(x, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    ax.axhline(2.0, color="k", ls="--", lw=0.8)
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, max(2.2, max(max(v) for v in series.values())) + 0.45)    # room for the legend above the bars
    ax.legend(fontsize=7, loc="upper left", ncol=2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", type=Path, nargs="+")
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    rows = load(args.results)
    samp = [r for r in rows if r["bench"] == "lm_sampler"]
    step = [r for r in rows if r["bench"] == "lm_grpo_step" and not r["bf16"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    bars(left, [f"{MODELS.get(r['hidden'], r['hidden'])}\n{r['dtype']}" for r in samp],
         {"eager engine": [r["ratio"] for r in samp], "compiled engine": [r["ratio_compiled"] for r in samp]},
         "rollout engine vs HF generate (same dtype)", "tokens/s ratio (ours / HF)")
    bars(right, [MODELS.get(r["hidden"], r["hidden"]) for r in step],
         {"eager": [r["ratio_native"] for r in step], "compiled decode": [r["ratio_native_compiled"] for r in step],
          "+ compiled blocks": [r["ratio_native_compiled_all"] for r in step],
          **({"+ blocks, prompts not shared": [r.get("ratio_native_compiled_all_unshared", 0.0) for r in step]}
             if any("ratio_native_compiled_all_unshared" in r for r in step) else {}),
          "TRL with grad. checkpointing": [r["trl_s"] / r["trl_gc_s"] for r in step]},
         "GRPO step vs TRL GRPOTrainer (fp32, no grad. checkpointing)", "speed ratio (TRL time / time)")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
