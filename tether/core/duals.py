"""Dual variables (Lagrange multipliers, trust-region parameters) as explicit state with a pure update.

optax-shaped: a frozen `Dual` holds the hyper-parameters and offers `init()` and `update(state, measured)`;
the state is a separate frozen `DualState` that the trainer owns, checkpoints and logs. A loss only ever
sees `state.value` as a number.

The update is projected (sub)gradient descent on the dual of a constraint `measured <= target`:

    m_t       = min(measured, clip_factor * target)          (optional measurement clip)
    s_t       = (1 - ema) * s_{t-1} + ema * m_t, s_0 = 0      (optional EMA; else s_t = m_t)
    lam_{t+1} = clip(lam_t + lr * (s_t - target) [/ target], low, high)

or, with `log_space=True`, the same step applied to log(lam) (multiplicative; keeps lam > 0).
Users: TRQAM (arXiv:2605.27079; EMA 0.1, clip at 2*eps, lr 0.01, bounds [0.01, 100]) and DCMDP
(arXiv:2606.08779; no EMA, no clip, lr 1.0, bounds [0, 1]; `normalized=True` is its optional step
divided by the tolerance c). The lam rises while the constraint is violated and falls otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Dual", "DualState"]


def _scalar(x: float | Tensor) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float64).detach().reshape(())


@dataclass(frozen=True)
class DualState:
    """Dual state: 0-d float64 tensors (cheap to checkpoint, no device syncs until logging)."""

    value: Tensor
    """Current multiplier lam."""
    smoothed: Tensor
    """The (clipped, EMA-smoothed) measurement used in the last step; 0 before the first step."""
    violation: Tensor
    """smoothed - target at the last step (> 0 means the constraint was violated)."""
    steps: Tensor
    """Number of updates so far."""

    def state_dict(self) -> dict[str, Tensor]:
        return {"value": self.value, "smoothed": self.smoothed, "violation": self.violation, "steps": self.steps}

    @classmethod
    def from_state_dict(cls, d: dict[str, Tensor]) -> DualState:
        return cls(**{k: _scalar(v) for k, v in d.items()})


@dataclass(frozen=True)
class Dual:
    """Hyper-parameters of a projected dual update for the constraint `measured <= target`."""

    target: float
    """Constraint budget (TRQAM's eps, DCMDP's tolerance c)."""
    lr: float
    """Dual step size eta."""
    init: float = 1.0
    """Initial multiplier lam_0."""
    low: float = 0.0
    """Lower projection bound."""
    high: float = math.inf
    """Upper projection bound."""
    ema: float | None = None
    """Weight of the new measurement in the EMA (TRQAM: 0.1); None = no smoothing."""
    clip_factor: float | None = None
    """Clip the measurement at clip_factor * target before smoothing (TRQAM: 2); None = no clip."""
    log_space: bool = False
    """Step on log(lam) instead of lam (multiplicative update; requires low > 0 or lam stays > 0)."""
    normalized: bool = False
    """Divide the violation by the target (scale-free step, DCMDP's optional variant)."""

    def __post_init__(self) -> None:
        if not (self.low <= self.init <= self.high):
            raise ValueError(f"dual init={self.init} must lie in [low, high] = [{self.low}, {self.high}]")
        if self.lr < 0:
            raise ValueError(f"dual lr={self.lr} must be >= 0")
        if self.ema is not None and not 0 < self.ema <= 1:
            raise ValueError(f"dual ema={self.ema} must be in (0, 1] or None")
        if self.clip_factor is not None and self.clip_factor <= 0:
            raise ValueError(f"dual clip_factor={self.clip_factor} must be > 0 or None")
        if self.log_space and self.init <= 0:
            raise ValueError(f"log-space dual needs init > 0, got {self.init}")
        if self.normalized and self.target <= 0:
            raise ValueError(f"normalized dual needs target > 0, got {self.target}")

    def init_state(self) -> DualState:
        zero = _scalar(0.0)
        return DualState(value=_scalar(self.init), smoothed=zero, violation=zero, steps=zero)

    def update(self, state: DualState, measured: float | Tensor) -> DualState:
        """One projected step. Pure: returns a new state."""
        m = _scalar(measured)
        if self.clip_factor is not None:
            m = m.clamp(max=self.clip_factor * self.target)
        smoothed = m if self.ema is None else (1 - self.ema) * state.smoothed + self.ema * m
        violation = smoothed - self.target
        step = self.lr * (violation / self.target if self.normalized else violation)
        if self.log_space:
            value = (state.value.log() + step).exp()
        else:
            value = state.value + step
        value = value.clamp(self.low, self.high)
        return DualState(value=value, smoothed=smoothed, violation=violation, steps=state.steps + 1)
