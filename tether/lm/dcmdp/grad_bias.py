"""`tether lm grad-bias`: is a train/inference mismatch benign? The gradient each correction follows, compared.

At one policy (a base or a run checkpoint) and one rollout engine, four independent GRPO batches are drawn: E1, E2
from the engine and F1, F2 from the exact fp32 engine (the trainer's own distribution). Gradients of the GRPO
surrogate at ratio 1 (the first minibatch of a step), flattened over every trainable parameter:

  g_est(E)   the update a correction makes on engine samples E: grad of -sum_t w_t keep_t (A + shift_t) log pi_train
             (+ DCMDP's differentiable penalty); `none` is the plain E_{y~pi_inf}[A grad log pi_train]
  g_on(F)    the trainer-precision on-policy gradient E_{y~pi_train}[A grad log pi_train]
  g_st(E)    the engine's straight-through gradient E_{y~pi_inf}[A grad log pi_inf]: the gradient of the engine's
             own log-probs (its quantised weights, its logit noise) applied to the fp32 weights

For each correction: cos(g_est, g_on) and cos(g_est, g_st), each averaged over the two independent pairings
(E1 with F2/E2, E2 with F1/E1: never the same samples on both sides), and the same-estimator noise ceiling
cos(g_est(E1), g_est(E2)). Two estimators of one mean gradient g with noise ceilings k1, k2 have expected cosine
about sqrt(k1 k2) (cos = |g|^2 / sqrt((|g|^2 + s1^2)(|g|^2 + s2^2)) and k_i = |g|^2 / (|g|^2 + s_i^2)), so
`ceiling_on` and `ceiling_st` are the cosines an unbiased estimator would reach at this batch size. A mismatch whose
uncorrected update sits near `ceiling_st` and far below `ceiling_on` trains the deployed model, not the fp32 one.
"""

from __future__ import annotations

import copy
import json
import math
import random
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from tether.core.config import check
from tether.core.masked import aggregate, aggregate_normalizer
from tether.core.seeding import one_thread
from tether.lm.dcmdp.mismatch import full_logits, load_policy, load_tokenizer
from tether.lm.grpo.advantages import ADVANTAGES
from tether.lm.grpo.config import TaskSpec
from tether.lm.grpo.corrections import CORRECTIONS, CorrectionConfig, CorrectionInputs, apply_corrections
from tether.lm.grpo.inputs import default_verifier
from tether.lm.grpo.rewards import REWARDS, RewardInput, RewardOptions, compute_rewards, reward_needs
from tether.lm.grpo.tasks import make_task, parse_answer
from tether.lm.model.policy import score_tokens
from tether.lm.model.tokenizer import pad_left
from tether.lm.rollout.engine import RolloutEngine, noisy_logits
from tether.lm.rollout.precision import PRECISIONS

__all__ = ["GradBiasConfig", "grad_bias", "run_grad_bias"]


