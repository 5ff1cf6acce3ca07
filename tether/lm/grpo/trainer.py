"""GRPO for causal LMs on CPU: the trainer, readable top to bottom (its config is `grpo_config.py`).

One step: sample `prompts_per_step` prompts and draw `group_size` completions each with the rollout engine
(a separate object with its own numeric precision, synced from the policy after every update); recompute
the trainer's fp32 log-probs at theta_old (plus any per-token statistics the reward needs) in one no-grad
forward; measure the train/inference mismatch and apply the configured corrections (TIS, MIS, IcePop, DCMDP);
score and compute group-relative advantages; run `ppo_epochs` x `minibatches` optimizer steps of the
registered policy loss (plus an optional KL to the frozen initial policy); take DCMDP's dual step once;
feed the step's metrics to the collapse/hacking detectors.
GRPO: DeepSeekMath (arXiv:2402.03300); clip-higher and token-level aggregation: DAPO (arXiv:2503.14476);
group_mean advantages: Dr. GRPO (arXiv:2503.20783); DCMDP: arXiv:2606.08779.

`old_logp` is always the trainer's recompute (verl's "decoupled" mode), so the PPO ratio is against the
trainer's own numerics and the engine's log-probs (`TrainBatch.rollout_logp`) only enter through the
mismatch metrics and the corrections. In exact fp32 mode with one optimizer step per batch (`fused`), that
recompute is the update's own forward, run once with grad, for TinyLM and HF policies alike (time/old_logp
then holds the forward and time/update the backward). Simplification: the KL reference is the initial policy
(no reset).
"""

from __future__ import annotations

import copy
import math
import random
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from tether.core.checkpoint import load_latest, rng_state, save_checkpoint, set_rng_state
from tether.core.config import ConfigError
from tether.core.duals import DualState
from tether.core.kl import kl_estimate
from tether.core.masked import aggregate, aggregate_normalizer, masked_mean
from tether.core.metrics import Metrics
from tether.core.progress import progress
from tether.core.rundir import RunDir, read_jsonl
from tether.core.seeding import derive_seed, generator, seed_everything
from tether.core.signals import StopRequested, graceful_stop
from tether.core.stability import NonFiniteGuard, clip_grad_norm
from tether.core.timing import Timer
from tether.lm.grpo.advantages import ADVANTAGES, group_stats
from tether.lm.grpo.config import TrainConfig
from tether.lm.grpo.corrections import Correction, CorrectionInputs, apply_corrections
from tether.lm.grpo.detectors import DetectorBank, spearman
from tether.lm.grpo.evaluate import eval_problems, evaluate_split
from tether.lm.grpo.inputs import (
    RewardFunc,
    Verifier,
    as_policy,
    as_tokenizer,
    call_reward_func,
    check_reward_funcs,
    dataset_problems,
)
from tether.lm.grpo.losses import LOSSES
from tether.lm.grpo.rewards import RewardInput, compute_rewards, reward_needs
from tether.lm.grpo.tasks import Problem, make_task
from tether.lm.model.build import build_policy, model_tokenizer
from tether.lm.model.moe import route_flips
from tether.lm.model.policy import TinyPolicy
from tether.lm.model.tokenizer import pad_left
from tether.lm.rollout.engine import RolloutEngine
from tether.lm.rollout.mismatch import mismatch_metrics


