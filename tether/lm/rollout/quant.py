"""Weight fake-quantisers for deployment-precision rollout engines (DCMDP's "heterogeneous paradigm").

Owns pure functions `w -> w_hat` that round a float32 weight matrix to what a low-precision deployment would
store, returned in float32 (fake quantisation: the arithmetic stays float, the *values* are the deployed
ones). Does not own which modules are quantised or the compute dtype: see `tether.lm.rollout.precision`.

Error bounds (tested), for a weight row with absmax m:
  int8 per-channel     scale = m/127, |w - w_hat| <= scale/2
  int4 group-wise      per group of `group` inputs, scale = g_absmax/7, |w - w_hat| <= scale/2
  fp8 e4m3 per-channel scale = m/448 (e4m3's largest finite value), relative error <= 2^-4 for normal
                       values, absolute error <= 2^-10 * scale in the subnormal range (3 mantissa bits)
  bf16 / fp16 casts    relative error <= 2^-8 / 2^-11 (round to nearest even)
Per-channel means per output row of an nn.Linear weight (out, in), as in FlashRL / vLLM's INT8 and FP8
weight-only paths.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["quant_int8", "quant_int4", "quant_fp8_e4m3", "cast_roundtrip", "FP8_E4M3_MAX"]

FP8_E4M3_MAX = 448.0


def _row_scale(w: Tensor, qmax: float) -> Tensor:
    absmax = w.abs().amax(dim=-1, keepdim=True)                 # (out, 1)
    # an all-zero row would give scale 0 and 0/0 = nan; any positive scale quantises it to exactly 0
    return torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))


def quant_int8(w: Tensor) -> Tensor:
    """Symmetric int8 with one scale per output row: round(w / s) in [-127, 127], times s."""
    s = _row_scale(w, 127.0)                                     # (out, 1)
    return (w / s).round().clamp(-127, 127) * s


def quant_int4(w: Tensor, group: int = 32) -> Tensor:
    """Symmetric int4 with one scale per `group` consecutive inputs of each row (GPTQ/AWQ-style layout)."""
    out, inp = w.shape
    pad = (-inp) % group
    wp = torch.nn.functional.pad(w, (0, pad)).reshape(out, -1, group)   # (out, n_groups, group)
    s = _row_scale(wp, 7.0)                                              # (out, n_groups, 1)
    q = (wp / s).round().clamp(-8, 7) * s
    return q.reshape(out, -1)[:, :inp]


def quant_fp8_e4m3(w: Tensor) -> Tensor:
    """e4m3 (float8_e4m3fn) with one scale per output row mapping the row's absmax to 448."""
    s = _row_scale(w, FP8_E4M3_MAX)                              # (out, 1)
    return (w / s).to(torch.float8_e4m3fn).to(w.dtype) * s


def cast_roundtrip(w: Tensor, dtype: torch.dtype) -> Tensor:
    """w rounded to `dtype` and back (the values a bf16/fp16 engine holds)."""
    return w.to(dtype).to(w.dtype)
