"""Sequence-level reward functions for LM RL, behind one registry and one input type.

Every entry maps a `RewardInput` (what the trainer knows about a batch of completions) to rewards (B,).
Ground truth lives here; intrinsic rewards (entropy, length, self-certainty, majority vote) register into
the same `REWARDS` registry and read the optional per-token statistics the trainer attaches when an entry
lists them in its `needs` attribute (names from `tether.lm.policy.LOGIT_STATS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from tether.core.registry import Registry
from tether.lm.tasks import Problem


@dataclass
class RewardInput:
    problems: list[Problem]
    """The problem of each completion (B,), repeated G times per prompt."""
    completions: list[str]
    """Decoded completion text (up to EOS)."""
    parsed: list[int | None]
    """Parsed final answers (None = unparsable)."""
    group_ids: Tensor
    """(B,) long prompt index of each completion."""
    tokens: Tensor
    """(B, T) long completion ids."""
    mask: Tensor
    """(B, T) bool valid completion tokens (EOS included)."""
    stats: dict[str, Tensor] = field(default_factory=dict)
    """Per-token statistics (B, T) from the policy at the sampling temperature, e.g. "entropy", "logp"."""


REWARDS: Registry[Callable[[RewardInput], Tensor]] = Registry("reward")


def reward_needs(name: str) -> tuple[str, ...]:
    """Per-token statistics the reward `name` reads from `RewardInput.stats`."""
    return tuple(getattr(REWARDS.get(name), "needs", ()))


@REWARDS.register("correct")
def correct(batch: RewardInput) -> Tensor:
    """1 if the parsed answer equals the ground truth, else 0 (unparsable completions score 0)."""
    return torch.tensor([float(a is not None and a == p.answer) for a, p in zip(batch.parsed, batch.problems, strict=True)])


@REWARDS.register("format")
def format_only(batch: RewardInput) -> Tensor:
    """1 if the completion parses as `...#<integer>`, else 0 (a label-free control)."""
    return torch.tensor([float(a is not None) for a in batch.parsed])
