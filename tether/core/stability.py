"""Small composable guards against non-finite losses and gradients.

The trainer calls them explicitly in its step, not through hooks: clip the gradient norm, then ask the guard
whether the step may be applied. A non-finite loss or gradient norm skips the step and is counted
(`grad/skipped_steps`); after `max_consecutive` skips in a row the run stops with an error that names
the step and the last good checkpoint, instead of silently training on garbage. A finite gradient can still
give non-finite weights (an infinite or huge learning rate): `check_params` after every optimizer step stops
the run at once, before any checkpoint of those weights is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import Tensor

from tether.core.config import NonFiniteError

__all__ = ["NonFiniteError", "NonFiniteGuard", "clip_grad_norm"]


def clip_grad_norm(params: Iterable[torch.nn.Parameter], max_norm: float | None) -> Tensor:
    """Global L2 grad norm before clipping (inf/nan propagate; nothing is clipped when max_norm is None)."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(())
    if max_norm is None:
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    return torch.nn.utils.clip_grad_norm_(params, max_norm, error_if_nonfinite=False)


class NonFiniteGuard:
    """Decide whether an optimizer step may be applied; count and limit consecutive skips."""

    def __init__(self, max_consecutive: int = 5, *, lr_flag: str = "--optim.lr") -> None:
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive={max_consecutive} must be >= 1")
        self.max_consecutive, self.lr_flag = max_consecutive, lr_flag
        self.skipped = 0
        self.consecutive = 0

    def ok(self, loss: Tensor, grad_norm: Tensor, *, step: int, last_checkpoint: Path | None = None) -> bool:
        """True if loss and grad norm are finite. Syncs once (the skip decision needs the value)."""
        finite = bool(torch.isfinite(loss).all() and torch.isfinite(grad_norm).all())
        if finite:
            self.consecutive = 0
            return True
        self.skipped += 1
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive:
            where = f"last good checkpoint: {last_checkpoint}" if last_checkpoint else "no checkpoint was saved yet"
            raise NonFiniteError(
                f"{self.consecutive} consecutive non-finite steps, the last at step {step} "
                f"(loss={float(loss)}, grad_norm={float(grad_norm)}); {where}. "
                f"Lower {self.lr_flag} or check the inputs, then resume with --run.resume.")
        return False

    def check_params(self, params: Iterable[Tensor], *, step: int,
                     last_checkpoint: Path | Callable[[], Path | None] | None = None) -> None:
        """Raise NonFiniteError if any parameter is NaN/inf (one sync per call: call it once per optimizer step).
        `last_checkpoint` may be a callable, looked up only for the error message."""
        params = list(params)
        if not params or bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            return
        if callable(last_checkpoint):
            last_checkpoint = last_checkpoint()
        where = f"the last checkpoint ({last_checkpoint}) is intact" if last_checkpoint else "no checkpoint was saved"
        raise NonFiniteError(f"the weights became non-finite at the optimizer step of step {step}: the learning "
                             f"rate is too large for this model; lower {self.lr_flag} ({where})")

    def state_dict(self) -> dict[str, int]:
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, d: dict[str, int]) -> None:
        self.skipped, self.consecutive = int(d["skipped"]), int(d["consecutive"])
