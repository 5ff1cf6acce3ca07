"""Sequence-level reward functions for LM RL, behind one registry and one input type.

Every entry maps a `RewardInput` (what the trainer knows about a batch of completions) to rewards (B,).
Ground truth and format live here; intrinsic rewards (entropy, length, self-certainty, majority vote) register
into the same `REWARDS` registry from `tether.lm.intrinsic.rewards` (loaded by `tether.lm.builtins`) and read the
optional per-token statistics the trainer attaches when an entry lists them in its `needs` attribute (names from
`tether.lm.model.policy.LOGIT_STATS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from tether.core.config import check
from tether.core.registry import Registry
from tether.lm.grpo.advantages import group_zscore
from tether.lm.grpo.tasks import Problem


@dataclass(frozen=True)
class RewardOptions:
    renyi_alpha: float = 2.0
    """alpha of the cumulative Renyi reward `renyi` (alpha = 2: collision entropy -log CP)."""
    rent_last_k: int = 8
    """RENT reward `rent`: number of final completion tokens whose entropy is averaged."""

    def __post_init__(self) -> None:
        check(self.renyi_alpha > 0 and self.renyi_alpha != 1, "reward_opts.renyi_alpha", self.renyi_alpha,
              "a float > 0 and != 1 (alpha -> 1 is Shannon entropy: use the `ent` reward)")
        check(self.rent_last_k >= 1, "reward_opts.rent_last_k", self.rent_last_k, "an integer >= 1")


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
    options: RewardOptions = field(default_factory=RewardOptions)
    """Parameters of the parametrised rewards (Renyi alpha, RENT window)."""
    correct: list[bool] | None = None
    """The trainer's verifier's verdict per completion (None: the parsed `#<integer>` equals the answer)."""


REWARDS: Registry[Callable[[RewardInput], Tensor]] = Registry("reward")


def reward_parts(name: str) -> list[str]:
    """The registry entries of a reward name; "a+b" is a mixture (each term z-scored within its group)."""
    return [part for part in name.split("+") if part]


def reward_needs(name: str, options: RewardOptions | None = None) -> tuple[str, ...]:
    """Per-token statistics the reward (or mixture) `name` reads from `RewardInput.stats`.

    An entry's `needs` attribute is a tuple of statistic names, or a function of the `RewardOptions` when the
    statistic depends on them (the Renyi order alpha)."""
    out: list[str] = []
    for part in reward_parts(name):
        needs = getattr(REWARDS.get(part), "needs", ())
        out += needs(options or RewardOptions()) if callable(needs) else needs
    return tuple(dict.fromkeys(out))


def compute_rewards(name: str, batch: RewardInput, eps: float = 1e-6) -> Tensor:
    """Rewards (B,) of a single entry, or of a mixture: sum of the terms z-scored within each group, so an
    O(T) length term cannot drown an O(1) one (TRL's multi_objective_aggregation="normalize_then_sum")."""
    parts = reward_parts(name)
    if len(parts) == 1:
        return REWARDS.get(parts[0])(batch).float()
    return sum(group_zscore(REWARDS.get(part)(batch).float(), batch.group_ids, eps=eps) for part in parts)


@REWARDS.register("correct")
def correct(batch: RewardInput) -> Tensor:
    """1 if the parsed answer equals the ground truth, else 0 (unparsable completions score 0)."""
    if batch.correct is not None:
        return torch.tensor([float(v) for v in batch.correct])
    return torch.tensor([float(a is not None and a == p.answer)
                         for a, p in zip(batch.parsed, batch.problems, strict=True)])


@REWARDS.register("format")
def format_only(batch: RewardInput) -> Tensor:
    """1 if the completion parses as `...#<integer>`, else 0 (a label-free control)."""
    return torch.tensor([float(a is not None) for a in batch.parsed])
