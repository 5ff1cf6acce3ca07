"""Configuration of `tether lm train` (GRPO and its DCMDP / intrinsic-reward extensions): frozen dataclasses and
the presets. Every field's docstring is its `--help` text; `__post_init__` only validates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from tether.core.config import check, check_rate
from tether.core.masked import AGGREGATION_MODES
from tether.core.rundir import RunConfig
from tether.lm.grpo.advantages import ADVANTAGES
from tether.lm.grpo.corrections import CorrectionConfig
from tether.lm.grpo.detectors import DetectorConfig
from tether.lm.grpo.losses import LOSSES
from tether.lm.grpo.rewards import REWARDS, RewardOptions
from tether.lm.grpo.tasks import SPLITS, TASKS
from tether.lm.model.build import ModelSpec
from tether.lm.rollout.precision import PRECISIONS

__all__ = ["TaskSpec", "RolloutSpec", "AlgoSpec", "OptimSpec", "EvalSpec", "TrainConfig", "PRESETS", "smoke",
           "gsm_tiny"]


@dataclass(frozen=True)
class TaskSpec:
    name: str = "running_sum"
    """Task (running_sum, addition, modular_chain, linear_equation, word_problems: English stories for chat models)."""
    difficulty: int = 2
    """Task difficulty knob (chain length / digits / coefficient range; see tether/lm/grpo/tasks.py)."""

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
    """Numeric precision of the rollout engine (registry tether.lm.rollout.precision.PRECISIONS), independent of the
    trainer."""
    logit_noise: float = 0.0
    """Engine logit noise s: adds s * std(logits) * N(0, 1) per call, keyed on the batch (a stand-in for
    batch-variant kernels; not a function of the weights); 0 = off. Calibrate with tether.lm.dcmdp.mismatch."""
    logprobs: Literal["auto", "sampler", "recompute"] = "auto"
    """Engine log-probs: from the decode loop (sampler), or from a full forward of the engine's own weights
    (recompute: in fp32 bit-identical to the trainer, an exact on-policy control); auto = recompute for fp32 only."""
    backend: Literal["auto", "native", "hf"] = "auto"
    """Engine backend: native KV-cached TinyLM path (Llama/Qwen2 layouts), hf (transformers forward), or auto."""
    compile: bool = False
    """Decode with a torch.compile'd fixed-shape step (native backend only): 1.15-1.35x faster sampling after a
    compile of ~10-20 s per process (4-5 s with a warm inductor cache) and one more when the batch or prompt
    shape first changes; worth it for runs longer than a few minutes (docs/results/lm-engine.md)."""

    def __post_init__(self) -> None:
        check(self.group_size >= 2, "rollout.group_size", self.group_size, "an integer >= 2")
        check(self.prompts_per_step >= 1, "rollout.prompts_per_step", self.prompts_per_step, "an integer >= 1")
        check(self.max_new_tokens >= 1, "rollout.max_new_tokens", self.max_new_tokens, "an integer >= 1")
        check_rate(self.temperature, "rollout.temperature", usual=(0.05, 5.0))
        check(0 < self.top_p <= 1, "rollout.top_p", self.top_p, "a float in (0, 1]")
        check(self.logit_noise >= 0, "rollout.logit_noise", self.logit_noise, "a float >= 0")
        check(self.precision in PRECISIONS, "rollout.precision", self.precision, f"one of {PRECISIONS.names()}")
        check(not (self.compile and self.backend == "hf"), "rollout.compile", self.compile,
              "False with rollout.backend='hf' (the compiled step runs the native backend only)")


@dataclass(frozen=True)
class AlgoSpec:
    reward: str = "correct"
    """Reward (registry tether.lm.grpo.rewards.REWARDS) or a '+' mixture z-scored per term, e.g. lp+avg_ent."""
    advantage: str = "group_zscore"
    """Advantage estimator: group_zscore (GRPO), group_mean (Dr. GRPO), rloo."""
    adv_eps: float = 1e-6
    """Epsilon added to the group std (group_zscore)."""
    filter_zero_std: bool = False
    """Drop groups whose rewards are all equal (zero advantage) before the update."""
    loss: str = "ppo_clip"
    """Policy loss (registry tether.lm.grpo.losses.LOSSES)."""
    clip_low: float = 0.2
    """PPO ratio clip below 1 (epsilon_low)."""
    clip_high: float = 0.2
    """PPO ratio clip above 1 (epsilon_high; 0.28 = DAPO clip-higher)."""
    dual_clip: float = 0.0
    """Dual-clip bound c (> 1) on the loss of negative-advantage tokens, -c A (verl's clip_ratio_c = 3; 0 = off);
    matters with several PPO epochs or minibatches, where ratios drift far from 1."""
    aggregation: str = "token_mean_global"
    """Loss aggregation over tokens: token_mean_global, token_mean_local, seq_mean_token_mean, seq_sum_const."""
    kl_coef: float = 0.0
    """beta of the per-token KL to the frozen initial policy, added to the loss (0 = no reference model)."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    """KL estimator (tether.core.kl)."""

    def __post_init__(self) -> None:
        check(all(part in REWARDS for part in self.reward.split("+")), "algo.reward", self.reward,
              f"a reward or a '+' mixture of rewards from {REWARDS.names()}")
        check(self.advantage in ADVANTAGES, "algo.advantage", self.advantage, f"one of {ADVANTAGES.names()}")
        check(self.loss in LOSSES, "algo.loss", self.loss, f"one of {LOSSES.names()}")
        check(self.aggregation in AGGREGATION_MODES, "algo.aggregation", self.aggregation,
              f"one of {AGGREGATION_MODES}")
        check(0 <= self.clip_low < 1, "algo.clip_low", self.clip_low, "a float in [0, 1)")
        check(self.clip_high >= self.clip_low, "algo.clip_high", self.clip_high,
              f"a float >= algo.clip_low={self.clip_low}")
        check(self.kl_coef >= 0, "algo.kl_coef", self.kl_coef, "a float >= 0")
        check(self.dual_clip == 0 or self.dual_clip > 1, "algo.dual_clip", self.dual_clip, "0 (off) or a float > 1")


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
    compile: bool = False
    """torch.compile the policy's transformer blocks for the trainer's forward/backward (TinyLM policies only;
    `TinyLM.compile_blocks`): 1.1-1.25x faster forward+backward after ~20 s of compiling per graph variant, so
    for long runs. Same math; sums round differently (gradients agree with eager to ~1e-5)."""

    def __post_init__(self) -> None:
        check_rate(self.lr, "optim.lr", usual=(1e-8, 1e-1))
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
        check(math.isfinite(self.temperature) and self.temperature >= 0, "eval.temperature", self.temperature,
              "a finite float >= 0")


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
    correction: CorrectionConfig = field(default_factory=CorrectionConfig)
    """Train/inference mismatch correction(s): none, TIS, MIS, IcePop, DCMDP (arXiv:2606.08779)."""
    reward_opts: RewardOptions = field(default_factory=RewardOptions)
    """Parameters of the parametrised intrinsic rewards."""
    detect: DetectorConfig = field(default_factory=DetectorConfig)
    """Collapse / hacking / verbosity / format detectors (log diag/*; optional early stop)."""
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
    """Standard recipe: GT-reward GRPO of the shipped medium base on running sums (cut to 60 steps in the grids
    of docs/results/intrinsic.md and dcmdp.md); 100 steps of 16 prompts x G=8, lr 3e-5, clip-higher 0.28;
    ~2 CPU-minutes on one core."""
    return TrainConfig(preset="gsm-tiny", steps=100, model=ModelSpec(path="base:medium"),
                       rollout=RolloutSpec(prompts_per_step=16, group_size=8, max_new_tokens=40),
                       algo=AlgoSpec(clip_high=0.28), optim=OptimSpec(lr=3e-5),
                       eval=EvalSpec(every=25, n_prompts=256))


PRESETS = {"smoke": smoke, "gsm-tiny": gsm_tiny}
