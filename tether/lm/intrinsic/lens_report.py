"""`tether lm lens`: the manifold-envelope lens of arXiv:2603.16578 applied to finished (or running) GRPO runs.

Reads each run's metrics.jsonl (and eval.jsonl when present), builds the 3-D phase trajectory
(`rollout/entropy`, log `rollout/len_mean`, `reward/mean`, each standardised by the run's first `w0` steps:
`tether.lm.intrinsic.lens.phase_trajectory`), the envelope (convex hull of the pooled trajectories of the `reference`
runs, or, label-free, of each run's own first `w0` points), the per-step envelope metrics (inside_frac,
hull_volume, escape) and the DTW clustering of the z-normalised entropy curves; draws three figures and
classifies each run as *enveloped* when the mean inside_frac over the second half of the run is
>= `enveloped_frac`. The axes, the envelope and the threshold are OUR operationalisation (see
docs/results/intrinsic.md): the paper names the ingredients, not the definitions. Runs are labelled as in
`tether report`, by the config fields that differ (`tether.core.plots.run_labels`: unique, seeds after a '/').

When runs have evaluations, it also reports the outcome (final minus first held-out sampled accuracy) and how well
the lens predicts it early (question Q3 of docs/results/intrinsic.md): for each step t in `predict_at`, the AUROC,
for "the run ends with held-out sampled accuracy below its start by more than `fail_drop`", of (a) 1 - mean
inside_frac up to t, (b) the largest escape up to t, (c) the partial-DTW score: open-end DTW of the run's entropy
curve up to t (standardised by its first w0 steps) to every OTHER finished run's curve, mean distance to the runs
that succeeded minus mean distance to those that failed (leave-one-out). The lead time of a failed run is the
first evaluated step at which its accuracy has dropped by `fail_drop` minus the first step its inside_frac fell
below `enveloped_frac` (positive = the lens warned first).

`--loo` runs the testable variant instead (`envelope_test`): axes fixed in advance (`lens.ENVELOPE_AXES`: entropy,
log length, unparsable fraction), every run standardised by the pooled step-0 statistics of all runs, run i
scored against the hull of the successful runs other than i, and the AUROC of "enveloped at step t" for final
success with a bootstrap 95 % interval. Success and collapse are fixed in advance too (`run_outcome`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tether.core.config import check
from tether.core.plots import run_labels
from tether.core.rundir import read_jsonl
from tether.lm.intrinsic.lens import (
    ENVELOPE_AXES,
    Envelope,
    bootstrap_auroc,
    cluster_curves,
    envelope_metrics,
    enveloped_loo,
    open_end_dtw,
    phase_trajectory,
    pooled_scale,
)
from tether.lm.intrinsic.prior_check import auroc

__all__ = ["LensConfig", "LENS_KEYS", "RunLens", "load_run", "analyse", "run_lens", "run_outcome", "envelope_test",
           "SUCCESS_GAIN"]

LENS_KEYS = ("rollout/entropy", "rollout/len_mean", "reward/mean")
ACC = "eval/heldout/sample_acc"


@dataclass(frozen=True)
class LensConfig:
    run_dirs: tuple[str, ...] = ()
    """Run directories (positional) written by `tether lm train`."""
    out: str = "runs/lm/lens"
    """Output directory for the figures and lens.jsonl."""
    reference: tuple[str, ...] = ()
    """Run directories whose pooled trajectories form the envelope (default: each run's own first w0 steps)."""
    w0: int = 10
    """Steps that standardise each trajectory (and form the label-free envelope)."""
    window: int = 10
    """Sliding window of inside_frac and hull_volume."""
    smooth: int = 5
    """Trailing moving average (steps) of the three logged metrics before the lens (1 = raw); causal, so the
    early-warning numbers only use the past."""
    clusters: int = 3
    """DTW clusters of the entropy curves (success / stagnation / relaxation in the paper's reading)."""
    enveloped_frac: float = 0.5
    """A run is enveloped when its mean inside_frac over the second half is at least this."""
    fail_drop: float = 0.05
    """Outcome label: a run failed when its final held-out sampled accuracy is below its first by more than this."""
    predict_at: tuple[int, ...] = (10, 20, 30)
    """Steps at which the early-warning AUROC of the lens is computed (runs with evaluations only)."""
    loo: bool = False
    """Testable envelope instead: fixed label-free axes, pooled step-0 standardisation, hull of the successful
    runs with the scored run left out, AUROC of "enveloped at step t" (predict_at) for success, bootstrap 95 %."""
    json: bool = False
    """Print one JSON object per run plus a summary (else a table)."""

    def __post_init__(self) -> None:
        check(self.w0 >= 4, "w0", self.w0, "an integer >= 4 (a 3-D hull needs 4 points)")
        check(self.window >= 1, "window", self.window, "an integer >= 1")
        check(self.smooth >= 1, "smooth", self.smooth, "an integer >= 1 (1 = no smoothing)")
        check(0 <= self.enveloped_frac <= 1, "enveloped_frac", self.enveloped_frac, "a float in [0, 1]")


@dataclass
class RunLens:
    name: str
    steps: np.ndarray            # (T,) logged steps
    z: np.ndarray                # (T, 3) standardised phase trajectory
    entropy: np.ndarray          # (T,) raw mean token entropy
    metrics: dict[str, np.ndarray]
    evals: list[dict]
    group: str = ""              # label shared by the runs that differ only by seed (one colour)
    cluster: int = 0
    reference: bool = False      # one of the runs forming the envelope (left out of the early-warning AUROC)

    def inside_late(self) -> float:
        return float(self.metrics["inside_frac"][len(self.z) // 2:].mean())

    def acc_delta(self) -> float | None:
        accs = [e[ACC] for e in self.evals if ACC in e]
        return accs[-1] - accs[0] if len(accs) >= 2 else None


def trailing_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Mean of the last k rows at each row (fewer at the start); x (T, d)."""
    c = np.cumsum(np.vstack([np.zeros((1, x.shape[1])), x]), 0)               # (T + 1, d)
    t = np.arange(1, len(x) + 1)
    lo = np.maximum(t - k, 0)
    return (c[t] - c[lo]) / (t - lo)[:, None]


def load_run(path: str | Path, w0: int, smooth: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """(steps (T,), standardised phase trajectory (T, 3), smoothed raw entropy (T,), evaluation rows)."""
    p = Path(path)
    rows = [r for r in read_jsonl(p / "metrics.jsonl") if all(k in r for k in LENS_KEYS)]
    evals = read_jsonl(p / "eval.jsonl") if (p / "eval.jsonl").exists() else []
    raw = trailing_mean(np.array([[r[k] for k in LENS_KEYS] for r in rows], dtype=float).reshape(-1, 3), smooth)
    z = phase_trajectory([dict(zip(LENS_KEYS, v, strict=True)) for v in raw], keys=LENS_KEYS, w0=w0)
    return np.array([r["step"] for r in rows]), z, raw[:, 0], evals


def analyse(cfg: LensConfig) -> list[RunLens]:
    """Trajectories, envelope metrics and DTW clusters of every run."""
    # checked here, not in __post_init__: the CLI parser builds the default (empty) config first
    check(len(cfg.run_dirs) >= 1, "run_dirs", cfg.run_dirs, "at least one run directory")
    loaded = [load_run(d, cfg.w0, cfg.smooth) for d in cfg.run_dirs]
    shared = None
    if cfg.reference:
        shared = Envelope(np.concatenate([load_run(d, cfg.w0, cfg.smooth)[1] for d in cfg.reference]))
    runs = []
    refs = {Path(d).resolve() for d in cfg.reference}
    names = run_labels([Path(d) for d in cfg.run_dirs])  # the config fields that differ, as `tether report` does
    for d, (steps, z, ent, evals) in zip(cfg.run_dirs, loaded, strict=True):
        env = shared or Envelope(z[: cfg.w0])
        group, name = names[Path(d)]
        runs.append(RunLens(name, steps, z, ent, envelope_metrics(z, env, window=cfg.window), evals,
                            group=group, reference=Path(d).resolve() in refs))
    if len(runs) >= 2:
        labels, _ = cluster_curves([r.entropy for r in runs], k=cfg.clusters)
        for r, lab in zip(runs, labels, strict=True):
            r.cluster = int(lab)
    return runs


def early_warning(runs: list[RunLens], cfg: LensConfig) -> dict:
    """Q3: AUROC of the partial lens for the final outcome, and the lead time of its alarm over accuracy.
    Reference runs are left out: they are inside their own envelope by construction."""
    done = [r for r in runs if r.acc_delta() is not None and not r.reference]
    failed = [r.acc_delta() < -cfg.fail_drop for r in done]
    out: dict = {"runs_with_eval": len(done), "failed": int(sum(failed))}
    for t in cfg.predict_at:
        score = [1.0 - float(r.metrics["inside_frac"][r.steps <= t].mean()) for r in done]
        escape = [float(r.metrics["escape"][r.steps <= t].max()) for r in done]
        out[f"auroc_outside@{t}"] = round(auroc(score, failed), 4)
        out[f"auroc_escape@{t}"] = round(auroc(escape, failed), 4)
        out[f"auroc_dtw@{t}"] = round(auroc(_partial_dtw_scores(done, failed, t), failed), 4)
    leads = []
    for r, f in zip(done, failed, strict=True):
        if not f:
            continue
        alarm = r.steps[r.metrics["inside_frac"] < cfg.enveloped_frac]
        acc0 = r.evals[0][ACC]
        drop = [e["step"] for e in r.evals[1:] if e[ACC] < acc0 - cfg.fail_drop]
        if len(alarm) and drop:
            leads.append(int(drop[0] - alarm[0]))
    out["lead_steps"] = leads
    out["lead_median"] = float(np.median(leads)) if leads else None
    return out


def _partial_dtw_scores(runs: list[RunLens], failed: list[bool], t: int) -> list[float]:
    """Leave-one-out: mean open-end DTW to the succeeded runs minus mean to the failed ones (higher = failing)."""
    scores = []
    for i, r in enumerate(runs):
        part = r.z[r.steps <= t, 0]
        d = {True: [], False: []}
        for j, o in enumerate(runs):
            if j != i:
                d[failed[j]].append(open_end_dtw(part, o.z[:, 0]))
        scores.append(float(np.mean(d[False]) - np.mean(d[True])) if d[True] and d[False] else 0.0)
    return scores


def _group_colors(runs: list[RunLens], cmap) -> dict:
    groups = list(dict.fromkeys(r.group for r in runs))
    return {g: cmap(i % 10) for i, g in enumerate(groups)}


def plot(runs: list[RunLens], cfg: LensConfig, out: Path, prefix: str = "lens") -> list[Path]:
    """Three figures: 3-D trajectories with envelopes, DTW dendrogram, envelope-metric curves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{prefix}_phase.png", out / f"{prefix}_dtw.png", out / f"{prefix}_metrics.png"]
    colors = _group_colors(runs, plt.get_cmap("tab10"))
    for draw, path in zip((_plot_phase, _plot_dtw, _plot_metrics), paths, strict=True):
        fig = draw(plt, runs, cfg, colors)
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
    return paths


def _plot_phase(plt, runs: list[RunLens], cfg: LensConfig, colors: dict):
    fig = plt.figure(figsize=(6.5, 5))
    ax = fig.add_subplot(projection="3d")
    if cfg.reference:
        ref = np.concatenate([load_run(d, cfg.w0, cfg.smooth)[1] for d in cfg.reference])
        ax.scatter(*ref.T, s=3, color="0.7", label="reference")
    seen: set[str] = set()
    for r in runs:
        g = r.group
        ax.plot(*r.z.T, color=colors[g], lw=0.8, label=None if g in seen else g)
        seen.add(g)
        ax.scatter(*r.z[-1], color=colors[g], s=15, marker="o" if r.inside_late() >= cfg.enveloped_frac else "x")
        if not cfg.reference:  # the run's own envelope: its first w0 points
            ax.scatter(*r.z[: cfg.w0].T, color=colors[g], s=4, alpha=0.4)
    ax.set_xlabel("entropy (z)")
    ax.set_ylabel("log length (z)")
    ax.set_zlabel("reward (z)")
    ax.set_title("o = enveloped at the end, x = not", fontsize=8)
    ax.legend(fontsize=6, loc="upper left")
    return fig


def _plot_dtw(plt, runs: list[RunLens], cfg: LensConfig, colors: dict):
    from scipy.cluster.hierarchy import dendrogram

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    if len(runs) >= 2:
        _, link = cluster_curves([r.entropy for r in runs], k=cfg.clusters)
        dendrogram(link, labels=[r.name for r in runs], ax=ax, leaf_rotation=90, leaf_font_size=7)
    ax.set_ylabel("DTW distance (z-normalised entropy)")
    return fig


def _plot_metrics(plt, runs: list[RunLens], cfg: LensConfig, colors: dict):
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for key, ax in zip(("inside_frac", "hull_volume", "escape"), axes, strict=True):
        seen = set()
        for r in runs:
            g = r.group
            ax.plot(r.steps, r.metrics[key], color=colors[g], lw=0.8, label=None if g in seen else g)
            seen.add(g)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=6)
    return fig


def report_rows(runs: list[RunLens], cfg: LensConfig) -> list[dict]:
    return [{"run": r.name, "reference": r.reference, "enveloped": r.inside_late() >= cfg.enveloped_frac,
             "inside_frac_late": round(r.inside_late(), 4), "escape_max": round(float(r.metrics["escape"].max()), 4),
             "hull_volume_end": round(float(r.metrics["hull_volume"][-1]), 4), "cluster": r.cluster,
             "acc_delta": None if r.acc_delta() is None else round(r.acc_delta(), 4)} for r in runs]


def write_jsonl(runs: list[RunLens], out: Path) -> None:
    """out/lens.jsonl: per run and step, the lens/* metrics (documented in docs/metrics.md, lm section)."""
    with open(out / "lens.jsonl", "w") as f:
        for r in runs:
            for t, step in enumerate(r.steps):
                f.write(json.dumps({"run": r.name, "step": int(step),
                                    **{f"lens/{k}": float(v[t]) for k, v in r.metrics.items()},
                                    **{f"lens/z_{a}": float(r.z[t, i]) for i, a in
                                       enumerate(("entropy", "log_len", "reward"))}}) + "\n")


# Outcome definitions, fixed before the grid ran (docs/results/intrinsic.md): a run *succeeded* when its final
# held-out sampled accuracy is at least SUCCESS_GAIN above step 0 (beyond the +-0.02 band the learning-rate recipe
# allows the random-reward control); it *collapsed* when it lost at least half of its step-0 accuracy, or its
# held-out completions are degenerate (mean length <= COLLAPSE_LEN tokens, or >= half of them truncated).
SUCCESS_GAIN = 0.02
COLLAPSE_LEN = 3.0


def run_outcome(path: str | Path) -> dict:
    """Step-0 and final held-out numbers of a finished run (eval.jsonl, metrics.jsonl) and its outcome labels.

    trunc_final is the truncated fraction of the training rollouts over the last 5 steps (evaluation does not
    log truncation)."""
    p = Path(path)
    evals = [e for e in read_jsonl(p / "eval.jsonl") if ACC in e]
    rows = read_jsonl(p / "metrics.jsonl")
    if len(evals) < 2 or not rows:
        raise ValueError(f"{p}: need eval.jsonl with >= 2 evaluations and metrics.jsonl, got {len(evals)} "
                         f"evaluations and {len(rows)} steps")
    first, last = evals[0], evals[-1]
    trunc = float(np.mean([r["rollout/truncated_frac"] for r in rows[-5:] if "rollout/truncated_frac" in r]))
    acc0, acc1, len1 = first[ACC], last[ACC], last["eval/heldout/len_mean"]
    return {"steps": int(last["step"]), "acc_step0": round(acc0, 4), "acc_final": round(acc1, 4),
            "greedy_final": round(last["eval/heldout/greedy_acc"], 4),
            "len_step0": round(first["eval/heldout/len_mean"], 3), "len_final": round(len1, 3),
            "trunc_final": round(trunc, 4),
            "collapsed": bool(acc1 < 0.5 * acc0 or len1 <= COLLAPSE_LEN or trunc >= 0.5),
            "success": bool(acc1 - acc0 >= SUCCESS_GAIN)}


def envelope_curve(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps (T,), raw points (T, 3) on ENVELOPE_AXES) of a run, as logged: what `envelope_test` needs of it, small
    enough to keep after the run directory is gone."""
    rows = [r for r in read_jsonl(Path(path) / "metrics.jsonl") if all(k in r for k in ENVELOPE_AXES)]
    if len(rows) < 2:
        raise ValueError(f"{path}: need >= 2 logged steps with {ENVELOPE_AXES}, got {len(rows)}")
    return np.array([r["step"] for r in rows]), np.array([[r[k] for k in ENVELOPE_AXES] for r in rows], dtype=float)


def _envelope_points(curve: tuple[np.ndarray, np.ndarray], smooth: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps (T,), smoothed points (T, 3), length log-transformed) of one `envelope_curve`."""
    steps, x = curve[0], np.array(curve[1], dtype=float)
    x[:, 1] = np.log(np.maximum(x[:, 1], 1e-8))
    return np.asarray(steps), trailing_mean(x, smooth)


def envelope_test(run_dirs: list[str | Path], at: tuple[int, ...] = (10, 20, 30), *, smooth: int = 5,
                  window: int = 10, frac: float = 0.5, n_boot: int = 2000, success: list[bool] | None = None,
                  curves: list[tuple[np.ndarray, np.ndarray]] | None = None) -> tuple[np.ndarray, dict]:
    """The testable envelope over finished runs: (flags (R, len(at)) of "enveloped at step t" (NaN: no envelope),
    summary with, per t, the AUROC of the flag for success and its bootstrap 95 % interval).

    `success` defaults to `run_outcome(...)["success"]`; everything else is fixed: axes, pooled step-0 scale,
    leave-one-out hull of the successful runs. `curves` (each run's `envelope_curve`, e.g. kept from runs whose
    directories are gone; then `success` is required) replaces reading `run_dirs`."""
    if curves is None:
        curves = [envelope_curve(d) for d in run_dirs]
    elif success is None:
        raise ValueError("envelope_test(curves=...) needs success=[...]: there are no run directories to read it from")
    check(len(curves) >= 3, "run_dirs", len(curves), "at least 3 finished runs for a leave-one-out envelope")
    loaded = [_envelope_points(c, smooth) for c in curves]
    mean, sd = pooled_scale(np.stack([x[0] for _, x in loaded]))
    trajs = [(x - mean) / sd for _, x in loaded]
    if success is None:
        success = [run_outcome(d)["success"] for d in run_dirs]
    y = np.asarray(success, bool)
    flags = enveloped_loo(trajs, [st for st, _ in loaded], y, at, window=window, frac=frac)
    summary: dict = {"runs": len(curves), "succeeded": int(y.sum()), "axes": list(ENVELOPE_AXES),
                     "scale_mean": [round(float(v), 4) for v in mean], "scale_sd": [round(float(v), 4) for v in sd]}
    for k, t in enumerate(at):
        a, lo, hi, n = bootstrap_auroc(flags[:, k], y, n_boot=n_boot)
        summary[f"auroc_enveloped@{t}"] = [round(a, 4), round(lo, 4), round(hi, 4)]
        summary[f"scored@{t}"] = n
        summary[f"enveloped@{t}"] = int(np.nansum(flags[:, k]))
    return flags, summary


def run_lens(cfg: LensConfig) -> int:
    """`tether lm lens`: analyse, draw, print the classification (and the early-warning summary)."""
    if cfg.loo:
        return _run_loo(cfg)
    runs = analyse(cfg)
    out = Path(cfg.out)
    paths = plot(runs, cfg, out)
    write_jsonl(runs, out)
    rows, summary = report_rows(runs, cfg), early_warning(runs, cfg)
    summary = {"summary": True, "enveloped": [r["run"] for r in rows if r["enveloped"]], **summary,
               "figures": [str(p) for p in paths]}
    if cfg.json:
        for row in rows:
            print(json.dumps(row))
        print(json.dumps(summary))
    else:
        print(f"{'run':<28} {'env':>4} {'inside':>7} {'escape':>7} {'clu':>4} {'dacc':>7}")
        for row in rows:
            d = "" if row["acc_delta"] is None else f"{row['acc_delta']:+.3f}"
            print(f"{row['run']:<28} {'yes' if row['enveloped'] else 'no':>4} {row['inside_frac_late']:>7.2f} "
                  f"{row['escape_max']:>7.2f} {row['cluster']:>4d} {d:>7}")
        print("enveloped: " + (", ".join(summary["enveloped"]) or "none"))
        print(" ".join(f"{k}={v}" for k, v in summary.items() if k not in ("summary", "enveloped")))
    return 0


def _run_loo(cfg: LensConfig) -> int:
    check(len(cfg.run_dirs) >= 3, "run_dirs", cfg.run_dirs, "at least 3 finished run directories with --loo")
    names = run_labels([Path(d) for d in cfg.run_dirs])
    flags, summary = envelope_test(list(cfg.run_dirs), cfg.predict_at, smooth=cfg.smooth, window=cfg.window,
                                   frac=cfg.enveloped_frac)
    rows = []
    for d, f in zip(cfg.run_dirs, flags, strict=True):
        o = run_outcome(d)
        rows.append({"run": names[Path(d)][1], **{f"enveloped_step{t}": None if v != v else bool(v)
                                                  for t, v in zip(cfg.predict_at, f, strict=True)},
                     "success": o["success"], "acc_delta": round(o["acc_final"] - o["acc_step0"], 4)})
    if cfg.json:
        for row in rows:
            print(json.dumps(row))
        print(json.dumps({"summary": True, **summary}))
    else:
        for row in rows:
            print(" ".join(f"{k}={v}" for k, v in row.items()))
        print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0
