"""`tether demo`: a short tour of every family that has landed, written to `runs/demo/report.md`.

Each family contributes `demo_section(out_dir) -> markdown` from its `cli` module (at most ~90 s on one
core). The foundation's own section solves a KL-budgeted bandit with the core dual and checks the result
against the closed form, exercising configs, run directories, metrics, checkpoints and plots on the way.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tether.core.checkpoint import load_checkpoint, save_checkpoint
from tether.core.config import ConfigError
from tether.core.duals import Dual
from tether.core.kl import kl_categorical
from tether.core.metrics import Metrics
from tether.core.plots import plot_curves
from tether.core.rundir import RunDir

__all__ = ["DemoConfig", "run_demo", "kl_budget_bandit", "BanditConfig"]

SECTIONS = ("core", "coherence", "lm", "flow")


@dataclass(frozen=True)
class DemoConfig:
    out: str = "runs/demo"
    """Directory for report.md, its figures and the demo's run directories: a new or empty directory, or one
    an earlier `tether demo` wrote (only the files that demo wrote are replaced; nothing else is deleted)."""
    sections: tuple[str, ...] = SECTIONS
    """Which sections to run, comma-separated (core, coherence, lm, flow)."""
    seed: int = 0
    """Seed of the foundation section."""

    def __post_init__(self) -> None:
        bad = [s for s in self.sections if s not in SECTIONS]
        if bad:
            raise ValueError(f"demo sections {bad} unknown; expected a subset of {list(SECTIONS)}")


@dataclass(frozen=True)
class BanditConfig:
    n_actions: int = 8
    """Arms of the bandit."""
    kl_budget: float = 0.1
    """Trust region eps: KL(pi || prior) <= eps."""
    steps: int = 600
    """Primal gradient steps (one dual step after each)."""
    lr: float = 0.5
    """Primal learning rate on the logits."""
    dual_lr: float = 2.0
    """Dual step size."""
    seed: int = 0
    """Seed of the rewards and the prior."""


def _closed_form_lambda(r: torch.Tensor, logp0: torch.Tensor, eps: float) -> float:
    """lam* with KL(pi_lam || p0) = eps for pi_lam ∝ p0 exp(r / lam), by bisection (KL decreases in lam)."""
    lo, hi = 1e-4, 1e4
    for _ in range(200):
        lam = (lo * hi) ** 0.5
        kl = kl_categorical(logp0 + r / lam, logp0)
        lo, hi = (lam, hi) if kl > eps else (lo, lam)
    return (lo * hi) ** 0.5


def kl_budget_bandit(cfg: BanditConfig, run: RunDir) -> dict[str, float]:
    """max_pi E_pi[r] s.t. KL(pi || p0) <= eps, by gradient ascent on the Lagrangian and a projected dual."""
    g = torch.Generator().manual_seed(cfg.seed)
    r = torch.randn(cfg.n_actions, generator=g, dtype=torch.float64)                 # (A,)
    logp0 = torch.log_softmax(torch.randn(cfg.n_actions, generator=g, dtype=torch.float64), 0)
    logits = logp0.clone().requires_grad_(True)
    opt = torch.optim.SGD([logits], lr=cfg.lr)
    dual = Dual(target=cfg.kl_budget, lr=cfg.dual_lr, init=1.0, low=1e-3, high=1e3, ema=0.1)
    state, metrics = dual.init_state(), Metrics()
    for step in range(1, cfg.steps + 1):
        pi = torch.softmax(logits, 0)
        kl = kl_categorical(logits, logp0)
        objective = (pi * r).sum() - state.value * kl                               # Lagrangian, maximised
        opt.zero_grad()
        (-objective).backward()
        opt.step()
        state = dual.update(state, kl.detach())
        metrics.log_dict({"reward/mean": (pi * r).sum(), "kl/policy_prior": kl, "dual/bandit/lambda": state.value,
                          "dual/bandit/violation": state.violation})
        if step % 10 == 0:
            run.log_metrics(step, metrics.flush())
    save_checkpoint(run.checkpoint_path(cfg.steps), {"logits": logits.detach(), "dual": state.state_dict()})
    restored = load_checkpoint(run.checkpoint_path(cfg.steps))
    assert torch.equal(restored["logits"], logits.detach())
    lam_star = _closed_form_lambda(r, logp0, cfg.kl_budget)
    return {"lambda": float(state.value), "lambda_star": lam_star, "kl": float(kl.detach()), "eps": cfg.kl_budget}


def _core_section(out: Path, seed: int) -> str:
    cfg = BanditConfig(seed=seed)
    run = RunDir.create(out / "core_bandit", cfg, seed=seed, overwrite=True)
    res = kl_budget_bandit(cfg, run)
    plot_curves([run.path], ["kl/policy_prior", "dual/bandit/lambda", "reward/mean"], out / "core_bandit.png")
    return (
        "## Foundation: a KL-budgeted bandit held by the core dual\n\n"
        f"Maximise E[r] subject to KL(pi || prior) <= {cfg.kl_budget} on {cfg.n_actions} arms, with gradient "
        "ascent on the Lagrangian and the projected dual update of `tether.core.duals` (EMA 0.1). "
        f"Final KL {res['kl']:.4f} (budget {res['eps']}), lambda {res['lambda']:.4f} vs the closed-form "
        f"lambda* {res['lambda_star']:.4f} (pi* ∝ prior·exp(r/lambda*)).\n\n![bandit](core_bandit.png)\n")


def _family_section(family: str, out: Path) -> str:
    return importlib.import_module(f"tether.{family}.cli").demo_section(out)


MARKER = ".tether-demo.json"


def _files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != MARKER}


def claim_output_dir(out: Path) -> None:
    """Make `out` ready for a demo without deleting anything the demo did not write.

    A new or empty directory is used as it is. A directory that holds the marker of an earlier demo loses the
    files that demo wrote (listed in the marker; for an interrupted demo, the files written after it started)
    and keeps every other file. Any other non-empty directory is refused before anything is written."""
    marker = out / MARKER
    if out.exists() and not out.is_dir():
        raise ConfigError(f"demo --out {str(out)!r} is a file; expected a directory")
    if out.exists() and any(out.iterdir()) and not marker.exists():
        raise ConfigError(f"demo --out {str(out)!r} holds files that tether demo did not write; expected a new or "
                          "empty directory, or one an earlier demo wrote")
    if marker.exists():
        prev = json.loads(marker.read_text())
        ours = set(prev["written"]) if prev.get("complete") else \
            {f for f in _files(out) if (out / f).stat().st_mtime >= prev["started"]}
        for f in sorted(ours):
            (out / f).unlink(missing_ok=True)
        for d in sorted({(out / f).parent for f in ours}, key=lambda p: len(p.parts), reverse=True):
            while d != out and d.is_dir() and not any(d.iterdir()):  # folders the demo made and left empty
                d.rmdir()
                d = d.parent
    out.mkdir(parents=True, exist_ok=True)
    before = _files(out)
    marker.write_text(json.dumps({"started": time.time(), "complete": False, "foreign": sorted(before)}))


def _release_output_dir(out: Path) -> None:
    marker = out / MARKER
    prev = json.loads(marker.read_text())
    written = sorted(_files(out) - set(prev["foreign"]))
    marker.write_text(json.dumps({**prev, "complete": True, "written": written}))


def run_demo(cfg: DemoConfig) -> int:
    torch.set_num_threads(1)  # 2 threads on a busy 2-core machine are slower, not faster
    out = Path(cfg.out)
    claim_output_dir(out)
    parts = ["# tether demo", ""]
    for section in cfg.sections:
        start = time.perf_counter()
        print(f"[demo] {section} ...", flush=True)
        text = _core_section(out, cfg.seed) if section == "core" else _family_section(section, out)
        took = time.perf_counter() - start
        parts += [text.rstrip(), "", f"_{section}: {took:.1f} s_", ""]
        print(f"[demo] {section} done in {took:.1f} s", flush=True)
    (out / "report.md").write_text("\n".join(parts))
    _release_output_dir(out)
    print(f"wrote {out / 'report.md'}")
    return 0
