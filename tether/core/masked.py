"""Masked reductions and named loss-aggregation modes.

Owns how a per-token tensor (B, T) with a validity mask becomes a scalar. The normalizer is an explicit
argument because it is where GRPO variants differ and where gradient-accumulation bugs hide: the trainer
knows the global token count across micro-batches; a micro-batch does not.

Shapes are checked and never broadcast by accident: `x` and `mask` must have identical shapes.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["aggregate_normalizer", "masked_sum", "masked_mean", "masked_var", "masked_whiten", "aggregate",
           "AGGREGATION_MODES"]

AggregationMode = Literal["token_mean_global", "token_mean_local", "seq_mean_token_mean", "seq_sum_const"]
AGGREGATION_MODES: tuple[str, ...] = AggregationMode.__args__


def _check(x: Tensor, mask: Tensor) -> Tensor:
    if x.shape != mask.shape:
        raise ValueError(f"x has shape {tuple(x.shape)} but mask has {tuple(mask.shape)}; they must match")
    return mask.to(x.dtype)


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of x where mask is true. Masked entries may hold inf/nan; they never leak."""
    m = _check(x, mask)
    x = torch.where(mask.bool(), x, torch.zeros_like(x))
    return (x * m).sum() if dim is None else (x * m).sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of x over mask-true entries (0 where no entry is valid, never nan)."""
    m = _check(x, mask)
    count = m.sum() if dim is None else m.sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of all mask-true entries of x (Bessel-corrected when `unbiased`)."""
    mean = masked_mean(x, mask)
    count = _check(x, mask).sum()
    sq = masked_sum((x - mean).square(), mask)
    denom = count - 1 if unbiased else count
    return sq / denom.clamp(min=1)


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """(x - mean) / std over mask-true entries; masked entries are returned as 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(mask.bool(), out, torch.zeros_like(out))


def aggregate(per_token: Tensor, mask: Tensor, *, mode: str, normalizer: float | Tensor | None = None) -> Tensor:
    """Reduce a per-token loss (B, T) to a scalar.

    Modes (paper names in brackets):
      token_mean_global   sum over valid tokens / `normalizer`, the valid-token count of the *whole* batch
                          across micro-batches and ranks [DAPO arXiv:2503.14476 "token-level"; required for
                          1x8 == 8x1 gradient accumulation]. `normalizer` is mandatory.
      token_mean_local    sum / valid tokens of this micro-batch [naive token mean; accumulation-dependent].
      seq_mean_token_mean mean over sequences of each sequence's token mean, times B / `normalizer`
                          (number of sequences in the whole batch; defaults to B) [GRPO arXiv:2402.03300].
      seq_sum_const       sum over tokens / `normalizer`, a constant such as B_total * max_len
                          [Dr. GRPO arXiv:2503.20783]. `normalizer` is mandatory.
    """
    m = _check(per_token, mask)
    if per_token.dim() != 2:
        raise ValueError(f"aggregate expects (B, T) tensors, got shape {tuple(per_token.shape)}")
    if mode in ("token_mean_global", "seq_sum_const"):
        if normalizer is None:
            raise ValueError(f"aggregation mode {mode!r} needs an explicit normalizer")
        return masked_sum(per_token, mask) / normalizer
    if mode == "token_mean_local":
        return masked_sum(per_token, mask) / m.sum().clamp(min=1)
    if mode == "seq_mean_token_mean":
        per_seq = masked_mean(per_token, mask, dim=1)                      # (B,)
        n_seq = per_token.shape[0] if normalizer is None else normalizer
        return per_seq.sum() / n_seq
    raise ValueError(f"unknown aggregation mode {mode!r}; expected one of {list(AGGREGATION_MODES)}")


def aggregate_normalizer(mode: str, mask: Tensor, *, max_tokens: int) -> float | None:
    """The `normalizer` of `aggregate(mode=...)` for a whole minibatch `mask` (B, T), computed once before it is
    split into micro-batches, so that accumulating micro-batch losses equals the full-batch loss (1x8 == 8x1).

    `max_tokens` is the completion cap (the constant of seq_sum_const); token_mean_local needs none (None)."""
    if mode not in AGGREGATION_MODES:
        raise ValueError(f"unknown aggregation mode {mode!r}; expected one of {list(AGGREGATION_MODES)}")
    per_mode = {"token_mean_global": lambda: float(mask.sum().clamp(min=1)),
                "seq_mean_token_mean": lambda: float(mask.shape[0]),
                "seq_sum_const": lambda: float(mask.shape[0] * max_tokens),
                "token_mean_local": lambda: None}
    return per_mode[mode]()
