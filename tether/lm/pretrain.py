"""Supervised pretraining of base models with a controllable "logical prior" (docs/results/intrinsic.md, "Bases").

Next-token cross-entropy on generated task traces (completion tokens and EOS only; prompts are inputs).
Knobs: `steps` (under-training gives a weak prior), `error_rate` (fraction of traces with one arithmetic
slip carried to the answer) and `alignment` (erroneous traces made longer/noisier, unchanged, or terse and
confident). Writes the model (TinyLM.save or HF save_pretrained) plus `eval.json` with held-out and OOD
greedy accuracy, pass@8 and maj@8 to `out`. Uses the same scoring path as the GRPO trainer.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from tether.core.config import check, to_dict
from tether.core.masked import masked_mean
from tether.core.progress import progress
from tether.core.seeding import derive_seed, seed_everything
from tether.lm.grpo.evaluate import eval_problems, evaluate_split
from tether.lm.grpo.tasks import TASKS, make_task
from tether.lm.model.build import ModelSpec, build_policy
from tether.lm.model.tokenizer import CharTokenizer, pad_left
from tether.lm.rollout.engine import RolloutEngine


@dataclass(frozen=True)
class PretrainConfig:
    task: str = "running_sum"
    """Task whose traces form the corpus (running_sum, addition, modular_chain, linear_equation)."""
    difficulty: int = 2
    """Task difficulty knob."""
    steps: int = 1000
    """Optimizer steps (fewer = weaker prior)."""
    error_rate: float = 0.0
    """Fraction of corpus traces with an arithmetic slip (wrong answer)."""
    alignment: Literal["aligned", "neutral", "anti"] = "neutral"
    """How erroneous traces look: aligned (longer, noisier), neutral (unchanged), anti (terse, confident)."""
    check_rate: float = 0.0
    """Probability that each step of a correct trace is followed by a redundant check step (0 = none)."""
    batch_size: int = 64
    """Traces per step."""
    lr: float = 3e-3
    """Peak AdamW learning rate (linear warm-up over 5% of steps, cosine decay to 10%)."""
    max_new_tokens: int = 40
    """Completion cap used by the final evaluation."""
    eval_prompts: int = 256
    """Problems per split in the final evaluation."""
    out: str = ""
    """Output directory (default: runs/lm/pretrain-<time>)."""
    seed: int = 0
    """Seed of the corpus, the initialisation and the evaluation sampling."""
    model: ModelSpec = field(default_factory=ModelSpec)
    """Architecture and size of the base model."""

    def __post_init__(self) -> None:
        check(self.task.replace("-", "_") in TASKS, "task", self.task, f"one of {TASKS.names()}")
        check(0.0 <= self.error_rate <= 1.0, "error_rate", self.error_rate, "a float in [0, 1]")
        check(0.0 <= self.check_rate <= 1.0, "check_rate", self.check_rate, "a float in [0, 1]")
        check(self.steps >= 1 and self.batch_size >= 1, "steps", self.steps, "steps >= 1 and batch_size >= 1")


def corpus_batch(task, tok: CharTokenizer, rng: random.Random, n: int, *, error_rate: float, alignment: str,
                 check_rate: float = 0.0):
    """(ids (n, P+T), mask, start=P, target mask (n, T)) of n traces: prompt left-padded, completion+EOS
    right-padded."""
    traces = [task.corpus_trace(rng, error_rate=error_rate, alignment=alignment, check_rate=check_rate)
              for _ in range(n)]
    p_ids, p_mask = pad_left([tok.encode(p) for p, _, _ in traces], tok.pad_id)
    comps = [tok.encode(c, bos=False) + [tok.eos_id] for _, c, _ in traces]
    T = max(len(c) for c in comps)
    c_ids = torch.full((n, T), tok.pad_id, dtype=torch.long)
    c_mask = torch.zeros((n, T), dtype=torch.bool)
    for i, c in enumerate(comps):
        c_ids[i, : len(c)] = torch.tensor(c)
        c_mask[i, : len(c)] = True
    return torch.cat([p_ids, c_ids], 1), torch.cat([p_mask, c_mask], 1), p_ids.shape[1], c_mask


def lr_at(step: int, total: int, peak: float) -> float:
    warm = max(1, total // 20)
    if step < warm:
        return peak * (step + 1) / warm
    frac = (step - warm) / max(1, total - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def pretrain(cfg: PretrainConfig) -> dict[str, float]:
    """Train, save to `cfg.out` and return the final evaluation (also written to out/eval.json)."""
    seed_everything(cfg.seed)
    tok = CharTokenizer()
    task = make_task(cfg.task, cfg.difficulty)
    policy = build_policy(cfg.model, tok, seed=derive_seed(cfg.seed, "init"))
    opt = torch.optim.AdamW(policy.module.parameters(), lr=cfg.lr, weight_decay=0.01)
    rng = random.Random(derive_seed(cfg.seed, "corpus"))
    out = Path(cfg.out or f"runs/lm/pretrain-{time.strftime('%Y%m%d-%H%M%S')}")
    t0 = time.perf_counter()
    with progress(cfg.steps, f"pretrain {cfg.task}") as bar:
        for step in range(cfg.steps):
            ids, mask, start, tmask = corpus_batch(task, tok, rng, cfg.batch_size, error_rate=cfg.error_rate,
                                                   alignment=cfg.alignment, check_rate=cfg.check_rate)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg.steps, cfg.lr)
            loss = -masked_mean(policy.token_stats(ids, mask, start=start)["logp"], tmask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.module.parameters(), 1.0)
            opt.step()
            if step % 50 == 0 or step == cfg.steps - 1:
                bar.update(step + 1 - bar.n, loss=float(loss.detach()))
    train_s = time.perf_counter() - t0
    policy.module.eval()
    res = evaluate_base(policy, task, tok, cfg)
    res["train_seconds"] = round(train_s, 1)
    save_policy(policy, out)
    (out / "eval.json").write_text(json.dumps({"config": to_dict(cfg), "eval": res}, indent=2))
    print(f"saved {out}: " + " ".join(f"{k}={v:.3f}" for k, v in res.items()), flush=True)
    return res


def evaluate_base(policy, task, tok, cfg: PretrainConfig) -> dict[str, float]:
    engine = RolloutEngine()
    engine.sync_from(policy)
    res = {}
    for split in ("heldout", "ood"):
        m = evaluate_split(engine, tok, eval_problems(task, split, cfg.eval_prompts), k=8, temperature=1.0,
                           max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
        res.update({f"{split}/{k}": v for k, v in m.items()})
    return res


def save_policy(policy, out: Path) -> None:
    if hasattr(policy.module, "save"):
        policy.module.save(out)
    else:
        policy.module.save_pretrained(out)


def run(cfg: PretrainConfig) -> int:
    from tether.core.seeding import one_thread
    one_thread()
    pretrain(cfg)
    return 0