@dataclass(frozen=True)
class GradBiasConfig:
    checkpoint: str = "base:medium"
    """The policy: base:<name>, a model directory, `smollm2`, a .gguf file (also --model.path) or a run checkpoint
    directory (runs/.../checkpoints/step_N)."""
    precision: str = "int4"
    """Engine precision (tether.lm.rollout.precision.PRECISIONS)."""
    logit_noise: float = 0.0
    """Engine logit-noise scale (0 = off; tether.lm.rollout.engine)."""
    corrections: tuple[str, ...] = ("none", "tis_token", "mis_seq", "icepop", "dcmdp")
    """Corrections to compare (comma-separated; each may stack with '+')."""
    correction: CorrectionConfig = field(default_factory=CorrectionConfig)
    """Hyper-parameters of the corrections (cap, band, DCMDP variant, ...); its `name` is not used."""
    lam: float = 1.0
    """DCMDP multiplier lambda applied in the probe."""
    task: TaskSpec = field(default_factory=TaskSpec)
    """Task whose training prompts are sampled."""
    reward: str = "correct"
    """Reward (tether.lm.grpo.rewards.REWARDS; an intrinsic one such as lp gives a gradient where accuracy is 0)."""
    n_prompts: int = 16
    """Prompts per batch (four independent batches are drawn)."""
    group_size: int = 8
    """Completions per prompt."""
    max_new_tokens: int = 40
    """Completion cap."""
    temperature: float = 1.0
    """Sampling temperature."""
    seed: int = 0
    """Seed of the prompts and the sampling noise."""
    out: str = ""
    """Append the JSON lines to this file as well (a `docs/results/data/*.jsonl`)."""
    tag: str = ""
    """A label copied into every JSON line (e.g. the run and step)."""
    json: bool = False
    """Print one JSON object per correction instead of a table."""

    def __post_init__(self) -> None:
        check(self.precision in PRECISIONS, "precision", self.precision, f"one of {PRECISIONS.names()}")
        check(self.logit_noise >= 0, "logit_noise", self.logit_noise, "a float >= 0")
        check(len(self.corrections) >= 1, "corrections", self.corrections, "at least one correction name")
        for name in self.corrections:
            check(all(n in CORRECTIONS for n in name.split("+")), "corrections", self.corrections,
                  f"'+'-joined names from {CORRECTIONS.names()}")
        check(all(part in REWARDS for part in self.reward.split("+")), "reward", self.reward,
              f"a reward from {REWARDS.names()}")
        check(self.lam >= 0, "lam", self.lam, "a float >= 0")
        check(self.n_prompts >= 1, "n_prompts", self.n_prompts, "an integer >= 1")
        check(self.group_size >= 2, "group_size", self.group_size, "an integer >= 2 (advantages are group-relative)")
        check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "an integer >= 1")
        check(self.temperature > 0, "temperature", self.temperature, "a float > 0 (the gradient needs sampling)")


@dataclass
class _Batch:
    ids: Tensor        # (B, P + T) prompt then completion
    mask: Tensor       # (B, P + T)
    start: int         # P
    comp_mask: Tensor  # (B, T)
    rollout_logp: Tensor   # (B, T) the sampling engine's log-probs
    adv: Tensor        # (B,) group-relative advantages
    group_ids: Tensor  # (B,)
    noise_key: int | None
    reward_std: float


def _sample(policy, tok, task, engine: RolloutEngine, cfg: GradBiasConfig, index: int) -> _Batch:
    """One GRPO batch of n_prompts x group_size completions from `engine` (its own prompts and noise)."""
    rng = random.Random(f"grad-bias:{cfg.seed}:{index}")
    problems = [p for p in (task.sample(rng, "train") for _ in range(cfg.n_prompts)) for _ in range(cfg.group_size)]
    group_ids = torch.arange(cfg.n_prompts).repeat_interleave(cfg.group_size)
    ids, mask = pad_left([tok.encode(p.prompt) for p in problems], tok.pad_id)
    out = engine.generate(ids, mask, max_new_tokens=cfg.max_new_tokens, eos_id=tok.eos_id, pad_id=tok.pad_id,
                          temperature=cfg.temperature, generator=torch.Generator().manual_seed(cfg.seed * 1000 + index))
    # the engine returns inference-mode tensors, which autograd cannot save: plain copies
    tokens, comp_mask, rollout_logp = out.tokens.clone(), out.mask.clone(), out.logp.clone()
    full, full_mask = torch.cat([ids, tokens], 1), torch.cat([mask, comp_mask], 1)
    completions = [tok.decode(row) for row in out.tokens.tolist()]
    need = reward_needs(cfg.reward)
    with torch.no_grad():
        stats = policy.token_stats(full, full_mask, start=ids.shape[1], temperature=cfg.temperature, stats=need)
    parsed = [parse_answer(c) for c in completions]
    verdicts = [default_verifier(c, p.answer) for c, p in zip(completions, problems, strict=True)]
    rewards = compute_rewards(cfg.reward, RewardInput(problems, completions, parsed, group_ids, tokens, comp_mask,
                                                      stats, RewardOptions(), correct=verdicts))
    adv = ADVANTAGES.get("group_zscore")(rewards, group_ids, eps=1e-6)
    return _Batch(full, full_mask, ids.shape[1], comp_mask, rollout_logp, adv, group_ids, out.noise_key,
                  float(rewards.std()))


