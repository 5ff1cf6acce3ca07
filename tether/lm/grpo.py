"""GRPO for causal LMs on CPU: config, presets and the trainer, readable top to bottom.

One step: sample `prompts_per_step` prompts, draw `group_size` completions each with the rollout engine
(a separate object, synced from the policy after every update), score them, compute group-relative
advantages, then run `ppo_epochs` x `minibatches` optimizer steps of the registered policy loss plus an
optional KL to the frozen initial policy. GRPO: DeepSeekMath (arXiv:2402.03300); clip-higher and
token-level aggregation: DAPO (arXiv:2503.14476); group_mean advantages: Dr. GRPO (arXiv:2503.20783).

`old_logp` is recomputed by the trainer before the updates when there is more than one optimizer step
per batch; with exactly one it equals the detached current log-prob (ratio 1), which saves a forward. The
engine's own log-probs are kept as `TrainBatch.rollout_logp` for train/inference-mismatch work.
Simplification: the reference policy for the KL is the initial policy (no periodic reference reset).
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from tether.core.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from tether.core.config import check
from tether.core.kl import kl_estimate
from tether.core.masked import AGGREGATION_MODES, aggregate, masked_mean
from tether.core.metrics import Metrics
from tether.core.progress import progress
from tether.core.rundir import RunConfig, RunDir
from tether.core.seeding import derive_seed, generator, seed_everything
from tether.core.stability import NonFiniteGuard, clip_grad_norm
from tether.core.timing import Timer
from tether.lm import precision as _precision  # noqa: F401  (registers fp16/fp8/int8/int4 engine precisions)
from tether.lm.advantages import ADVANTAGES, group_stats
from tether.lm.build import ModelSpec, build_policy
from tether.lm.evaluate import eval_problems, evaluate_split
from tether.lm.losses import LOSSES
from tether.lm.rewards import REWARDS, RewardInput, reward_needs
from tether.lm.sampler import PRECISIONS, RolloutEngine
from tether.lm.tasks import SPLITS, TASKS, Problem, make_task, parse_answer
from tether.lm.tokenizer import CharTokenizer, pad_left


@dataclass(frozen=True)
class TaskSpec:
    name: str = "running_sum"
    """Task (running_sum, addition, modular_chain, linear_equation)."""
    difficulty: int = 2
    """Task difficulty knob (chain length / digits / coefficient range; see tether/lm/tasks.py)."""

    def __post_init__(self) -> None:
        check(self.name.replace("-", "_") in TASKS, "task.name", self.name, f"one of {TASKS.names()}")
        check(self.difficulty >= 1, "task.difficulty", self.difficulty, "an integer >= 1")


@dataclass(frozen=True)
class RolloutSpec:
    prompts_per_step: int = 16
    """Distinct prompts per step."""
    group_size: int = 8
    """G completions per prompt (>= 2: advantages are relative within a group)."""
    max_new_tokens: int = 40
    """Completion length cap (EOS included)."""
    temperature: float = 1.0
    """Sampling temperature; the trainer scores tokens at the same temperature."""
    top_p: float = 1.0
    """Nucleus sampling mass (1 = off)."""
    precision: str = "fp32"
    """Numeric precision of the rollout engine (registry tether.lm.sampler.PRECISIONS), independent of the trainer."""
    backend: Literal["auto", "native", "hf"] = "auto"
    """Engine backend: native KV-cached TinyLM path (Llama/Qwen2 layouts), hf (transformers forward), or auto."""

    def __post_init__(self) -> None:
        check(self.group_size >= 2, "rollout.group_size", self.group_size, "an integer >= 2")
        check(self.prompts_per_step >= 1, "rollout.prompts_per_step", self.prompts_per_step, "an integer >= 1")
        check(self.max_new_tokens >= 1, "rollout.max_new_tokens", self.max_new_tokens, "an integer >= 1")
        check(self.temperature > 0, "rollout.temperature", self.temperature, "a float > 0")
        check(0 < self.top_p <= 1, "rollout.top_p", self.top_p, "a float in (0, 1]")
        check(self.precision in PRECISIONS, "rollout.precision", self.precision, f"one of {PRECISIONS.names()}")


@dataclass(frozen=True)
class AlgoSpec:
    reward: str = "correct"
    """Reward function (registry tether.lm.rewards.REWARDS)."""
    advantage: str = "group_zscore"
    """Advantage estimator: group_zscore (GRPO), group_mean (Dr. GRPO), rloo."""
    adv_eps: float = 1e-6
    """Epsilon added to the group std (group_zscore)."""
    filter_zero_std: bool = False
    """Drop groups whose rewards are all equal (zero advantage) before the update."""
    loss: str = "ppo_clip"
    """Policy loss (registry tether.lm.losses.LOSSES)."""
    clip_low: float = 0.2
    """PPO ratio clip below 1 (epsilon_low)."""
    clip_high: float = 0.2
    """PPO ratio clip above 1 (epsilon_high; 0.28 = DAPO clip-higher)."""
    aggregation: str = "token_mean_global"
    """Loss aggregation over tokens: token_mean_global, token_mean_local, seq_mean_token_mean, seq_sum_const."""
    kl_coef: float = 0.0
    """beta of the per-token KL to the frozen initial policy, added to the loss (0 = no reference model)."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    """KL estimator (tether.core.kl)."""

    def __post_init__(self) -> None:
        check(self.reward in REWARDS, "algo.reward", self.reward, f"one of {REWARDS.names()}")
        check(self.advantage in ADVANTAGES, "algo.advantage", self.advantage, f"one of {ADVANTAGES.names()}")
        check(self.loss in LOSSES, "algo.loss", self.loss, f"one of {LOSSES.names()}")
        check(self.aggregation in AGGREGATION_MODES, "algo.aggregation", self.aggregation, f"one of {AGGREGATION_MODES}")
        check(0 <= self.clip_low < 1, "algo.clip_low", self.clip_low, "a float in [0, 1)")
        check(self.clip_high >= self.clip_low, "algo.clip_high", self.clip_high,
              f"a float >= algo.clip_low={self.clip_low}")
        check(self.kl_coef >= 0, "algo.kl_coef", self.kl_coef, "a float >= 0")


@dataclass(frozen=True)
class OptimSpec:
    lr: float = 3e-5
    """AdamW learning rate (constant)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Max global gradient norm (0 = no clipping)."""
    ppo_epochs: int = 1
    """Passes over each rollout batch."""
    minibatches: int = 1
    """Optimizer steps per pass (the batch is split into this many minibatches)."""
    micro_batch: int = 0
    """Sequences per forward/backward (gradient accumulation inside a minibatch; 0 = whole minibatch)."""
    bf16: bool = False
    """bf16 autocast for the trainer forward/backward (weights and optimizer stay fp32)."""

    def __post_init__(self) -> None:
        check(self.lr > 0, "optim.lr", self.lr, "a float > 0")
        check(self.ppo_epochs >= 1, "optim.ppo_epochs", self.ppo_epochs, "an integer >= 1")
        check(self.minibatches >= 1, "optim.minibatches", self.minibatches, "an integer >= 1")
        check(self.micro_batch >= 0, "optim.micro_batch", self.micro_batch, "an integer >= 0")


@dataclass(frozen=True)
class EvalSpec:
    every: int = 10
    """Steps between evaluations (0 = only before and after training)."""
    n_prompts: int = 64
    """Problems per split (a fixed set, identical across runs)."""
    k: int = 8
    """Samples per problem for pass@k / maj@k."""
    temperature: float = 1.0
    """Temperature of the k samples (greedy accuracy always uses temperature 0)."""
    splits: tuple[str, ...] = ("heldout", "ood")
    """Splits to evaluate (train, heldout, ood)."""
    seed: int = 1234
    """Seed of the evaluation problems and sampling noise (fixed so evaluations are comparable)."""

    def __post_init__(self) -> None:
        check(all(s in SPLITS for s in self.splits), "eval.splits", self.splits, f"names from {SPLITS}")
        check(self.k >= 1 and self.n_prompts >= 1, "eval.k", self.k, "k >= 1 and n_prompts >= 1")


@dataclass(frozen=True)
class TrainConfig:
    preset: str = ""
    """Name of the preset this config started from (informational)."""
    steps: int = 100
    """GRPO steps (rollout batches)."""
    samples_every: int = 10
    """Steps between sample dumps to samples/step_XXXXXXX.jsonl (0 = never)."""
    task: TaskSpec = field(default_factory=TaskSpec)
    """The synthetic task."""
    model: ModelSpec = field(default_factory=ModelSpec)
    """The trained policy (TinyLM, a tiny HF model, or a saved base)."""
    rollout: RolloutSpec = field(default_factory=RolloutSpec)
    """The rollout engine (separate from the trainer: own precision and backend) and group sampling."""
    algo: AlgoSpec = field(default_factory=AlgoSpec)
    """Reward, advantage estimator, policy loss, aggregation and KL."""
    optim: OptimSpec = field(default_factory=OptimSpec)
    """Optimizer and update schedule (PPO epochs, minibatches, micro-batches)."""
    eval: EvalSpec = field(default_factory=EvalSpec)
    """Periodic evaluation on held-out and OOD splits."""
    run: RunConfig = field(default_factory=RunConfig)
    """Run directory, seed, resume, logging and checkpoint cadence."""

    def __post_init__(self) -> None:
        check(self.steps >= 0, "steps", self.steps, "an integer >= 0")
        n = self.rollout.prompts_per_step * self.rollout.group_size
        check(self.optim.minibatches <= n, "optim.minibatches", self.optim.minibatches,
              f"at most prompts_per_step * group_size = {n}")


def smoke() -> TrainConfig:
    """CI preset: 6 steps of 8 prompts x G=4 from the shipped medium base on running sums; < 1 min on one core."""
    return TrainConfig(preset="smoke", steps=6, samples_every=3, model=ModelSpec(path="base:medium"),
                       rollout=RolloutSpec(prompts_per_step=8, group_size=4, max_new_tokens=32),
                       optim=OptimSpec(lr=3e-5), eval=EvalSpec(every=0, n_prompts=16, k=4))


def gsm_tiny() -> TrainConfig:
    """Standard recipe: GT-reward GRPO of the shipped medium base on running sums (intrinsic.md §5.5);
    100 steps of 16 prompts x G=8, lr 3e-5, clip-higher 0.28; ~2 CPU-minutes on one core."""
    return TrainConfig(preset="gsm-tiny", steps=100, model=ModelSpec(path="base:medium"),
                       rollout=RolloutSpec(prompts_per_step=16, group_size=8, max_new_tokens=40),
                       algo=AlgoSpec(clip_high=0.28), optim=OptimSpec(lr=3e-5),
                       eval=EvalSpec(every=25, n_prompts=256))


PRESETS = {"smoke": smoke, "gsm-tiny": gsm_tiny}


@dataclass
class TrainBatch:
    """Everything the update needs for one rollout batch; all tensors share the row order."""

    problems: list[Problem]
    completions: list[str]
    parsed: list[int | None]
    group_ids: Tensor          # (B,) long
    ids: Tensor                # (B, P + T) long: left-padded prompt then right-padded completion
    mask: Tensor               # (B, P + T) bool real tokens
    start: int                 # P: index of the first completion token
    comp_mask: Tensor          # (B, T) bool completion tokens incl. EOS
    rollout_logp: Tensor       # (B, T) engine log-probs of the sampled tokens
    rewards: Tensor            # (B,)
    adv: Tensor                # (B,)
    old_logp: Tensor | None = None   # (B, T) trainer log-probs before the update (None: single update)
    ref_logp: Tensor | None = None   # (B, T) reference log-probs (None: no KL)

    def select(self, rows: Tensor) -> TrainBatch:
        idx = rows.tolist()
        pick = lambda x: None if x is None else x[rows]
        return TrainBatch([self.problems[i] for i in idx], [self.completions[i] for i in idx],
                          [self.parsed[i] for i in idx], self.group_ids[rows], self.ids[rows], self.mask[rows],
                          self.start, self.comp_mask[rows], self.rollout_logp[rows], self.rewards[rows],
                          self.adv[rows], pick(self.old_logp), pick(self.ref_logp))


class GRPOTrainer:
    def __init__(self, cfg: TrainConfig, run: RunDir | None = None) -> None:
        self.cfg, self.run = cfg, run
        seed = cfg.run.seed
        seed_everything(seed)
        self.tok = CharTokenizer()
        self.task = make_task(cfg.task.name, cfg.task.difficulty)
        self.policy = build_policy(cfg.model, self.tok, seed=derive_seed(seed, "init"))
        self.ref = None
        if cfg.algo.kl_coef > 0:
            self.ref = type(self.policy)(copy.deepcopy(self.policy.module).requires_grad_(False).eval())
        self.params = [p for p in self.policy.module.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.engine = RolloutEngine(precision=cfg.rollout.precision, backend=cfg.rollout.backend)
        self.engine_stale = True
        self.prompt_rng = random.Random(derive_seed(seed, "prompts"))
        self.gens = {"rollout": generator(seed, "rollout"), "minibatch": generator(seed, "minibatch")}
        self.metrics, self.timer, self.guard = Metrics(), Timer(), NonFiniteGuard()
        self.step_count = 0
        self._check_context()

    def _check_context(self) -> None:
        longest = max(len(self.tok.encode(self.task.sample(random.Random(i), "ood").prompt)) for i in range(64))
        need = longest + self.cfg.rollout.max_new_tokens
        if need > self.policy.max_seq_len:
            raise ValueError(f"task {self.cfg.task.name!r} prompts reach {longest} tokens; with "
                             f"rollout.max_new_tokens={self.cfg.rollout.max_new_tokens} that needs a context of "
                             f"{need} > the model's {self.policy.max_seq_len}: raise model.max_seq_len")

    # ---- one step ------------------------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        """One rollout batch and its updates; returns the flushed metrics of this step."""
        c = self.cfg
        with self.timer("rollout"):
            batch = self.rollout()
        with self.timer("reward"):
            self.score(batch)
        if c.samples_every and (self.step_count + 1) % c.samples_every == 0:
            self.dump_samples(batch, step=self.step_count + 1)
        if c.algo.filter_zero_std:
            keep = group_stats(batch.rewards, batch.group_ids)[1] > 0
            self.metrics.log("rollout/filtered_frac", 1.0 - keep.float().mean())
            batch = batch.select(keep.nonzero()[:, 0])
        if batch.rewards.numel() > 0:
            multi = c.optim.ppo_epochs * c.optim.minibatches > 1
            with self.timer("old_logp"):
                batch.old_logp = self.logp_of(self.policy, batch) if multi else None
            with self.timer("ref_logp"):
                batch.ref_logp = self.logp_of(self.ref, batch) if self.ref is not None else None
            with self.timer("update"):
                self.update(batch)
        self.step_count += 1
        self.metrics.log("optim/lr", self.opt.param_groups[0]["lr"])
        self.metrics.log("grad/skipped_steps", float(self.guard.skipped))
        out = {**self.metrics.flush(), **self.timer.flush()}
        out["perf/rollout_tok_s"] = out.get("rollout/tokens", 0.0) / max(out.get("time/rollout", 0.0), 1e-9)
        return out

    def rollout(self) -> TrainBatch:
        """Sample prompts, sync the engine if the policy changed, and draw G completions per prompt."""
        c = self.cfg.rollout
        if self.engine_stale:
            self.engine.sync_from(self.policy)
            self.engine_stale = False
        problems = [self.task.sample(self.prompt_rng, "train") for _ in range(c.prompts_per_step)]
        problems = [p for p in problems for _ in range(c.group_size)]
        group_ids = torch.arange(c.prompts_per_step).repeat_interleave(c.group_size)
        p_ids, p_mask = pad_left([self.tok.encode(p.prompt) for p in problems], self.tok.pad_id)
        out = self.engine.generate(p_ids, p_mask, max_new_tokens=c.max_new_tokens, eos_id=self.tok.eos_id,
                                   pad_id=self.tok.pad_id, temperature=c.temperature, top_p=c.top_p,
                                   generator=self.gens["rollout"])
        completions = [self.tok.decode(row) for row in out.tokens.tolist()]
        lengths = out.lengths.float()
        self.metrics.log_dict({"rollout/len_mean": lengths.mean(), "rollout/len_max": lengths.max(),
                               "rollout/truncated_frac": (~(out.tokens == self.tok.eos_id).any(-1)).float().mean(),
                               "rollout/tokens": lengths.sum()})
        empty = torch.zeros(len(problems))
        return TrainBatch(problems, completions, [parse_answer(s) for s in completions], group_ids,
                          torch.cat([p_ids, out.tokens], 1), torch.cat([p_mask, out.mask], 1), p_ids.shape[1],
                          out.mask, out.logp, empty, empty)

    def score(self, batch: TrainBatch) -> None:
        """Rewards (registry) and group-relative advantages, in place on `batch`."""
        a = self.cfg.algo
        stats = {}
        needs = reward_needs(a.reward)
        if needs:
            with torch.no_grad():
                stats = self.policy.token_stats(batch.ids, batch.mask, start=batch.start,
                                                temperature=self.cfg.rollout.temperature,
                                                stats=tuple(n for n in needs if n != "logp"))
        batch.rewards = REWARDS.get(a.reward)(RewardInput(
            batch.problems, batch.completions, batch.parsed, batch.group_ids, batch.ids[:, batch.start:],
            batch.comp_mask, stats)).float()
        batch.adv = ADVANTAGES.get(a.advantage)(batch.rewards, batch.group_ids, eps=a.adv_eps)
        correct = torch.tensor([float(x == p.answer) for x, p in zip(batch.parsed, batch.problems, strict=True)])
        zero_std = (group_stats(batch.rewards, batch.group_ids)[1] == 0).float()
        self.metrics.log_dict({"reward/mean": batch.rewards.mean(), "reward/std": batch.rewards.std(),
                               "reward/accuracy": correct.mean(), "rollout/zero_std_frac": zero_std.mean(),
                               "reward/unparsable_frac": sum(x is None for x in batch.parsed) / len(batch.parsed)})

    @torch.no_grad()
    def logp_of(self, policy, batch: TrainBatch) -> Tensor:
        """Log-probs (B, T) of the completions under `policy` (old policy or reference), micro-batched."""
        parts = [self._forward(policy, batch.select(rows))["logp"] for rows in self._micro(torch.arange(len(batch.parsed)))]
        return torch.cat(parts)

    def _forward(self, policy, batch: TrainBatch, stats: tuple[str, ...] = ()) -> dict[str, Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.optim.bf16):
            out = policy.token_stats(batch.ids, batch.mask, start=batch.start,
                                     temperature=self.cfg.rollout.temperature, stats=stats)
        return {k: v.float() for k, v in out.items()}

    def _micro(self, rows: Tensor) -> list[Tensor]:
        size = self.cfg.optim.micro_batch or len(rows)
        return list(rows.split(size))

    def update(self, batch: TrainBatch) -> None:
        """ppo_epochs x minibatches optimizer steps; gradient accumulation over micro-batches."""
        o, n = self.cfg.optim, len(batch.parsed)
        size = math.ceil(n / o.minibatches)
        for epoch in range(o.ppo_epochs):
            perm = torch.randperm(n, generator=self.gens["minibatch"])
            for rows in perm.split(size):
                mb = batch.select(rows)
                norm = self._normalizer(mb)
                self.opt.zero_grad(set_to_none=True)
                total = sum(self._micro_loss(mb.select(r), norm, log_entropy=epoch == 0)
                            for r in self._micro(torch.arange(len(rows))))
                grad_norm = clip_grad_norm(self.params, o.grad_clip or None)
                self.metrics.log("grad/norm", grad_norm)
                if self.guard.ok(total, grad_norm, step=self.step_count):
                    self.opt.step()
                    self.engine_stale = True

    def _normalizer(self, mb: TrainBatch) -> float | None:
        """Denominator of the loss for a whole minibatch, so accumulation 1x8 == 8x1 (core.masked.aggregate)."""
        mode = self.cfg.algo.aggregation
        if mode == "token_mean_global":
            return float(mb.comp_mask.sum().clamp(min=1))
        if mode == "seq_mean_token_mean":
            return float(len(mb.parsed))
        if mode == "seq_sum_const":
            return float(len(mb.parsed) * self.cfg.rollout.max_new_tokens)
        return None

    def _micro_loss(self, mb: TrainBatch, normalizer: float | None, *, log_entropy: bool) -> Tensor:
        """Forward, loss and backward of one micro-batch; returns the detached loss contribution."""
        a = self.cfg.algo
        out = self._forward(self.policy, mb, stats=("entropy",) if log_entropy else ())
        logp, m = out["logp"], mb.comp_mask
        old = mb.old_logp if mb.old_logp is not None else logp.detach()
        adv = mb.adv[:, None].expand_as(logp)                                           # (b, T)
        per_tok, diag = LOSSES.get(a.loss)(logp, old, adv, clip_low=a.clip_low, clip_high=a.clip_high)
        pg_loss = aggregate(per_tok, m, mode=a.aggregation, normalizer=normalizer)
        loss = pg_loss
        if mb.ref_logp is not None:
            kl = kl_estimate(logp, mb.ref_logp, value=a.kl_estimator)                   # (b, T)
            loss = loss + a.kl_coef * aggregate(kl, m, mode=a.aggregation, normalizer=normalizer)
            self.metrics.log("kl/ref", masked_mean(kl.detach(), m))
        loss.backward()
        self.metrics.log_dict({
            "loss/policy": pg_loss.detach(), "loss/total": loss.detach(),
            "clip/low_frac": masked_mean(diag["clipped_low"].float(), m),
            "clip/high_frac": masked_mean(diag["clipped_high"].float(), m),
            "clip/ratio_mean": masked_mean(diag["ratio"], m),
            "clip/ratio_max": diag["ratio"].masked_fill(~m, 0.0).max(),
        })
        if log_entropy:
            self.metrics.log("rollout/entropy", masked_mean(out["entropy"].detach(), m))
        return loss.detach()

    # ---- evaluation, samples, checkpoints, loop -----------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Greedy accuracy, pass@k, maj@k, length and parse failures on each eval split (engine precision)."""
        e = self.cfg.eval
        if self.engine_stale:
            self.engine.sync_from(self.policy)
            self.engine_stale = False
        out = {}
        with self.timer("eval"):
            for split in e.splits:
                problems = eval_problems(self.task, split, e.n_prompts, seed=e.seed)
                res = evaluate_split(self.engine, self.tok, problems, k=e.k, temperature=e.temperature,
                                     max_new_tokens=self.cfg.rollout.max_new_tokens, seed=e.seed)
                out.update({f"eval/{split}/{k}": v for k, v in res.items()})
        return out

    def dump_samples(self, batch: TrainBatch, *, step: int) -> None:
        """samples/step_XXXXXXX.jsonl: one row per completion of this step's rollout batch."""
        if self.run is None:
            return
        rows = [{"group": int(g), "prompt": p.prompt, "answer": p.answer, "completion": s, "parsed": a,
                 "reward": float(r), "advantage": float(v), "length": int(n)}
                for g, p, s, a, r, v, n in zip(batch.group_ids, batch.problems, batch.completions, batch.parsed,
                                               batch.rewards, batch.adv, batch.comp_mask.sum(-1), strict=True)]
        self.run.write_jsonl(f"samples/step_{step:07d}.jsonl", rows)

    def state_dict(self) -> dict:
        return {"policy": self.policy.module.state_dict(), "optim": self.opt.state_dict(),
                "ref": None if self.ref is None else self.ref.module.state_dict(), "guard": self.guard.state_dict(),
                "rng": rng_state(self.gens), "prompt_rng": self.prompt_rng.getstate(), "step": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.policy.module.load_state_dict(state["policy"])
        self.opt.load_state_dict(state["optim"])
        if self.ref is not None:
            self.ref.module.load_state_dict(state["ref"])
        self.guard.load_state_dict(state["guard"])
        set_rng_state(state["rng"], self.gens)
        self.prompt_rng.setstate(state["prompt_rng"])
        self.step_count = state["step"]
        self.engine_stale = True

    def save(self) -> None:
        if self.run is not None:
            save_checkpoint(self.run.checkpoint_path(self.step_count), self.state_dict(), {"step": self.step_count})

    def resume(self) -> None:
        """Continue from the run directory's last checkpoint (rows logged after it are dropped)."""
        ckpt = self.run.latest_checkpoint() if self.run is not None else None
        if ckpt is None:
            raise FileNotFoundError(f"run.resume: no checkpoint under {self.run.path if self.run else None}")
        self.load_state_dict(load_checkpoint(ckpt))
        self.run.truncate_after(self.step_count)

    def _log_eval(self) -> dict[str, float]:
        res = self.evaluate()
        if self.run is not None:
            self.run.log_eval(self.step_count, res)
        return res

    def fit(self) -> dict[str, float]:
        """Train for `steps`, evaluating before, every `eval.every` steps and at the end; returns the last eval."""
        c = self.cfg
        last_eval = self._log_eval() if self.step_count == 0 else {}
        with progress(c.steps, "lm train") as bar:
            bar.update(self.step_count)
            while self.step_count < c.steps:
                m = self.step()
                if self.run is not None and self.step_count % c.run.log_every == 0:
                    self.run.log_metrics(self.step_count, m)
                if c.eval.every and self.step_count % c.eval.every == 0 and self.step_count < c.steps:
                    last_eval = self._log_eval()
                if c.run.save_every and self.step_count % c.run.save_every == 0:
                    self.save()
                bar.update(1, reward=m.get("reward/mean", float("nan")), acc=m.get("reward/accuracy", float("nan")),
                           entropy=m.get("rollout/entropy", float("nan")))
        if c.steps > 0:
            last_eval = self._log_eval()
        self.save()
        return last_eval


def train(cfg: TrainConfig) -> int:
    """`tether lm train`: build the run directory and the trainer, then fit."""
    one_thread()
    run = RunDir.from_config(cfg.run, cfg, default_dir=f"runs/lm/train-{_stamp()}")
    print(f"run dir: {run.path}", flush=True)
    trainer = GRPOTrainer(cfg, run)
    if cfg.run.resume:
        trainer.resume()
    final = trainer.fit()
    print(" ".join(f"{k}={v:.3f}" for k, v in final.items()), flush=True)
    run.close()
    return 0


def one_thread() -> None:
    """One torch thread unless OMP_NUM_THREADS says otherwise: 2 OpenMP threads on a busy 2-core machine
    run 5-20x slower than 1 (shared/notes/dependencies.md §3)."""
    import os
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


def _stamp() -> str:
    import time
    return time.strftime("%Y%m%d-%H%M%S")
