"""Aggregate the DCMDP experiment runs (experiments/dcmdp_runs.sh) into Markdown tables and figures.

usage: python experiments/dcmdp_aggregate.py [RUNS_ROOT=runs/dcmdp] [--figures docs/results/figures]
Layout read: RUNS_ROOT/<cell>/s<seed>/{metrics.jsonl, eval.jsonl, eval_fp32.json}. Prints one table row per
cell (mean ± sd over the seeds present, n = number of seeds) and writes dcmdp_*.png figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def load_run(run: Path) -> dict | None:
    """Per-run summary: curves and final numbers (None if the run has not finished)."""
    metrics, evals = read_jsonl(run / "metrics.jsonl"), read_jsonl(run / "eval.jsonl")
    if len(evals) < 2 or not metrics:
        return None
    fp32 = json.loads((run / "eval_fp32.json").read_text()) if (run / "eval_fp32.json").exists() else {}

    def curve(key: str) -> list[float]:
        return [m.get(key, math.nan) for m in metrics]

    def tail_mean(key: str, n: int = 10) -> float:
        v = curve(key)[-n:]
        return sum(v) / len(v)

    def head_mean(key: str, n: int = 5) -> float:
        v = curve(key)[:n]
        return sum(v) / len(v)

    return {
        "seed": json.loads((run / "config.json").read_text())["run"]["seed"],
        "steps": [m["step"] for m in metrics], "delta": curve("mismatch/delta_mean"), "reward": curve("reward/mean"),
        "lambda": curve("dual/dcmdp/lambda"), "entropy": curve("rollout/entropy"),
        "delta0": head_mean("mismatch/delta_mean"), "delta_end": tail_mean("mismatch/delta_mean"),
        "k3_end": tail_mean("mismatch/kl_k3"), "reward_end": tail_mean("reward/mean"),
        "entropy_end": tail_mean("rollout/entropy"), "grad_end": tail_mean("grad/norm"),
        "lambda_end": curve("dual/dcmdp/lambda")[-1],
        "dep_acc0": evals[0]["eval/heldout/sample_acc"], "dep_acc": evals[-1]["eval/heldout/sample_acc"],
        "dep_maj": evals[-1]["eval/heldout/maj@8"], "dep_greedy": evals[-1]["eval/heldout/greedy_acc"],
        "dep_ood": evals[-1]["eval/ood/sample_acc"],
        "fp32_acc": fp32.get("eval/heldout/sample_acc", math.nan),
        "fp32_ood": fp32.get("eval/ood/sample_acc", math.nan), "fp32_maj": fp32.get("eval/heldout/maj@8", math.nan),
    }


def load_all(root: Path) -> dict[str, list[dict]]:
    cells: dict[str, list[dict]] = {}
    for cell in sorted(p for p in root.iterdir() if p.is_dir()):
        runs = [r for r in (load_run(s) for s in sorted(cell.glob("s*")) if s.is_dir()) if r is not None]
        if runs:
            cells[cell.name] = runs
    return cells


def mean_sd(values: list[float], fmt: str = "{:.3f}") -> str:
    v = [x for x in values if not math.isnan(x)]
    if not v:
        return "—"
    m = sum(v) / len(v)
    if len(v) == 1:
        return fmt.format(m)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
    return f"{fmt.format(m)} ± {fmt.format(sd)}"


COLUMNS = [("n", None, None), ("deployed held-out acc", "dep_acc", "{:.3f}"), ("deployed maj@8", "dep_maj", "{:.3f}"),
           ("deployed OOD acc", "dep_ood", "{:.3f}"), ("fp32 held-out acc", "fp32_acc", "{:.3f}"),
           ("fp32 OOD acc", "fp32_ood", "{:.3f}"), ("δ̄ steps 1-5", "delta0", "{:.2e}"),
           ("δ̄ last 10", "delta_end", "{:.2e}"), ("reward last 10", "reward_end", "{:.3f}"),
           ("entropy last 10", "entropy_end", "{:.3f}"), ("λ final", "lambda_end", "{:.3f}")]


def table(cells: dict[str, list[dict]], names: list[str]) -> str:
    head = "| cell | " + " | ".join(c for c, _, _ in COLUMNS) + " |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for name in names:
        if name not in cells:
            continue
        runs = cells[name]
        vals = [str(len(runs)) if key is None else mean_sd([r[key] for r in runs], fmt) for _, key, fmt in COLUMNS]
        rows.append(f"| {name} | " + " | ".join(vals) + " |")
    return "\n".join(rows)


def paired(cells: dict[str, list[dict]], names: list[str], base: str) -> str:
    """Per-seed differences cell − base (same seed = same eval problems and sampling noise), mean ± sd."""
    keys = [("Δ deployed held-out acc", "dep_acc", "{:+.3f}"), ("Δ fp32 held-out acc", "fp32_acc", "{:+.3f}"),
            ("Δ deployed maj@8", "dep_maj", "{:+.3f}"), ("Δ δ̄ last 10", "delta_end", "{:+.2e}"),
            ("Δ reward last 10", "reward_end", "{:+.3f}")]
    rows = [f"| cell − {base} | seeds | " + " | ".join(k for k, _, _ in keys) + " |", "|" + "---|" * (len(keys) + 2)]
    ref = {r["seed"]: r for r in cells.get(base, [])}
    for name in names:
        pairs = [(r, ref[r["seed"]]) for r in cells.get(name, []) if r["seed"] in ref]
        if name == base or not pairs:
            continue
        vals = [mean_sd([a[k] - b[k] for a, b in pairs], fmt) for _, k, fmt in keys]
        rows.append(f"| {name} | {','.join(str(a['seed']) for a, _ in pairs)} | " + " | ".join(vals) + " |")
    return "\n".join(rows)


def mismatch_table(folder: Path) -> str:
    """experiments/dcmdp_mismatch.sh output (one JSON object per precision per line) as one Markdown table."""
    cols = [("δ̄", "delta_mean"), ("max δ", "delta_max"), ("frac δ>0.0037", "delta_frac_above_c"),
            ("mean |Δlogp|", "abs_log_ratio_mean"), ("max |Δlogp|", "abs_log_ratio_max"), ("k3 KL", "kl_k3"),
            ("χ² seq", "chi2_seq"), ("ppl train", "ppl_train"), ("route flips", "route_flip_frac")]
    rows = ["| model | precision | " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * (len(cols) + 2)]
    for f in sorted(folder.glob("*.jsonl")):
        for r in read_jsonl(f):
            vals = [f"{r[k]:.2e}" if k in r else "—" for _, k in cols]
            rows.append(f"| {f.stem} | {r['precision']} | " + " | ".join(vals) + " |")
    return "\n".join(rows)


def plot_curves(cells: dict[str, list[dict]], names: list[str], key: str, ylabel: str, out: Path, *,
                logy: bool = False, hline: float | None = None, smooth: int = 5) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=90)
    for name in names:
        if name not in cells:
            continue
        runs = cells[name]
        n = min(len(r[key]) for r in runs)
        mean = [sum(r[key][i] for r in runs) / len(runs) for i in range(n)]
        if smooth > 1:
            mean = [sum(mean[max(0, i - smooth + 1):i + 1]) / len(mean[max(0, i - smooth + 1):i + 1]) for i in range(n)]
        ax.plot(runs[0]["steps"][:n], mean, label=f"{name} (n={len(runs)})")
    if hline is not None:
        ax.axhline(hline, color="k", ls=":", lw=1, label=f"c = {hline}")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default="runs/dcmdp", type=Path)
    ap.add_argument("--figures", default="docs/results/figures", type=Path)
    ap.add_argument("--mismatch", default="runs/dcmdp_mismatch", type=Path)
    args = ap.parse_args(argv)
    cells = load_all(args.root)
    if args.mismatch.exists():
        print(f"### mismatch by engine precision\n\n{mismatch_table(args.mismatch)}")
    corr = ["none", "tis_token", "mis_token", "icepop", "dcmdp", "dcmdp+tis_token"]
    groups = {
        "fp8 head-to-head": [f"fp8_{c}" for c in corr] + ["fp8_dcmdp_norm"],
        "int4 collapse": [f"int4_{c}" for c in corr],
        "bf16": [f"bf16_{c}" for c in corr],
        "int4 tolerance sweep": [n for n in sorted(cells, key=lambda s: float(s.split("_c")[1]) if "_c0" in s else 9)
                                 if n.startswith("int4_dcmdp_c")] + ["int4_none"],
        "int4 dual dynamics and variants": ["int4_dcmdp", "int4_dcmdp_norm", "int4_dcmdp_fixed10",
                                            "int4_dcmdp_token_to_go", "int4_dcmdp_sequence_reward",
                                            "int4_dcmdp_differentiable", "int4_dcmdp_lam0", "int4_none"],
    }
    for title, names in groups.items():
        print(f"\n### {title}\n\n{table(cells, names)}")
        base = next((n for n in names if n.endswith("_none")), None)
        if base:
            print(f"\n{paired(cells, names, base)}")
    fig = args.figures
    fig.mkdir(parents=True, exist_ok=True)
    plot_curves(cells, ["bf16_none", "fp8_none", "int4_none"], "delta", "δ̄ = mean |p_train − p_inf|",
                fig / "dcmdp_delta_vs_step.png", logy=True, hline=0.0037)
    plot_curves(cells, [f"int4_{c}" for c in corr], "reward", "batch reward (accuracy)",
                fig / "dcmdp_int4_reward.png", smooth=10)
    plot_curves(cells, [f"int4_{c}" for c in corr] + ["int4_dcmdp_fixed10"], "delta", "δ̄",
                fig / "dcmdp_int4_delta.png", smooth=5)
    plot_curves(cells, [f"fp8_{c}" for c in corr], "reward", "batch reward (accuracy)",
                fig / "dcmdp_fp8_reward.png", smooth=10)
    plot_curves(cells, ["fp8_dcmdp", "fp8_dcmdp_norm", "int4_dcmdp", "int4_dcmdp_norm"]
                + [n for n in cells if n.startswith("int4_dcmdp_c")], "lambda", "λ (applied)",
                fig / "dcmdp_lambda.png", smooth=1)
    sweep = sorted((float(n.split("_c")[1]), n) for n in cells if n.startswith("int4_dcmdp_c"))
    sweep = [(0.0037, "int4_dcmdp")] + sweep if "int4_dcmdp" in cells else sweep
    if sweep:
        fig_, axes = plt.subplots(1, 3, figsize=(9.6, 3.0), dpi=90)
        for ax, key, label in zip(axes, ["dep_acc", "delta_end", "entropy_end"],
                                  ["deployed held-out acc", "δ̄ last 10 steps", "entropy last 10 steps"], strict=True):
            xs = [c for c, _ in sweep]
            ys = [sum(r[key] for r in cells[n] if r["seed"] == 0) for _, n in sweep]
            ax.plot(xs, ys, "o-", label="DCMDP (seed 0)")
            if "int4_none" in cells:
                ax.axhline([r[key] for r in cells["int4_none"] if r["seed"] == 0][0], color="k", ls=":",
                           label="no correction (c = ∞)")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xticks(xs, [f"{c:.4f}" for c in xs], fontsize=6, rotation=30)
            ax.set_xlabel("tolerance c")
            ax.set_title(label, fontsize=9)
        axes[0].legend(fontsize=7)
        fig_.tight_layout()
        fig_.savefig(fig / "dcmdp_c_sweep.png")
        plt.close(fig_)
    summary = {name: [{k: v for k, v in r.items() if not isinstance(v, list)} for r in runs]
               for name, runs in cells.items()}
    (args.root / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