def _flat_grad(loss: Tensor, params: list[Tensor]) -> Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).float().reshape(-1)
                      for g, p in zip(grads, params, strict=True)])


def _surrogate(logp: Tensor, b: _Batch, weight: Tensor, keep: Tensor, shift: Tensor, penalty: float) -> Tensor:
    """-sum_t w keep (A + shift) logp (+ penalty |p - p_inf|), aggregated as GRPO's token_mean_global."""
    per_tok = -(weight * keep * (b.adv[:, None] + shift)) * logp                      # (B, T)
    if penalty:
        per_tok = per_tok + penalty * (logp.exp() - b.rollout_logp.exp()).abs()
    norm = aggregate_normalizer("token_mean_global", b.comp_mask, max_tokens=b.comp_mask.shape[1])
    return aggregate(per_tok, b.comp_mask, mode="token_mean_global", normalizer=norm)


def _estimator_grad(policy, b: _Batch, name: str, cfg: GradBiasConfig) -> Tensor:
    """The update of correction `name` on engine batch b (at ratio 1)."""
    params = [p for p in policy.module.parameters() if p.requires_grad]
    logp = policy.token_stats(b.ids, b.mask, start=b.start, temperature=cfg.temperature)["logp"]
    inp = CorrectionInputs(logp.detach(), b.rollout_logp, b.comp_mask, b.group_ids, cfg.lam)
    c = apply_corrections(inp, replace(cfg.correction, name=name))
    return _flat_grad(_surrogate(logp, b, c.weight, c.keep, c.adv_shift, c.penalty), params)


def _plain_grad(module, b: _Batch, cfg: GradBiasConfig, *, scale: float = 0.0) -> Tensor:
    """grad of -A log pi (+ the batch's logit noise when scale > 0) of `module` on b."""
    params = [p for p in module.parameters() if p.requires_grad]
    logits = full_logits(module, b.ids, b.mask, b.start)
    if scale and b.noise_key is not None:
        logits = noisy_logits(logits, b.noise_key, scale)
    logp = score_tokens(logits, b.ids[:, b.start:], temperature=cfg.temperature)["logp"]
    ones = torch.ones_like(logp)
    return _flat_grad(_surrogate(logp, b, ones, b.comp_mask, torch.zeros_like(logp), 0.0), params)


def _straight_through_module(policy, precision: str):
    """A float32 copy of the policy's module with the engine's weight transform applied (for bf16/fp16 the weights
    are rounded and kept in float32: the gradient is taken at the deployed values, in float32 arithmetic)."""
    module = copy.deepcopy(policy.module)
    dtype = PRECISIONS.get(precision)(module)
    module.to(torch.float32)
    del dtype  # the compute dtype of the engine; the probe's arithmetic stays float32
    return module.train(False).requires_grad_(True)


def _cos(a: Tensor, b: Tensor) -> float:
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return float("nan")
    return float(a @ b / (na * nb))