@dataclass
class TrainBatch:
    """One rollout batch; `rollout` fills the sample fields, `prepare` returns a copy with the rest filled in.

    All tensors share the row order."""

    problems: list[Problem]
    completions: list[str]
    parsed: list[int | None]
    group_ids: Tensor          # (B,) long
    ids: Tensor                # (B, P + T) long: left-padded prompt then right-padded completion
    mask: Tensor               # (B, P + T) bool real tokens
    start: int                 # P: index of the first completion token
    comp_mask: Tensor          # (B, T) bool completion tokens incl. EOS
    rollout_logp: Tensor       # (B, T) engine log-probs of the sampled tokens
    rewards: Tensor | None = None    # (B,) after `prepare`
    adv: Tensor | None = None        # (B,) group-relative advantage of each sequence, after `prepare`
    old_logp: Tensor | None = None   # (B, T) trainer log-probs at theta_old (the recompute)
    ref_logp: Tensor | None = None   # (B, T) reference log-probs (None: no KL)
    correction: Correction | None = None  # (B, T) weights / keep mask / advantage shift (+ penalty)
    live_logp: Tensor | None = None  # (B, T) fused mode: the update's log-probs, still attached to the graph

    def select(self, rows: Tensor) -> TrainBatch:
        idx = rows.tolist()
        pick = lambda x: None if x is None else x[rows]
        c = self.correction
        corr = None if c is None else Correction(c.weight[rows], c.keep[rows], c.adv_shift[rows],
                                                 c.reward_shift[rows], c.penalty)
        return TrainBatch([self.problems[i] for i in idx], [self.completions[i] for i in idx],
                          [self.parsed[i] for i in idx], self.group_ids[rows], self.ids[rows], self.mask[rows],
                          self.start, self.comp_mask[rows], self.rollout_logp[rows], pick(self.rewards),
                          pick(self.adv), pick(self.old_logp), pick(self.ref_logp), corr, pick(self.live_logp))


