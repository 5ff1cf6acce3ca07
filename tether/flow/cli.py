"""`tether flow ...` commands: OGBench data and training, the critic-error toy and its plots, and the flow
section of `tether demo`.

Only parses, runs and prints; the work lives in `ogbench_data.py`, `ogbench_train.py`, `toy.py`, `plots.py`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from tether.core.cli import Command
from tether.core.config import check
from tether.core.extras import require
from tether.flow.methods import METHOD_ALIASES, with_hparams
from tether.flow.ogbench.data import DataSpec, generate, validate_env
from tether.flow.ogbench.train import PRESETS, OGBenchConfig, run_train
from tether.flow.toy.plots import plot_samples, plot_sweep
from tether.flow.toy.toy import ToyConfig, run_toy_dict

REPORT_KEYS = ("method", "realised_kl", "lambda", "true_reward", "believed_q", "on_support")


def toy_summary(d: dict) -> dict:
    """The printed JSON object: the issue's keys first, then the settings (no samples / trace)."""
    return {k: d[k] for k in d if k not in ("samples", "trace")}


def run_toy(cfg: ToyConfig) -> int:
    out = toy_summary(run_toy_dict(cfg))
    if cfg.json:
        print(json.dumps(out))
    else:
        for k in REPORT_KEYS + ("realised_kl_tail_mean",):
            v = out[k]
            print(f"{k:<22} {v:.4f}" if isinstance(v, float) else f"{k:<22} {v}")
    return 0


@dataclass(frozen=True)
class ToyPlotConfig:
    """`tether flow toy-plot`: actions over the reward landscape per method, and KL/reward against beta or eps."""

    out: str = "runs/flow_toy"
    """Directory for the PNGs."""
    results: str = ""
    """JSONL of `tether flow toy --json` rows to draw the sweep from; empty = run the sweep below now."""
    critic_error: float = 2.0
    """Critic error c of the panels and of the sweep."""
    q_scale: float = 1.0
    """Q multiplier of the panels and of the sweep."""
    beta: float = 10.0
    """QAM beta of the sample panel."""
    kl_budget: float = 0.5
    """TRQAM eps of the sample panel."""
    alpha: float = 10.0
    """FQL alpha of the sample panel."""
    betas: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
    """QAM betas of the sweep (when no results file is given)."""
    budgets: tuple[float, ...] = (0.1, 0.5, 2.0)
    """TRQAM budgets of the sweep (when no results file is given)."""
    seeds: tuple[int, ...] = (0,)
    """Seeds of the sweep (when no results file is given)."""
    steps: int = 1000
    """Fine-tuning updates per run."""
    bc_steps: int = 2000
    """BC pretraining updates."""
    width: int = 64
    """Hidden width of the toy MLPs."""
    seed: int = 0
    """Seed of the sample panels."""
    log_dual: bool = False
    """Use the TRQAM log-space dual ablation (panels, sweep, and which result rows are drawn)."""

    def __post_init__(self) -> None:
        check(self.steps >= 1 and self.bc_steps >= 1, "steps", (self.steps, self.bc_steps), ">= 1")


def sample_panels(cfg: ToyPlotConfig, *, steps: int | None = None) -> list[tuple[str, dict]]:
    base = with_hparams(ToyConfig(), critic_error=cfg.critic_error, q_scale=cfg.q_scale, steps=steps or cfg.steps,
                        bc_steps=cfg.bc_steps, width=cfg.width, seed=cfg.seed, beta=cfg.beta, kl_budget=cfg.kl_budget,
                        alpha=cfg.alpha, log_dual=cfg.log_dual)
    runs = [("BC", replace(base, method="bc")), (f"FQL a={cfg.alpha:g}", replace(base, method="fql")),
            (f"QAM b={cfg.beta:g}", replace(base, method="qam")),
            (f"TRQAM eps={cfg.kl_budget:g}", replace(base, method="trqam"))]
    return [(name, run_toy_dict(c)) for name, c in runs]


def panel_title(name: str, d: dict) -> str:
    kl = "" if d["realised_kl"] is None else f" KL {d['realised_kl']:.2g}"
    return f"{name}\nr {d['true_reward']:.2f} supp {d['on_support']:.2f}{kl}"


def _drawn(row: dict, cfg: ToyPlotConfig) -> bool:
    """Rows of this plot's setting: same critic error and scale, analytic critic; TRQAM rows of the chosen dual."""
    same = row["critic_error"] == cfg.critic_error and row["q_scale"] == cfg.q_scale
    same = same and row.get("critic", "misspecified") == "misspecified"
    return same and (row["method"] != "trqam" or bool(row.get("log_dual")) == cfg.log_dual)


