"""Prior check before label-free RL: does any intrinsic score already separate correct from wrong answers?

Measures arXiv:2603.16578's "foundational logical prior" with our own predictors (the paper gives none): draw
`samples` completions per held-out prompt from the base model at the sampling temperature, score every
completion with every intrinsic reward of `tether.lm.grpo.rewards.REWARDS` (the same code the trainer runs, on the
same per-token statistics from `Policy.token_stats`), and report

  pass@1 (mean sampled accuracy), maj@K, answer diversity (distinct parsed answers / K, mean over prompts),
  per reward: AUROC of the score for correctness, globally (all completions pooled) and within groups
  (all (correct, wrong) pairs of completions of the SAME prompt, ties count 1/2).

GRPO only compares completions of one prompt, so the within-group AUROC is the number that predicts whether a
reward can help; the global one is inflated by prompt difficulty (harder prompts are longer and less often
right). A reward whose within-group AUROC is ~0.5 gives GRPO pure noise to amplify; the command warns on
stderr when no intrinsic reward beats 0.5 by `margin`. The prediction "a reward helps iff its within-group
AUROC > 0.5" is our hypothesis, not a result of the paper.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.stats import rankdata

from tether.core.config import check
from tether.lm.grpo.evaluate import eval_problems
from tether.lm.grpo.inputs import as_tokenizer
from tether.lm.grpo.rewards import REWARDS, RewardInput, RewardOptions, compute_rewards, reward_needs
from tether.lm.grpo.tasks import SPLITS, TASKS, Task, make_task
from tether.lm.intrinsic.rewards import INTRINSIC
from tether.lm.model.build import ModelSpec, build_policy, model_tokenizer
from tether.lm.model.tokenizer import Tokenizer, pad_left
from tether.lm.rollout.engine import RolloutEngine

__all__ = ["PriorCheckConfig", "mann_whitney_u", "auroc", "auroc_within", "prior_check", "run_prior_check"]


@dataclass(frozen=True)
class PriorCheckConfig:
    model: str = "base:medium"
    """Model directory (a saved TinyLM / HF model), base:<name> for a shipped base, or a pretrained model
    (`smollm2`, a .gguf file), which brings its own tokenizer and chat template."""
    task: str = "running_sum"
    """Task of the held-out prompts (running_sum, addition, modular_chain, linear_equation, word_problems)."""
    difficulty: int = 2
    """Task difficulty knob."""
    samples: int = 8
    """K completions per prompt (the GRPO group size to mimic)."""
    n_prompts: int = 128
    """Held-out prompts."""
    split: str = "heldout"
    """Split of the prompts (train, heldout, ood)."""
    temperature: float = 1.0
    """Sampling temperature; the per-token statistics use the same temperature (as the trainer does)."""
    max_new_tokens: int = 40
    """Completion cap."""
    rewards: tuple[str, ...] = (*INTRINSIC, "format")
    """Rewards to score (registry names or '+' mixtures); default every label-free reward."""
    margin: float = 0.05
    """Warn when no reward's within-group AUROC exceeds 0.5 + margin."""
    reward_opts: RewardOptions = field(default_factory=RewardOptions)
    """Parameters of the parametrised rewards (Renyi alpha, RENT window)."""
    seed: int = 1234
    """Seed of the prompts and of the sampling noise."""
    json: bool = False
    """Print one JSON object per reward plus a summary object (else a table)."""

    def __post_init__(self) -> None:
        check(self.task.replace("-", "_") in TASKS, "task", self.task, f"one of {TASKS.names()}")
        check(self.samples >= 2, "samples", self.samples, "an integer >= 2 (within-group AUROC needs pairs)")
        check(self.n_prompts >= 1, "n_prompts", self.n_prompts, "an integer >= 1")
        check(self.split in SPLITS, "split", self.split, f"one of {SPLITS}")
        check(self.temperature > 0, "temperature", self.temperature, "a float > 0")
        check(all(p in REWARDS for r in self.rewards for p in r.split("+")), "rewards", self.rewards,
              f"names or '+' mixtures from {REWARDS.names()}")


