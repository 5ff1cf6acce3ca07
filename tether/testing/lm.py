"""Tiny language-model fixtures shared by the rollout-engine tests (eager and compiled)."""

from __future__ import annotations

import torch
from torch import Tensor

from tether.lm.model import ModelConfig, TinyLM
from tether.lm.policy import TinyPolicy
from tether.lm.tokenizer import pad_left

EOS, PAD = 1, 0


def tiny_policy(seed: int = 0, vocab: int = 12, n_kv: int = 4) -> TinyPolicy:
    """A random 2-layer TinyLM (d=32, 4 query heads, n_kv key/value heads) with a 40-token context."""
    torch.manual_seed(seed)
    return TinyPolicy(TinyLM(ModelConfig(vocab_size=vocab, d_model=32, n_layers=2, n_heads=4, n_kv_heads=n_kv,
                                         d_ff=64, max_seq_len=40)))


def ragged_prompts() -> tuple[Tensor, Tensor]:
    """Four left-padded prompts of lengths 4, 2, 3 and 6: ids and mask (4, 6)."""
    return pad_left([[2, 5, 6, 7], [2, 8], [2, 9, 9], [2, 4, 5, 6, 7, 8]], pad_id=PAD)
