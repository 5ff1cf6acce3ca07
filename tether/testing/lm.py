"""Tiny language-model fixtures shared by the engine and trainer tests (eager, compiled, HF)."""

from __future__ import annotations

import torch
from torch import Tensor

from tether.core.config import override
from tether.lm.grpo.config import TrainConfig, smoke
from tether.lm.grpo.rewards import REWARDS
from tether.lm.model.policy import TinyPolicy
from tether.lm.model.tinylm import ModelConfig, TinyLM
from tether.lm.model.tokenizer import pad_left

EOS, PAD = 1, 0


def tiny_policy(seed: int = 0, vocab: int = 12, n_kv: int = 4) -> TinyPolicy:
    """A random 2-layer TinyLM (d=32, 4 query heads, n_kv key/value heads) with a 40-token context."""
    torch.manual_seed(seed)
    return TinyPolicy(TinyLM(ModelConfig(vocab_size=vocab, d_model=32, n_layers=2, n_heads=4, n_kv_heads=n_kv,
                                         d_ff=64, max_seq_len=40)))


def ragged_prompts() -> tuple[Tensor, Tensor]:
    """Four left-padded prompts of lengths 4, 2, 3 and 6: ids and mask (4, 6)."""
    return pad_left([[2, 5, 6, 7], [2, 8], [2, 9, 9], [2, 4, 5, 6, 7, 8]], pad_id=PAD)


def grouped_batch(G: int = 3, width: int = 5, vocab: int = 20) -> tuple[Tensor, Tensor, int]:
    """Three ragged left-padded prompts x G right-padded continuations (lengths 1..width), rows shuffled so
    groups are not contiguous: ids and mask (3G, 4 + width) and the prompt width 4."""
    prompts, pmask = pad_left([[2, 5, 6, 7], [2, 9], [2, 4, 4]], pad_id=PAD)
    gen = torch.Generator().manual_seed(1)
    comp = torch.randint(4, vocab, (3 * G, width), generator=gen)
    cmask = torch.arange(width) < torch.randint(1, width + 1, (3 * G, 1), generator=gen)
    ids = torch.cat([prompts.repeat_interleave(G, 0), comp.masked_fill(~cmask, PAD)], 1)
    mask = torch.cat([pmask.repeat_interleave(G, 0), cmask], 1)
    perm = torch.randperm(3 * G, generator=gen)
    return ids[perm], mask[perm], prompts.shape[1]


def length_reward(batch) -> Tensor:
    """Test-only reward with signal even for a random model: completion length."""
    return batch.mask.sum(-1).float()


def tiny_train_config(**over: str) -> TrainConfig:
    """`smoke()` shrunk for tests: a random TinyLM (d=32), 2 steps of 4 prompts x G=4, 12 new tokens, the length
    reward (registered as "test_length"), lr 1e-2, no periodic evaluation; `over` are CLI-style overrides."""
    if "test_length" not in REWARDS:
        REWARDS.register("test_length")(length_reward)
    base = {"steps": "2", "model.path": "", "model.d_model": "32", "model.d_ff": "64", "rollout.prompts_per_step": "4",
            "rollout.group_size": "4", "rollout.max_new_tokens": "12", "algo.reward": "test_length",
            "optim.lr": "1e-2", "eval.every": "0", "eval.n_prompts": "4", "eval.k": "2", "samples_every": "1"}
    return override(smoke(), {**base, **over})