def mann_whitney_u(pos: np.ndarray, neg: np.ndarray) -> float:
    """U = #{(p, n): p > n} + #{(p, n): p = n} / 2 over all pairs, from the ranks of the pooled scores (ties get
    their average rank): U = sum of the positives' ranks - n_pos (n_pos + 1) / 2, O(N log N) instead of the
    (n_pos, n_neg) pair matrix. Rank sums are half-integers, exact in float64, so U equals the pair count exactly.
    A NaN score makes U NaN (the pair count used to score every comparison with NaN as a loss)."""
    ranks = rankdata(np.concatenate([pos, neg]))                  # (n_pos + n_neg,), 1-based, ties averaged
    return float(ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """P(score of a random positive > score of a random negative), ties 1/2: U / (n_pos n_neg) (Mann-Whitney);
    NaN if one class is empty. Identical to the former pair-matrix count (no numerical change)."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return mann_whitney_u(pos, neg) / (len(pos) * len(neg))


def auroc_within(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> tuple[float, int]:
    """AUROC over (correct, wrong) pairs of the same group, pooled over groups; returns (auroc, n_pairs):
    sum_k U_k / sum_k n_pos,k n_neg,k.

    Groups with only correct or only wrong completions contribute no pair (GRPO gives them zero advantage
    under the ground-truth reward too)."""
    s, y, g = np.asarray(scores, float), np.asarray(labels, bool), np.asarray(groups)
    wins, pairs = 0.0, 0
    for k in np.unique(g):
        pos, neg = s[(g == k) & y], s[(g == k) & ~y]
        if len(pos) and len(neg):
            wins += mann_whitney_u(pos, neg)
            pairs += len(pos) * len(neg)
    return (float(wins / pairs) if pairs else float("nan")), int(pairs)


@torch.no_grad()
def sample_batch(policy, task: Task, tok: Tokenizer, cfg: PriorCheckConfig) -> RewardInput:
    """K samples per held-out prompt, with the per-token statistics every requested reward needs."""
    problems = [p for p in eval_problems(task, cfg.split, cfg.n_prompts, seed=cfg.seed) for _ in range(cfg.samples)]
    group_ids = torch.arange(cfg.n_prompts).repeat_interleave(cfg.samples)
    engine = RolloutEngine()
    engine.sync_from(policy)
    p_ids, p_mask = pad_left([tok.encode(p.prompt) for p in problems], tok.pad_id)
    out = engine.generate(p_ids, p_mask, max_new_tokens=cfg.max_new_tokens, eos_id=tok.eos_id, pad_id=tok.pad_id,
                          temperature=cfg.temperature, generator=torch.Generator().manual_seed(cfg.seed))
    completions = [tok.decode(row) for row in out.tokens.tolist()]
    needs = tuple(dict.fromkeys(n for r in cfg.rewards for n in reward_needs(r, cfg.reward_opts) if n != "logp"))
    ids, mask, start = torch.cat([p_ids, out.tokens], 1), torch.cat([p_mask, out.mask], 1), p_ids.shape[1]
    parts = [policy.token_stats(ids[r], mask[r], start=start, temperature=cfg.temperature, stats=needs)
             for r in torch.arange(len(problems)).split(64)]
    stats = {k: torch.cat([p[k] for p in parts]).float() for k in parts[0]}
    return RewardInput(problems, completions, [task.parse(c) for c in completions], group_ids, out.tokens,
                       out.mask, stats, cfg.reward_opts)


def summarise(batch: RewardInput, k: int) -> dict[str, float]:
    """pass@1, maj@K (ties: smallest answer, as the majority reward), diversity, parse failures, length."""
    correct = np.array([a is not None and a == p.answer for a, p in zip(batch.parsed, batch.problems, strict=True)])
    n = len(batch.parsed) // k
    maj, div = 0, 0.0
    for i in range(n):
        answers = [a for a in batch.parsed[i * k:(i + 1) * k] if a is not None]
        c = Counter(answers)
        maj += bool(c) and min(c, key=lambda a: (-c[a], a)) == batch.problems[i * k].answer
        div += len(c) / k
    return {"pass@1": float(correct.mean()), f"maj@{k}": maj / n, "diversity": div / n,
            "unparsable_frac": float(np.mean([a is None for a in batch.parsed])),
            "len_mean": float(batch.mask.sum(-1).float().mean())}


def prior_check(cfg: PriorCheckConfig) -> tuple[list[dict], dict]:
    """(one row per reward, summary). The random control is drawn from a fixed generator (seed)."""
    spec = ModelSpec(path=cfg.model)
    tok = as_tokenizer(model_tokenizer(spec))   # a pretrained model's own (chat) tokenizer, else the char one
    task = make_task(cfg.task, cfg.difficulty)
    policy = build_policy(spec, tok, seed=cfg.seed)
    policy.module.eval()
    batch = sample_batch(policy, task, tok, cfg)
    labels = np.array([a is not None and a == p.answer for a, p in zip(batch.parsed, batch.problems, strict=True)])
    groups = batch.group_ids.numpy()
    rows = []
    for name in cfg.rewards:
        torch.manual_seed(cfg.seed)  # the `random` control reads the global RNG
        score = compute_rewards(name, batch).numpy()
        within, pairs = auroc_within(score, labels, groups)
        rows.append({"reward": name, "auroc": round(auroc(score, labels), 4), "auroc_within": round(within, 4),
                     "pairs": pairs, "score_mean": round(float(score.mean()), 4)})
    summary = {"summary": True, "model": cfg.model, "task": cfg.task, "split": cfg.split, "prompts": cfg.n_prompts,
               "samples": cfg.samples, **{k: round(v, 4) for k, v in summarise(batch, cfg.samples).items()}}
    informative = [r["reward"] for r in rows if r["reward"] not in ("random", "format")
                   and r["auroc_within"] > 0.5 + cfg.margin]
    best = max((r for r in rows if r["auroc_within"] == r["auroc_within"]), key=lambda r: r["auroc_within"],
               default=None)
    summary.update({"informative": informative, "best": best["reward"] if best else None,
                    "best_auroc_within": best["auroc_within"] if best else float("nan")})
    return rows, summary


def run_prior_check(cfg: PriorCheckConfig) -> int:
    """`tether lm prior-check`: print the rows and the summary; warn when nothing separates."""
    from tether.core.seeding import one_thread
    one_thread()
    rows, summary = prior_check(cfg)
    if cfg.json:
        for r in rows:
            print(json.dumps(r))
        print(json.dumps(summary))
    else:
        print(f"{'reward':<16} {'AUROC':>7} {'within':>7} {'pairs':>6}")
        for r in rows:
            print(f"{r['reward']:<16} {r['auroc']:>7.3f} {r['auroc_within']:>7.3f} {r['pairs']:>6d}")
        print(" ".join(f"{k}={v}" for k, v in summary.items() if k != "summary"))
    if not summary["informative"]:
        print(f"warning: no intrinsic reward separates correct from incorrect answers within groups (within-group "
              f"AUROC <= {0.5 + cfg.margin:.2f} for all of "
              f"{[r for r in cfg.rewards if r not in ('random', 'format')]}); "
              "label-free RL from this model would amplify noise", file=sys.stderr)
    return 0
