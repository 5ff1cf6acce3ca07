"""A toy trainer that uses every piece of the core the way a real trainer does.

Noisy linear regression with Adam, a norm-constraint dual, per-purpose RNG streams, a non-finite guard,
metrics flushed per step, checkpoints every `save_every` steps and exact resume. Tests use it to check
that a killed-and-resumed run reproduces the uninterrupted run's metrics bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from tether.core.checkpoint import load_latest, rng_state, save_checkpoint, set_rng_state
from tether.core.duals import Dual, DualState
from tether.core.metrics import Metrics
from tether.core.rundir import RunDir
from tether.core.seeding import generator, seed_everything
from tether.core.stability import NonFiniteGuard, clip_grad_norm
from tether.core.timing import Timer


@dataclass(frozen=True)
class ToyConfig:
    steps: int = 20
    """Optimizer steps."""
    batch: int = 16
    """Samples per step."""
    dim: int = 4
    """Feature dimension."""
    lr: float = 0.05
    """Adam learning rate."""
    norm_budget: float = 1.0
    """Constraint ||w||^2 <= budget, held by a Lagrange multiplier."""
    save_every: int = 5
    """Checkpoint period in steps."""
    seed: int = 0
    """Seed of every RNG stream."""


class ToyTrainer:
    def __init__(self, cfg: ToyConfig, run: RunDir) -> None:
        self.cfg, self.run = cfg, run
        seed_everything(cfg.seed)
        self.gen = {"data": generator(cfg.seed, "data")}
        self.w_true = torch.randn(cfg.dim, generator=generator(cfg.seed, "task")) * 2
        self.w = torch.zeros(cfg.dim, requires_grad=True)
        self.opt = torch.optim.Adam([self.w], lr=cfg.lr)
        self.dual = Dual(target=cfg.norm_budget, lr=0.5, init=0.0, low=0.0, high=10.0)
        self.dual_state: DualState = self.dual.init_state()
        self.guard, self.metrics, self.timer = NonFiniteGuard(3), Metrics(), Timer()
        self.step_idx = 0

    def step(self) -> dict[str, float]:
        with self.timer("data"):
            x = torch.randn(self.cfg.batch, self.cfg.dim, generator=self.gen["data"])        # (B, D)
            y = x @ self.w_true + 0.1 * torch.randn(self.cfg.batch)                         # global RNG on purpose
        with self.timer("update"):
            norm2 = self.w.square().sum()
            loss = (x @ self.w - y).square().mean() + self.dual_state.value.float() * norm2
            self.opt.zero_grad()
            loss.backward()
            gnorm = clip_grad_norm([self.w], 10.0)
            if self.guard.ok(loss, gnorm, step=self.step_idx, last_checkpoint=self.run.latest_checkpoint()):
                self.opt.step()
        self.dual_state = self.dual.update(self.dual_state, norm2.detach())
        self.step_idx += 1
        self.metrics.log_dict({"loss/mse": loss, "grad/norm": gnorm, "dual/norm/lambda": self.dual_state.value,
                               "grad/skipped_steps": float(self.guard.skipped)})
        return self.metrics.flush()

    def state_dict(self) -> dict:
        return {"w": self.w.detach().clone(), "opt": self.opt.state_dict(), "dual": self.dual_state.state_dict(),
                "guard": self.guard.state_dict(), "step": self.step_idx, "rng": rng_state(self.gen)}

    def load_state_dict(self, s: dict) -> None:
        with torch.no_grad():
            self.w.copy_(s["w"])
        self.opt.load_state_dict(s["opt"])
        self.dual_state = DualState.from_state_dict(s["dual"])
        self.guard.load_state_dict(s["guard"])
        self.step_idx = s["step"]
        set_rng_state(s["rng"], self.gen)

    def save(self) -> Path:
        return save_checkpoint(self.run.checkpoint_path(self.step_idx), self.state_dict(), {"step": self.step_idx})

    def resume(self) -> None:
        found = load_latest(self.run.path / "checkpoints")  # a corrupted latest one falls back, with a warning
        if found is None:
            return
        self.load_state_dict(found[1])
        self.run.truncate_after(self.step_idx)

    def fit(self, stop_after: int | None = None) -> None:
        """Train to cfg.steps; `stop_after` simulates a kill after that many steps (for tests)."""
        while self.step_idx < self.cfg.steps:
            if stop_after is not None and self.step_idx >= stop_after:
                raise KeyboardInterrupt(f"simulated kill at step {self.step_idx}")
            self.run.log_metrics(self.step_idx + 1, {k: v for k, v in self.step().items() if not k.startswith("time/")})
            if self.step_idx % self.cfg.save_every == 0:
                self.save()