def grad_bias(policy, tok, cfg: GradBiasConfig) -> list[dict[str, float | str]]:
    """One row per correction (see the module docstring for every key)."""
    task = make_task(cfg.task.name, cfg.task.difficulty)
    engine = RolloutEngine(precision=cfg.precision, logit_noise=cfg.logit_noise)
    exact = RolloutEngine(precision="fp32")
    engine.sync_from(policy)
    exact.sync_from(policy)
    e1, e2 = (_sample(policy, tok, task, engine, cfg, i) for i in (0, 1))
    f1, f2 = (_sample(policy, tok, task, exact, cfg, i) for i in (2, 3))
    if all(b.reward_std == 0 for b in (e1, e2, f1, f2)):
        raise ValueError(f"reward {cfg.reward!r} is constant on every batch (all advantages 0, no gradient): use an "
                         "easier --task.difficulty, more --n-prompts or --max-new-tokens, or a reward that varies "
                         "between completions (--reward ent)")
    on1, on2 = _plain_grad(policy.module, f1, cfg), _plain_grad(policy.module, f2, cfg)
    st_module = _straight_through_module(policy, cfg.precision)
    st1 = _plain_grad(st_module, e1, cfg, scale=cfg.logit_noise)
    st2 = _plain_grad(st_module, e2, cfg, scale=cfg.logit_noise)
    del st_module
    ceil_on, ceil_st = _cos(on1, on2), _cos(st1, st2)
    rows = []
    for name in cfg.corrections:
        g1, g2 = _estimator_grad(policy, e1, name, cfg), _estimator_grad(policy, e2, name, cfg)
        ceil = _cos(g1, g2)
        rows.append({
            "correction": name, "precision": cfg.precision, "logit_noise": cfg.logit_noise,
            "cos_onpolicy": 0.5 * (_cos(g1, on2) + _cos(g2, on1)),
            "cos_straight_through": 0.5 * (_cos(g1, st2) + _cos(g2, st1)),
            "ceiling_self": ceil,
            "ceiling_on": math.sqrt(max(ceil, 0.0) * max(ceil_on, 0.0)),
            "ceiling_st": math.sqrt(max(ceil, 0.0) * max(ceil_st, 0.0)),
            "ceiling_onpolicy_self": ceil_on, "ceiling_st_self": ceil_st,
            "grad_norm": 0.5 * float(g1.norm() + g2.norm()),
            "onpolicy_norm": 0.5 * float(on1.norm() + on2.norm()),
            "n_sequences": int(e1.adv.numel()), "completion_len": float(e1.comp_mask.sum(1).float().mean()),
        })
    return rows


def run_grad_bias(cfg: GradBiasConfig) -> int:
    one_thread()
    tok = load_tokenizer(cfg.checkpoint)
    policy = load_policy(cfg.checkpoint, tok)
    rows = grad_bias(policy, tok, cfg)
    common = {"checkpoint": cfg.checkpoint, "task": cfg.task.name, "difficulty": cfg.task.difficulty,
              "reward": cfg.reward, "n_prompts": cfg.n_prompts, "group_size": cfg.group_size, "seed": cfg.seed,
              "lam": cfg.lam, **({"tag": cfg.tag} if cfg.tag else {})}
    lines = [json.dumps({**common, **r}) for r in rows]
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        with open(cfg.out, "a") as f:
            f.write("".join(line + "\n" for line in lines))
    if cfg.json:
        print("\n".join(lines))
        return 0
    engine = cfg.precision + (f"+noise{cfg.logit_noise:g}" if cfg.logit_noise else "")
    print(f"engine {engine}, {rows[0]['n_sequences']} sequences per batch; ceilings: on-policy "
          f"{rows[0]['ceiling_onpolicy_self']:.2f}, straight-through {rows[0]['ceiling_st_self']:.2f}", file=sys.stderr)
    print(f"{'correction':<20}{'cos on-policy':>15}{'(ceiling)':>11}{'cos straight-thr':>18}{'(ceiling)':>11}"
          f"{'self':>8}")
    for r in rows:
        print(f"{r['correction']:<20}{r['cos_onpolicy']:>15.3f}{r['ceiling_on']:>11.3f}"
              f"{r['cos_straight_through']:>18.3f}{r['ceiling_st']:>11.3f}{r['ceiling_self']:>8.3f}")
    return 0