def run_toy_plot(cfg: ToyPlotConfig) -> int:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    panels = sample_panels(cfg)
    tag = f"c{cfg.critic_error:g}_q{cfg.q_scale:g}" + ("_logdual" if cfg.log_dual else "")
    png = plot_samples([(panel_title(n, d), d["samples"]) for n, d in panels], critic_error=cfg.critic_error,
                       q_scale=cfg.q_scale, out_png=out / f"trqam_toy_samples_{tag}.png")
    print(png)
    if cfg.results:
        rows = [json.loads(line) for line in Path(cfg.results).read_text().splitlines() if line.strip()]
    else:
        base = with_hparams(ToyConfig(), critic_error=cfg.critic_error, q_scale=cfg.q_scale, steps=cfg.steps,
                            bc_steps=cfg.bc_steps, width=cfg.width, log_dual=cfg.log_dual)
        rows = [toy_summary(run_toy_dict(with_hparams(base, method="qam", beta=b, seed=s)))
                for b in cfg.betas for s in cfg.seeds]
        rows += [toy_summary(run_toy_dict(with_hparams(base, method="trqam", kl_budget=e, seed=s)))
                 for e in cfg.budgets for s in cfg.seeds]
    rows = [r for r in rows if _drawn(r, cfg)]
    print(plot_sweep(rows, out / f"trqam_toy_sweep_{tag}.png",
                     title=f"critic error c={cfg.critic_error:g}, Q x {cfg.q_scale:g}"))
    return 0


@dataclass(frozen=True)
class DataConfig:
    """`tether flow data`: generate an OGBench manipulation 'play' dataset locally with the shipped oracles."""

    env: str = "scene-play"
    """Dataset name '<domain>-play' (cube-*, scene, puzzle-*); navigation needs internet-only experts."""
    episodes: int = 1000
    """Training episodes of 1001 steps (OGBench: 1000); the val file gets episodes // 10 more."""
    out: str = "data/ogbench"
    """Output directory: '<env>-v0.npz', '<env>-v0-val.npz' and manifest.json (checksums, spec, versions)."""
    workers: int = 1
    """Parallel generator processes (one core each)."""
    seed: int = 0
    """Master seed (shard i uses a seed derived from it, so the bytes do not depend on --workers)."""
    episodes_per_shard: int = 10
    """Episodes per shard: the unit of parallel work and of resume after an interruption."""

    def __post_init__(self) -> None:
        validate_env(self.env)
        require("ogbench", "mujoco", "gymnasium", purpose="tether flow data (OGBench's oracles and MuJoCo)")
        check(self.episodes >= 1, "episodes", self.episodes, ">= 1")
        check(self.workers >= 1, "workers", self.workers, ">= 1")
        check(self.episodes_per_shard >= 1, "episodes_per_shard", self.episodes_per_shard, ">= 1")


def run_data(cfg: DataConfig) -> int:
    start = time.perf_counter()
    manifest = generate(DataSpec(cfg.env, cfg.episodes, cfg.seed, cfg.episodes_per_shard), cfg.out, workers=cfg.workers)
    files = ", ".join(f"{k} ({v['transitions']} transitions)" for k, v in manifest["files"].items())
    print(f"{cfg.out}: {files}; {time.perf_counter() - start:.0f} s")
    return 0


COMMANDS = [
    Command("data", DataConfig, run_data, "generate an OGBench manipulation dataset locally (resumable, parallel)"),
    Command("train", OGBenchConfig, run_train, "BC pretraining, offline and online RL on an OGBench task "
            "(bc/fql/qam/trqam)", presets=PRESETS, aliases=METHOD_ALIASES),
    Command("toy", ToyConfig, run_toy, "critic-error toy: fine-tune a BC flow with bc/fql/qam/trqam, "
            "print KL and reward", aliases=METHOD_ALIASES),
    Command("toy-plot", ToyPlotConfig, run_toy_plot, "toy figures: actions over the reward landscape; "
            "KL/reward vs beta or eps"),
]


def demo_section(out_dir: Path) -> str:
    """Q x 10 on the toy (c = 2): QAM at beta = 3 collapses off-support, TRQAM at eps = 0.5 holds its KL."""
    start = time.perf_counter()
    cfg = ToyPlotConfig(out=str(out_dir), critic_error=2.0, q_scale=10.0, beta=3.0, kl_budget=0.5, alpha=10.0,
                        steps=400, bc_steps=2000, width=64, seed=0)
    panels = sample_panels(cfg)
    png = plot_samples([(panel_title(n, d), d["samples"]) for n, d in panels], critic_error=2.0, q_scale=10.0,
                       out_png=Path(out_dir) / "trqam_demo_q10.png")
    lines = ["| method | realised KL | lambda_eff | true E[r] | believed E[Q] | on-support |",
             "|---|---|---|---|---|---|"]
    for name, d in panels:
        kl = "-" if d["realised_kl"] is None else f"{d['realised_kl']:.2f}"
        lam = "-" if d["lambda"] is None else f"{d['lambda']:.2f}"
        lines.append(f"| {name} | {kl} | {lam} | {d['true_reward']:.3f} | {d['believed_q']:.2f} "
                     f"| {d['on_support']:.2f} |")
    return (
        "## Flow: trust-region Q adjoint matching on the critic-error toy (arXiv:2605.27079)\n\n"
        "One state, 2-D actions, behaviour on a ring of 6 modes, critic wrong off-support (c = 2) and "
        "multiplied by 10. QAM keeps its temperature (beta = 3), so its effective beta jumps 10x and the "
        "policy leaves the data; TRQAM's dual raises lambda to hold the path KL at eps = 0.5. "
        "Fixed seed, 64-wide nets, 2000 BC + 400 fine-tuning steps; full results in docs/results/trqam.md.\n\n"
        + "\n".join(lines) + f"\n\n![{png.stem}]({png.name})\n\n_toy run, {time.perf_counter() - start:.1f} s_\n"
    )
