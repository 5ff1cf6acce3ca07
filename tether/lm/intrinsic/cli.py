"""`tether lm prior-check` and `tether lm lens` (label-free RL, arXiv:2603.16578; issue 7) and their demo section.

The lead wires `INTRINSIC_COMMANDS` into `tether/lm/cli.py`'s `COMMANDS` and calls `intrinsic_demo_section`
from the LM demo. The work lives in `prior_check.py` and `lens_report.py`.
"""

from __future__ import annotations

import time
from pathlib import Path

from tether.core.cli import Command
from tether.lm.intrinsic.lens_report import LensConfig, analyse, plot, report_rows, run_lens
from tether.lm.intrinsic.prior_check import PriorCheckConfig, prior_check, run_prior_check

__all__ = ["INTRINSIC_COMMANDS", "intrinsic_demo_section"]

INTRINSIC_COMMANDS: list[Command] = [
    Command("prior-check", PriorCheckConfig, run_prior_check,
            "before label-free RL: pass@1, maj@K, diversity and each intrinsic reward's AUROC for correctness "
            "(global and within groups)"),
    Command("lens", LensConfig, run_lens,
            "manifold-envelope lens of GRPO runs: 3-D phase trajectories, envelope metrics, DTW clusters",
            positional="run_dirs"),
]

_DEMO_REWARDS = ("correct", "ent", "cp")


def _demo_runs(out_dir: Path, steps: int) -> list[Path]:
    """Three short GRPO runs of the medium base (GT, Ent, CP rewards), one seed each."""
    from tether.core.rundir import RunConfig, RunDir
    from tether.lm.grpo.config import AlgoSpec, EvalSpec, OptimSpec, RolloutSpec, TrainConfig
    from tether.lm.grpo.trainer import GRPOTrainer
    from tether.lm.model.build import ModelSpec

    dirs = []
    for reward in _DEMO_REWARDS:
        d = out_dir / f"intrinsic_{reward}"
        cfg = TrainConfig(preset="demo", steps=steps, samples_every=0, model=ModelSpec(path="base:medium"),
                          rollout=RolloutSpec(prompts_per_step=8, group_size=8, max_new_tokens=40),
                          algo=AlgoSpec(reward=reward, clip_high=0.28), optim=OptimSpec(lr=3e-5),
                          eval=EvalSpec(every=0, n_prompts=64, k=4, splits=("heldout",)), run=RunConfig(dir=str(d)))
        GRPOTrainer(cfg, RunDir.create(d, cfg, seed=0, overwrite=True)).fit()
        dirs.append(d)
    return dirs


def intrinsic_demo_section(out_dir: Path, steps: int = 30) -> str:
    """~60 s on one core: prior check of the medium base, then GT / Ent / CP GRPO runs seen through the lens."""
    from tether.lm.model.build import resolve_path

    out_dir = Path(out_dir)
    head = "## Label-free RL: prior check and envelope lens (tether lm prior-check / lens)\n\n"
    try:
        resolve_path("base:medium")
    except FileNotFoundError as e:
        return head + f"Skipped: {e}\n"
    t0 = time.perf_counter()
    rows, summary = prior_check(PriorCheckConfig(model="base:medium", n_prompts=32, samples=8))
    dirs = _demo_runs(out_dir, steps)
    cfg = LensConfig(run_dirs=tuple(str(d) for d in dirs), reference=(str(dirs[0]),), out=str(out_dir), w0=8, window=8)
    runs = analyse(cfg)
    figs = plot(runs, cfg, out_dir, prefix="intrinsic_lens")
    lens_rows = report_rows(runs, cfg)
    wall = time.perf_counter() - t0
    table = "| reward | AUROC (global) | AUROC (within group) |\n|---|---|---|\n" + "".join(
        f"| {r['reward']} | {r['auroc']:.2f} | {r['auroc_within']:.2f} |\n" for r in rows
        if r["reward"] in ("lp", "ent", "avg_ent", "cp", "self_certainty", "majority", "random"))
    runs_md = "| run | held-out sampled acc. change | enveloped | inside_frac (2nd half) |\n|---|---|---|---|\n"
    for r in lens_rows:
        runs_md += (f"| {r['run']} | {r['acc_delta']:+.2f} | {'yes' if r['enveloped'] else 'no'} "
                    f"| {r['inside_frac_late']:.2f} |\n")
    wall = time.perf_counter() - t0
    return (head +
            "Prior check of the shipped medium base (32 held-out prompts x 8 samples): "
            f"pass@1 {summary['pass@1']:.2f}, "
            f"maj@8 {summary['maj@8']:.2f}, answer diversity {summary['diversity']:.2f}. AUROC of each label-free "
            "score for correctness (within a group is what GRPO sees):\n\n" + table +
            f"\nThen {steps} GRPO steps (8 prompts x G=8, one seed) with the ground-truth, Ent (-sum of token "
            "entropies) and CP (+sum of collision probabilities) rewards, seen through the envelope lens "
            "(axes: entropy, log length, reward; envelope = the hull of the ground-truth run's trajectory, so that "
            f"run is inside by construction; {wall:.0f} s wall in total):\n\n"
            + runs_md + f"\n![phase trajectories]({figs[0].name})\n\n![envelope metrics]({figs[2].name})\n\n"
            "Full grid, 3 seeds and the answers to questions Q1-Q4: docs/results/intrinsic.md.\n")
