"""`tether coherence neural`, its plots and its `tether demo` section.

The lead wires `NEURAL_COMMANDS` and `neural_demo_section` into `tether/coherence/cli.py`.
JSON rows (one per round, mean over seeds) always carry `round`, `success`, `exact_success`,
`root_policy`, `fidelity_tv`; non-finite floats are written as null (strict JSON).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from tether.coherence.neural.train import NeuralConfig, run
from tether.core.cli import Command
from tether.core.progress import progress

__all__ = ["NEURAL_COMMANDS", "neural_demo_section", "plot_neural", "plot_cost", "plot_run_dir", "cost_axes",
           "cost_curve", "run_neural"]


def _finite(x):
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    return x


def run_neural(cfg: NeuralConfig) -> int:
    """Run every seed, print the per-round means (JSON lines or a table), optionally save rows and plots."""
    t0 = time.perf_counter()
    # progress on stderr, one step per (seed, round): stdout stays the JSON lines or the table
    with progress(cfg.seeds * cfg.rounds, f"coherence neural {cfg.env}") as bar:
        rows, agg = run(cfg, on_round=lambda r: bar.update(1, seed=r["seed"], round=r["round"],
                                                           success=r["success"]))
    if cfg.json:
        for r in agg:
            print(json.dumps(_finite(r)))
    else:
        rej_head = f" {'rej_S':>7} {'rej[0]':>7}" if cfg.rejection else ""
        print(f"{'k':>3} {'success':>9} {'exact':>7} {'root[0]':>8} {'exact':>7} {'temper':>7} "
              f"{'fid_tv':>7} {'kappa_1':>8} {'k_1/k':>7}" + rej_head)
        for r in agg:
            line = (f"{r['round']:>3} {r['success']:>9.4f} {r['exact_success']:>7.4f} "
                    f"{r['root_policy'][0]:>8.3f} {r['exact_root_policy'][0]:>7.3f} "
                    f"{r['tempered_root_policy'][0]:>7.3f} {r['fidelity_tv']:>7.4f} "
                    f"{r['kappa_1']:>8.4f} {r['kappa_inv_k']:>7.4f}")
            if cfg.rejection:
                line += f" {r['rejection_success']:>7.4f} {r['rejection_root_policy'][0]:>7.3f}"
            print(line)
        print(f"[{cfg.env}, {cfg.seeds} seeds, N = {cfg.rollouts}: {time.perf_counter() - t0:.1f} s]")
    if cfg.out:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "rows.jsonl").write_text("".join(json.dumps(_finite(r)) + "\n" for r in rows))
        (out / "neural.jsonl").write_text("".join(json.dumps(_finite(r)) + "\n" for r in agg))
        plot_neural(rows, out / "neural.png", title=cfg.env)
        if cfg.rejection:
            plot_cost(agg, cfg.rollouts, out / "neural_cost.png", title=cfg.env)
    return 0


NEURAL_COMMANDS = [Command("neural", NeuralConfig, run_neural,
                           "Goal-conditioned GRU re-trained on its own rollouts, scored against exact G^k")]


def _band(ax, rows: list[dict], key: str, index: int | None, label: str, color: str) -> None:
    """Mean ± sd over seeds of `rows[key]` (or `rows[key][index]`) against the round."""
    ks = sorted({r["round"] for r in rows if key in r})
    pick = lambda r: r[key] if index is None else r[key][index]  # noqa: E731
    vals = [np.array([pick(r) for r in rows if r["round"] == k and key in r], dtype=float) for k in ks]
    finite = [v[np.isfinite(v)] for v in vals]  # saved rows hold null for +-inf (e.g. kappa of a bad fit)
    m = np.array([v.mean() if v.size else np.nan for v in finite])
    s = np.array([v.std() if v.size else np.nan for v in finite])
    ax.plot(ks, m, "o-", ms=3, color=color, label=label)
    ax.fill_between(ks, m - s, m + s, color=color, alpha=0.25, lw=0)


def _exact(ax, rows: list[dict], key: str, index: int | None, label: str, style: str) -> None:
    first = {r["round"]: r for r in rows}
    ks = sorted(first)
    ys = np.array([first[k][key] if index is None else first[k][key][index] for k in ks], dtype=float)
    ax.plot(ks, ys, style, lw=1.2, label=label)


def plot_neural(rows: list[dict], out_png: Path, title: str = "") -> None:
    """Four panels from per-seed rows: success, root action 0, one-step fidelity, incoherence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    ax = axes[0]
    _band(ax, rows, "success", None, "neural re-training", "C0")
    _exact(ax, rows, "exact_success", None, "exact $S(G^k p)$", "k--")
    if "rejection_success" in rows[0]:
        _band(ax, rows, "rejection_success", None, "rejection $q^k$", "C1")
    ax.set(title="success", xlabel="round k")
    ax = axes[1]
    _band(ax, rows, "root_policy", 0, "neural $\\pi_k$", "C0")
    _exact(ax, rows, "exact_root_policy", 0, "$G^k p$", "k--")
    _exact(ax, rows, "tempered_root_policy", 0, "$\\pi_{\\alpha=k}$", "g:")
    if "rejection_root_policy" in rows[0]:
        _band(ax, rows, "rejection_root_policy", 0, "rejection", "C1")
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set(title="root: P(action 0)", xlabel="round k")
    ax = axes[2]
    _band(ax, rows, "fidelity_tv", None, "TV($\\pi_k$, G($\\pi_{k-1}$))", "C0")
    _band(ax, rows, "tv_to_exact", None, "TV($\\pi_k$, $G^k p$)", "C3")
    ax.axhline(0.1, color="grey", lw=0.5)
    ax.set(title="occupancy-weighted TV", xlabel="round k", ylim=(0, None))
    ax = axes[3]
    _band(ax, rows, "kappa_1", None, "neural $\\kappa_1$", "C0")
    _exact(ax, rows, "exact_kappa_1", None, "exact $\\kappa_1$", "k--")
    _band(ax, rows, "kappa_inv_k", None, "neural $\\kappa_{1/k}$", "C2")
    _exact(ax, rows, "exact_kappa_inv_k", None, "exact $\\kappa_{1/k}$", "k:")
    ax.set(title="incoherence", xlabel="round k")
    for ax in axes:
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=72)
    plt.close(fig)