class GRPOTrainer:
    """GRPO on a causal LM: `fit()` trains for `config.steps` rollout batches; `step()` runs one.

    Args:
        config: the `TrainConfig` (each default is declared in `tether.lm.grpo.config`).
        run: a `RunDir` for metrics, samples and checkpoints; None writes nothing.
        model: a tether policy (`TinyPolicy`, `HFPolicy`) or any Hugging Face causal LM (an `nn.Module` with a
            `config`, e.g. a `LlamaForCausalLM`, LoRA-wrapped or not); None builds `config.model`.
        tokenizer: any Hugging Face tokenizer (when it has a chat template, each prompt is rendered as one user
            turn) or a tether tokenizer; None is the character tokenizer of the shipped tasks.
        reward_funcs: reward callables with TRL's signature `f(prompts, completions, **columns)` returning one
            float per completion (columns: `answer`, `completion_ids` and the dataset's other columns), and/or
            names from `tether.lm.grpo.rewards.REWARDS`; their rewards add up. None uses `config.algo.reward`.
        train_dataset: rows with a "prompt" (str), optionally an "answer" and any other columns: a list of
            dicts or a `datasets.Dataset`; None samples the synthetic `config.task`.
        eval_dataset: rows like `train_dataset` that `evaluate()` scores (split name "eval"); None evaluates the
            task's `config.eval.splits`, or nothing when a `train_dataset` is given.
        verifier: `verifier(completion, answer) -> bool` decides correctness (the accuracy metrics and the
            `correct` reward); None is the task's `Task.verify` (its parsed final answer equals the answer: the
            final `#<integer>` for the shipped tasks, the stated number for word_problems).

    Replacing `trainer.policy` rebuilds the optimizer, the reference and the rollout engine for the new one.
    """

    def __init__(self, cfg: TrainConfig, run: RunDir | None = None, *, model: Any = None, tokenizer: Any = None,
                 reward_funcs: Sequence[RewardFunc | str] | None = None, train_dataset: Iterable[Mapping] | None = None,
                 eval_dataset: Iterable[Mapping] | None = None, verifier: Verifier | None = None) -> None:
        if run is not None and not isinstance(run, RunDir):
            raise TypeError(f"run: got {type(run).__name__}; expected a tether RunDir or None (pass the model as "
                            "model=...)")
        self.cfg, self.run = cfg, run
        seed = cfg.run.seed
        seed_everything(seed)
        # no tokenizer given: the one saved with a pretrained model, else tether's char tokenizer
        self.tok = as_tokenizer(tokenizer if tokenizer is not None or model is not None else model_tokenizer(cfg.model))
        self.task = make_task(cfg.task.name, cfg.task.difficulty)
        self.train_rows = dataset_problems(train_dataset, "train_dataset")
        self.eval_rows = dataset_problems(eval_dataset, "eval_dataset")
        self.reward_funcs = check_reward_funcs(reward_funcs)
        self.verifier = verifier or self.task.verify
        self.prompt_rng = random.Random(derive_seed(seed, "prompts"))
        self.gens = {"rollout": generator(seed, "rollout"), "minibatch": generator(seed, "minibatch")}
        self.metrics, self.timer, self.guard = Metrics(), Timer(), NonFiniteGuard(lr_flag="--optim.lr")
        k = cfg.correction
        # DCMDP's multiplier (arXiv:2606.08779): one projected dual step per rollout batch on mean |p_tr - p_inf|
        self.dcmdp = k.dual() if "dcmdp" in k.names else None
        self.dual_state: DualState | None = self.dcmdp.init_state() if self.dcmdp else None
        self.detectors = DetectorBank(cfg.detect)
        self.step_count = 0
        self.policy = as_policy(model) if model is not None else \
            build_policy(cfg.model, self.tok, seed=derive_seed(seed, "init"))
        self._check_context()

    @property
    def policy(self):
        """The trained policy; assigning a new one rebuilds the optimizer, the reference and the engine."""
        return self._policy

    @policy.setter
    def policy(self, policy) -> None:
        cfg = self.cfg
        if cfg.optim.compile:
            if not isinstance(policy, TinyPolicy):
                raise ConfigError(f"optim.compile=True compiles TinyLM blocks, but model.arch={cfg.model.arch!r} "
                                 "builds a Hugging Face policy; use optim.compile=False")
            policy.module.compile_blocks()
        self._policy = policy
        self.ref = None
        if cfg.algo.kl_coef > 0:
            self.ref = type(policy)(copy.deepcopy(policy.module).requires_grad_(False).eval())
        self.params = [p for p in policy.module.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.build_engine()

    def build_engine(self) -> None:
        """The rollout engine for the current policy (assigning `self.policy` calls it)."""
        r = self.cfg.rollout
        # The exact fp32 engine's recomputed log-probs are an fp32 full-sequence forward of the synced weights:
        # the trainer's theta_old forward is one (bit for bit for TinyLM and for the HF backend; for an HF policy
        # sampled by the native backend the two forwards differ by kernel order only, ~1e-6), so take them from
        # that forward instead of running a second one.
        self.reuse_exact = (r.precision == "fp32" and r.logprobs in ("auto", "recompute") and not self.cfg.optim.bf16
                            and self.cfg.optim.micro_batch == 0 and not r.logit_noise)
        self.engine = RolloutEngine(precision=r.precision, backend=r.backend,
                                    logprobs="sampler" if self.reuse_exact else r.logprobs, compile=r.compile,
                                    logit_noise=r.logit_noise)
        # With one optimizer step per batch the theta_old forward and the update's forward see the same weights:
        # run it once with grad, detach it for theta_old, and keep the graph for the loss (ratio exactly 1).
        o = self.cfg.optim
        self.fused = self.reuse_exact and o.ppo_epochs == 1 and o.minibatches == 1
        self.engine_stale = True

    def _check_context(self) -> None:
        prompts = [p.prompt for p in (self.train_rows or [])[:256] + (self.eval_rows or [])[:256]] or \
            [self.task.sample(random.Random(i), "ood").prompt for i in range(64)]
        longest = max(len(self.tok.encode(p)) for p in prompts)
        need = longest + self.cfg.rollout.max_new_tokens
        if need > self.policy.max_seq_len:
            source = "the dataset's" if self.train_rows else f"task {self.cfg.task.name!r}"
            raise ConfigError(f"{source} prompts reach {longest} tokens; with "
                             f"rollout.max_new_tokens={self.cfg.rollout.max_new_tokens} that needs a context of "
                             f"{need} > the model's {self.policy.max_seq_len}: raise model.max_seq_len")

    # ---- one step ------------------------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        """One rollout batch and its updates; returns the flushed metrics of this step."""
        c = self.cfg
        with self.timer("rollout"):
            batch = self.rollout()
        lam = float(self.dual_state.value) if self.dual_state is not None else 0.0   # applied this step
        batch, delta_mean = self.prepare(batch, lam)
        if c.samples_every and (self.step_count + 1) % c.samples_every == 0:
            self.dump_samples(batch, step=self.step_count + 1)
        if c.algo.filter_zero_std:
            keep = group_stats(batch.rewards, batch.group_ids)[1] > 0
            self.metrics.log("rollout/filtered_frac", 1.0 - keep.float().mean())
            batch = batch.select(keep.nonzero()[:, 0])
        if batch.rewards.numel() > 0:
            with self.timer("ref_logp"):
                if self.ref is not None:
                    batch = replace(batch, ref_logp=self.stats_of(self.ref, batch)["logp"])
            with self.timer("update"):
                self.update(batch)
        if self.dcmdp is not None:  # once per step, after the update, with this batch's mismatch
            self.dual_state = self.dcmdp.update(self.dual_state, delta_mean)
            self.metrics.log_dict({"dual/dcmdp/lambda": lam, "dual/dcmdp/violation": self.dual_state.violation})
        self.step_count += 1
        self.metrics.log("optim/lr", self.opt.param_groups[0]["lr"])
        self.metrics.log("grad/skipped_steps", float(self.guard.skipped))
        out = {**self.metrics.flush(), **self.timer.flush()}
        out["perf/rollout_tok_s"] = out.get("rollout/tokens", 0.0) / max(out.get("time/rollout", 0.0), 1e-9)
        out.update(self.detectors.update(self.step_count, out))
        return out

    def prepare(self, batch: TrainBatch, lam: float) -> tuple[TrainBatch, Tensor]:
        """theta_old forward, mismatch metrics and corrections, rewards and advantages of a rollout batch.

        Returns the batch with those fields filled in (a new object) and delta-bar, the batch mean
        |p_train - p_inf| that DCMDP's dual step reads."""
        with self.timer("old_logp"):
            stats, live_logp = self.theta_old_forward(batch)
        # exact fp32 engine: its own log-probs would be this very forward (see build_engine)
        rollout_logp = stats["logp"].masked_fill(~batch.comp_mask, 0.0) if self.reuse_exact else batch.rollout_logp
        correction, delta_mean = self.correct(batch, stats["logp"], rollout_logp, lam)
        with self.timer("reward"):
            rewards, adv = self.score(batch, stats, correction.reward_shift)
        return replace(batch, old_logp=stats["logp"], live_logp=live_logp, rollout_logp=rollout_logp,
                       correction=correction, rewards=rewards, adv=adv), delta_mean

    def theta_old_forward(self, batch: TrainBatch) -> tuple[dict[str, Tensor], Tensor | None]:
        """The trainer's log-probs (B, T) at theta_old plus the per-token statistics the reward needs, no grad.

        In fused mode (exact fp32, one optimizer step per batch) this is the update's own forward, run once
        with grad: it returns the detached statistics and the log-probs still attached to the graph, which
        the loss then uses (ratio exactly 1); otherwise the second value is None."""
        if self.fused:
            live = self._forward(self.policy, batch, self._needed_stats())
            return {k: v.detach() for k, v in live.items()}, live["logp"]
        return self.stats_of(self.policy, batch, self._needed_stats()), None

    def _needed_stats(self) -> tuple[str, ...]:
        """Per-token statistics of the theta_old forward: the rewards' needs, plus entropy for logging."""
        names = [f for f in self.reward_funcs if isinstance(f, str)] if self.reward_funcs else [self.cfg.algo.reward]
        needs = [n for name in names for n in reward_needs(name, self.cfg.reward_opts)]
        return tuple(dict.fromkeys(("entropy", *(n for n in needs if n != "logp"))))

    def sample_problem(self) -> Problem:
        """One training prompt: a row of the train_dataset, or a fresh problem of the synthetic task."""
        if self.train_rows:
            return self.train_rows[self.prompt_rng.randrange(len(self.train_rows))]
        return self.task.sample(self.prompt_rng, "train")

    def rollout(self) -> TrainBatch:
        """Sample prompts, sync the engine if the policy changed, and draw G completions per prompt."""
        c = self.cfg.rollout
        if self.engine_stale:
            self.engine.sync_from(self.policy)
            self.engine_stale = False
        problems = [self.sample_problem() for _ in range(c.prompts_per_step)]
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
        return TrainBatch(problems, completions, [self.task.parse(s) for s in completions], group_ids,
                          torch.cat([p_ids, out.tokens], 1), torch.cat([p_mask, out.mask], 1), p_ids.shape[1],
                          out.mask, out.logp)

    def correct(self, batch: TrainBatch, old_logp: Tensor, rollout_logp: Tensor,
                lam: float) -> tuple[Correction, Tensor]:
        """Mismatch metrics of this batch and the corrections' weights/masks/shifts; returns them and delta-bar."""
        k = self.cfg.correction
        m = mismatch_metrics(old_logp, rollout_logp, batch.comp_mask, c=k.c)
        self.metrics.log_dict({f"mismatch/{key}": v for key, v in m.items()})
        if self.engine.kind == "native":  # MoE only: routes of the positions that predict completion tokens
            count = torch.zeros_like(batch.mask)
            count[:, batch.start - 1:-1] = batch.comp_mask
            flips = route_flips(self.policy.module, self.engine.model, batch.ids, batch.mask, count)
            if flips is not None:
                self.metrics.log("mismatch/route_flip_frac", flips)
        correction = apply_corrections(
            CorrectionInputs(old_logp, rollout_logp, batch.comp_mask, batch.group_ids, lam), k)
        self.metrics.log_dict({f"clip/{key}": v for key, v in correction.diagnostics.items()})
        return correction, m["delta_mean"]

    def score(self, batch: TrainBatch, stats: dict[str, Tensor], reward_shift: Tensor) -> tuple[Tensor, Tensor]:
        """Rewards (B,) (registry or '+' mixture, plus DCMDP's sequence shift) and group-relative advantages (B,)."""
        a = self.cfg.algo
        verdicts = [self.verifier(c, p.answer) for c, p in zip(batch.completions, batch.problems, strict=True)]
        raw = self.rewards_of(RewardInput(
            batch.problems, batch.completions, batch.parsed, batch.group_ids, batch.ids[:, batch.start:],
            batch.comp_mask, stats, self.cfg.reward_opts, correct=verdicts))
        rewards = raw + reward_shift
        adv = ADVANTAGES.get(a.advantage)(rewards, batch.group_ids, eps=a.adv_eps)
        correct = torch.tensor([float(v) for v in verdicts])
        zero_std = (group_stats(rewards, batch.group_ids)[1] == 0).float()
        self.metrics.log_dict({"reward/mean": raw.mean(), "reward/std": raw.std(),
                               "reward/accuracy": correct.mean(), "rollout/zero_std_frac": zero_std.mean(),
                               "reward/unparsable_frac": sum(x is None for x in batch.parsed) / len(batch.parsed),
                               "rollout/entropy": masked_mean(stats["entropy"], batch.comp_mask)})
        rho = spearman(raw.numpy(), correct.numpy())
        if rho == rho:  # NaN when rewards or correctness are constant in the batch: nothing to log
            self.metrics.log("diag/reward_acc_spearman", rho)
        return rewards, adv

    def rewards_of(self, inp: RewardInput) -> Tensor:
        """Rewards (B,): `config.algo.reward`, or the sum over `reward_funcs` (names and TRL-style callables)."""
        if not self.reward_funcs:
            return compute_rewards(self.cfg.algo.reward, inp)
        return sum(compute_rewards(f, inp) if isinstance(f, str) else call_reward_func(f, inp)
                   for f in self.reward_funcs)

    @torch.no_grad()
    def stats_of(self, policy, batch: TrainBatch, stats: tuple[str, ...] = ()) -> dict[str, Tensor]:
        """Log-probs (B, T) of the completions under `policy` plus per-token `stats`, micro-batched, no grad."""
        parts = [self._forward(policy, batch.select(rows), stats)
                 for rows in self._micro(torch.arange(len(batch.parsed)))]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

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
        for _ in range(o.ppo_epochs):
            perm = torch.randperm(n, generator=self.gens["minibatch"])
            for rows in perm.split(size):
                self.opt.zero_grad(set_to_none=True)
                total = self.backward(batch.select(rows))
                grad_norm = clip_grad_norm(self.params, o.grad_clip or None)
                self.metrics.log("grad/norm", grad_norm)
                if self.guard.ok(total, grad_norm, step=self.step_count):
                    self.opt.step()
                    self.guard.check_params(self.params, step=self.step_count + 1, last_checkpoint=self._last_ckpt)
                    self.engine_stale = True

    def backward(self, mb: TrainBatch) -> Tensor:
        """Accumulate the gradient of one minibatch's loss, micro-batch by micro-batch; returns the loss.

        The aggregation's normalizer is the whole minibatch's (`core.masked.aggregate_normalizer`), so the
        result does not depend on `optim.micro_batch` (1 x 8 == 8 x 1)."""
        norm = aggregate_normalizer(self.cfg.algo.aggregation, mb.comp_mask,
                                    max_tokens=self.cfg.rollout.max_new_tokens)
        return sum(self._micro_loss(mb.select(r), norm) for r in self._micro(torch.arange(len(mb.parsed))))

    def _micro_loss(self, mb: TrainBatch, normalizer: float | None) -> Tensor:
        """Forward, loss and backward of one micro-batch; returns the detached loss contribution."""
        a, corr = self.cfg.algo, mb.correction
        logp = mb.live_logp if mb.live_logp is not None else self._forward(self.policy, mb)["logp"]
        m = mb.comp_mask
        adv = mb.adv[:, None] + corr.adv_shift                                         # (b, T)
        per_tok, diag = LOSSES.get(a.loss)(logp, mb.old_logp, adv, clip_low=a.clip_low, clip_high=a.clip_high,
                                           dual_clip=a.dual_clip)
        per_tok = per_tok * corr.weight * corr.keep                                    # TIS/MIS/IcePop (detached)
        if corr.penalty:  # DCMDP "differentiable": lam * |p_theta - p_inf| with a gradient through p_theta
            per_tok = per_tok + corr.penalty * (logp.exp() - mb.rollout_logp.exp()).abs()
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
            "clip/dual_frac": masked_mean(diag["clipped_dual"].float(), m),
            "clip/ratio_mean": masked_mean(diag["ratio"], m),
            "clip/ratio_max": diag["ratio"].masked_fill(~m, 0.0).max(),
        })
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
            for split, problems in self.eval_sets().items():
                res = evaluate_split(self.engine, self.tok, problems, k=e.k, temperature=e.temperature,
                                     max_new_tokens=self.cfg.rollout.max_new_tokens, seed=e.seed,
                                     verifier=None if self.verifier == self.task.verify else self.verifier,
                                     parse=self.task.parse)
                out.update({f"eval/{split}/{k}": v for k, v in res.items()})
        return out

    def eval_sets(self) -> dict[str, list[Problem]]:
        """The problems `evaluate()` scores, by split name."""
        if self.eval_rows:
            return {"eval": self.eval_rows}
        if self.train_rows:  # a user dataset without an eval_dataset: the synthetic task's splits do not apply
            return {}
        e = self.cfg.eval
        return {split: eval_problems(self.task, split, e.n_prompts, seed=e.seed) for split in e.splits}

    def dump_samples(self, batch: TrainBatch, *, step: int) -> None:
        """samples/step_XXXXXXX.jsonl: one row per completion of this step's rollout batch."""
        if self.run is None:
            return
        rows = [{"group": int(g), "prompt": p.prompt, "answer": _jsonable(p.answer), "completion": s, "parsed": a,
                 "reward": float(r), "advantage": float(v), "length": int(n)}
                for g, p, s, a, r, v, n in zip(batch.group_ids, batch.problems, batch.completions, batch.parsed,
                                               batch.rewards, batch.adv, batch.comp_mask.sum(-1), strict=True)]
        self.run.write_jsonl(f"samples/step_{step:07d}.jsonl", rows)

    def state_dict(self) -> dict:
        return {"policy": self.policy.module.state_dict(), "optim": self.opt.state_dict(),
                "ref": None if self.ref is None else self.ref.module.state_dict(), "guard": self.guard.state_dict(),
                "rng": rng_state(self.gens), "prompt_rng": self.prompt_rng.getstate(), "step": self.step_count,
                "dual": None if self.dual_state is None else self.dual_state.state_dict(),
                "detectors": self.detectors.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.policy.module.load_state_dict(state["policy"])
        self.opt.load_state_dict(state["optim"])
        if self.ref is not None:
            self.ref.module.load_state_dict(state["ref"])
        self.guard.load_state_dict(state["guard"])
        set_rng_state(state["rng"], self.gens)
        self.prompt_rng.setstate(state["prompt_rng"])
        self.step_count = state["step"]
        if self.dual_state is not None:
            self.dual_state = DualState.from_state_dict(state["dual"])
        self.detectors.load_state_dict(state["detectors"])
        self.engine_stale = True

    def _last_ckpt(self):
        return self.run.latest_checkpoint() if self.run is not None else None

    def save(self) -> None:
        """A checkpoint of this step (the weights are checked first: a non-finite one is never written)."""
        if self.run is not None:
            self.guard.check_params(self.params, step=self.step_count, last_checkpoint=self._last_ckpt)
            save_checkpoint(self.run.checkpoint_path(self.step_count), self.state_dict(), {"step": self.step_count})

    def resume(self) -> None:
        """Continue from the run directory's last checkpoint (rows logged after it are dropped)."""
        found = load_latest(self.run.path / "checkpoints") if self.run is not None else None
        if found is None:  # a damaged latest checkpoint falls back to the previous one (load_latest warns)
            raise ConfigError(f"run.resume: no loadable checkpoint under {self.run.path if self.run else None}; run "
                              "the same command without --run.resume to start it")
        self.load_state_dict(found[1])
        self.run.truncate_after(self.step_count)

    def _log_eval(self) -> dict[str, float]:
        res = self.evaluate()
        if self.run is not None:
            self.run.log_eval(self.step_count, res)
        if self.detectors.history:  # the labelled canary of the reward-hacking detector
            self.detectors.history[-1].update(res)
        return res

    def fit(self) -> dict[str, float]:
        """Train for `steps`, evaluating before, every `eval.every` steps and at the end; returns the last eval.

        A run that is already finished (resumed at its last step) does nothing, says so, and returns its final
        evaluation."""
        c = self.cfg
        if self.step_count >= c.steps > 0:
            print(f"the run is already finished at step {self.step_count} of {c.steps}: nothing to do",
                  file=sys.stderr, flush=True)
            evals = read_jsonl(self.run.path / "eval.jsonl") if self.run is not None else []
            return {k: v for k, v in (evals[-1] if evals else {}).items() if k != "step"}
        last_eval = self._log_eval() if self.step_count == 0 else {}
        # a resumed run's ETA counts new steps only; SIGTERM/SIGINT: save after the current step, then stop
        with progress(c.steps, "lm train", initial=self.step_count) as bar, graceful_stop() as stop:
            while self.step_count < c.steps:
                m = self.step()
                if self.run is not None and self.step_count % c.run.log_every == 0:
                    self.run.log_metrics(self.step_count, m)
                if c.eval.every and self.step_count % c.eval.every == 0 and self.step_count < c.steps:
                    last_eval = self._log_eval()
                if (c.run.save_every and self.step_count % c.run.save_every == 0) or stop.requested:
                    self.save()
                bar.update(1, reward=m.get("reward/mean", float("nan")), acc=m.get("reward/accuracy", float("nan")),
                           entropy=m.get("rollout/entropy", float("nan")))
                if stop.requested and self.step_count < c.steps:
                    saved = self.run.checkpoint_path(self.step_count) if self.run is not None else None
                    raise StopRequested(stop.message(self.step_count, saved), stop.exit_code)
                if self.detectors.stop_reason:  # a configured early stop: keep what was learned, say why
                    print(f"stopped early: {self.detectors.stop_reason}", flush=True)
                    break
        if c.steps > 0:
            last_eval = self._log_eval()
        self.save()
        return last_eval


def _jsonable(x: Any) -> Any:
    return x if x is None or isinstance(x, (bool, int, float, str)) else str(x)
