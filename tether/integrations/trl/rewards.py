"""tether's rewards (`tether.lm.grpo.rewards.REWARDS`, intrinsic ones included) as TRL reward functions.

trl 1.16 calls a reward function as `f(prompts=..., completions=..., completion_ids=..., **kwargs)`, kwargs holding
every extra dataset column (repeated per generation) plus `trainer_state`, `log_extra` and `log_metric`, and expects
one float per completion. `TetherReward(name)` wraps a registry entry or a '+' mixture:

  text-only   lp, correct, format, majority, semantic, random: run in any `GRPOTrainer`
  logit       ent, avg_ent, renyi, cp, self_certainty, rent, em_seq, rlsc: read per-token statistics that
              `TetherGRPOTrainer` computes from its theta_old forward (see trl_trainer.py); a plain
              `GRPOTrainer` has none and the call raises

Ground truth for `correct` (and the Spearman diagnostic) comes from the dataset column `answer_column`; answers are
read from the completions by `parse` (default the `#<integer>` parser; a task's `Task.parse` for other tasks).
Group-level entries (majority, semantic, and every '+' mixture, z-scored per group) group rows as TRL orders them:
G consecutive completions per prompt, which holds on one process (TRL's sampler may spread a prompt's G copies over
processes, each scoring only its local slice).
Besides the rewards it logs `reward/unparsable_frac` and `diag/reward_acc_spearman` through TRL's `log_metric`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tether.lm.grpo.detectors import spearman
from tether.lm.grpo.rewards import (
    REWARDS,
    RewardInput,
    RewardOptions,
    compute_rewards,
    reward_needs,
    reward_parts,
)
from tether.lm.grpo.tasks import Problem, parse_answer

__all__ = ["TetherReward"]

_GROUP_LEVEL = ("majority", "semantic")


class TetherReward:
    """A tether reward (or '+' mixture) with TRL's reward-function signature; `needs` lists its per-token statistics."""

    def __init__(self, name: str, *, options: RewardOptions | None = None, num_generations: int | None = None,
                 answer_column: str = "answer", parse: Callable[[str], Any] = parse_answer) -> None:
        parts = reward_parts(name)
        for part in parts:
            REWARDS.get(part)  # unknown names raise with the list of valid ones
        self.name = self.__name__ = name  # TRL logs rewards/<__name__>/mean
        self.options = options or RewardOptions()
        self.needs = reward_needs(name, self.options)
        self.grouped = len(parts) > 1 or any(p in _GROUP_LEVEL for p in parts)
        self.num_generations = num_generations
        self.answer_column = answer_column
        self.parse = parse   # a task's `Task.parse`, e.g. make_task("word_problems", 1).parse for free text
        self.trainer = None

    def bind(self, trainer) -> None:
        """Called by `TetherGRPOTrainer`: the source of statistics and of the group size."""
        self.trainer, self.num_generations = trainer, trainer.num_generations

    def __call__(self, prompts: list, completions: list, completion_ids: list[list[int]], **kwargs) -> list[float]:
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]   # conversational: last turn
        parsed = [self.parse(t) for t in texts]
        answers = kwargs.get(self.answer_column)
        if answers is None and "correct" in reward_parts(self.name):
            columns = sorted(k for k in kwargs if k not in ("trainer_state", "log_extra", "log_metric"))
            raise ValueError(f"reward {self.name!r} needs the ground truth in dataset column {self.answer_column!r}; "
                             f"columns given: {columns}")
        tokens, mask = _pad_right(completion_ids)
        problems = [Problem(str(p), None if answers is None else int(a), ())
                    for p, a in zip(prompts, answers or [None] * len(prompts), strict=True)]
        batch = RewardInput(problems, texts, parsed, self._group_ids(len(texts)), tokens, mask,
                            self._stats(len(texts), tokens.shape[1]), self.options)
        rewards = compute_rewards(self.name, batch)
        if "log_metric" in kwargs:
            self._log(kwargs["log_metric"], rewards, parsed, answers)
        return rewards.tolist()

    def _group_ids(self, n: int) -> Tensor:
        if self.trainer is not None and self.trainer.tether_batch is not None:
            return self.trainer.tether_batch.group_ids
        if self.num_generations is None:
            if self.grouped:
                raise ValueError(f"reward {self.name!r} compares completions within a group: pass num_generations= "
                                 "(TRL's) or use TetherGRPOTrainer")
            return torch.arange(n)
        return torch.arange(n) // self.num_generations

    def _stats(self, n: int, width: int) -> dict[str, Tensor]:
        if not self.needs:
            return {}
        batch = None if self.trainer is None else self.trainer.tether_batch
        if batch is None:
            raise RuntimeError(f"reward {self.name!r} needs per-token statistics {self.needs} of the policy forward: "
                               "use tether.integrations.trl.TetherGRPOTrainer (a plain GRPOTrainer has none)")
        if batch.mask.shape[0] != n:
            raise RuntimeError(f"reward {self.name!r}: {n} completions but the trainer's statistics cover "
                               f"{batch.mask.shape[0]} rows")
        return {k: batch.stats[k][:, :width] for k in self.needs}  # TRL may pad wider (pad_to_multiple_of)

    @staticmethod
    def _log(log_metric, rewards: Tensor, parsed: list, answers: list | None) -> None:
        log_metric("reward/unparsable_frac", sum(p is None for p in parsed) / len(parsed))
        if answers is not None:
            correct = np.array([float(p is not None and p == int(a)) for p, a in zip(parsed, answers, strict=True)])
            rho = spearman(rewards.numpy(), correct)
            if rho == rho:  # NaN when rewards or correctness are constant: nothing to log
                log_metric("diag/reward_acc_spearman", rho)


def _pad_right(rows: list[list[int]]) -> tuple[Tensor, Tensor]:
    """(ids (B, T) long, mask (B, T) bool) of right-padded completion ids; T >= 1."""
    width = max(1, max(len(r) for r in rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = True
    return ids, mask