def cost_curve(agg: list[dict], rollouts: int,
               delivered: int | None = None) -> dict[str, list[tuple[float, float]]]:
    """(success reached, environment samples) per route, to deliver `delivered` trajectories at that level.

    Re-training: `k N` samples of training (round 1 = the offline data) plus 1 per delivered trajectory.
    Rejection: `1 / acceptance` per delivered trajectory, nothing up front. Cumulative folding: its
    training samples plus 1 per delivered trajectory. `delivered` defaults to N (`rollouts`).
    """
    m = rollouts if delivered is None else delivered
    out = {"re-training": [(r["success"], r["env_samples"] + m) for r in agg]}
    if "rejection_success" in agg[0]:
        out["rejection"] = [(r["rejection_success"], m / r["rejection_acceptance"]) for r in agg]
    if "fold_success" in agg[0]:
        out["cumulative folding"] = [(r["fold_success"], r["fold_env_samples"] + m)
                                     for r in agg if "fold_success" in r]
    return out


def plot_cost(agg: list[dict], rollouts: int, out_png: Path, title: str = "") -> None:
    """Env samples vs success level per route, delivering N (solid) and 10 N (dashed) trajectories."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    cost_axes(ax, agg, rollouts)
    ax.set_title(f"cost: {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=72)
    plt.close(fig)


def cost_axes(ax, agg: list[dict], rollouts: int) -> None:
    for mult, ls in ((1, "-"), (10, "--")):
        for (name, pts), (mk, c) in zip(cost_curve(agg, rollouts, mult * rollouts).items(),
                                        (("o", "C0"), ("s", "C1"), ("^", "C2")), strict=False):
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=mk, ls=ls, color=c, ms=3,
                    label=f"{name}, {'' if mult == 1 else mult}N out")
    ax.set(yscale="log", xlabel="success of the delivered trajectories",
           ylabel=f"env samples (N = {rollouts})")
    ax.legend(fontsize=5, loc="upper left", ncol=2)


def plot_run_dir(run_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Figures of a saved `--out` directory (rows.jsonl, neural.jsonl), for `tether coherence plot`."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in (run_dir / "rows.jsonl").read_text().splitlines()]
    agg = [json.loads(line) for line in (run_dir / "neural.jsonl").read_text().splitlines()]
    paths = [out_dir / "neural.png"]
    plot_neural(rows, paths[0], title=run_dir.name)
    if "rejection_success" in agg[0]:
        paths.append(out_dir / "neural_cost.png")
        rollouts = int(round(agg[0]["env_samples"]))  # round 1 used exactly N rollouts
        plot_cost(agg, rollouts, paths[1], title=run_dir.name)
    return paths


def neural_demo_section(out_dir: Path) -> str:
    """Mountain race, 2 seeds, 6 rounds with rejection and 4 folding rounds (about 30 s on one thread)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = NeuralConfig(env="mountain-race", rounds=6, seeds=2, rollouts=4000, fold_rounds=4, accepted=2000)
    t0 = time.perf_counter()
    rows, agg = run(cfg)
    plot_neural(rows, out_dir / "coherence_neural_demo.png", title="mountain race, GRU, 2 seeds, N = 4000")
    plot_cost(agg, cfg.rollouts, out_dir / "coherence_neural_demo_cost.png", title="mountain race")
    lines = ["| k | neural S | exact S(G^k p) | neural π_k(↗) | exact | rejection π(↗) | fidelity TV |",
             "|---|---|---|---|---|---|---|"]
    for r in agg:
        lines.append(f"| {r['round']} | {r['success']:.4f} | {r['exact_success']:.4f} | "
                     f"{r['root_policy'][0]:.3f} | {r['exact_root_policy'][0]:.3f} | "
                     f"{r['rejection_root_policy'][0]:.3f} | {r['fidelity_tv']:.4f} |")
    return "\n".join([
        "## Neural coherence (mountain race)",
        "",
        "A GRU over `[O], s_0, a_0, s_1, a_1` trained offline on uniform-prior rollouts labelled with their "
        "outcomes, then re-trained on its own success-conditioned rollouts (fresh data only). Each round the "
        "network is read out as a tabular policy and scored exactly against `G^k(p)` "
        "(= temperature 1/k here).",
        "",
        *lines,
        "",
        "![neural](coherence_neural_demo.png)  ![cost](coherence_neural_demo_cost.png)",
        "",
        f"_{cfg.seeds} seeds, N = {cfg.rollouts} rollouts per round, "
        f"{time.perf_counter() - t0:.0f} s on one thread._",
    ])
