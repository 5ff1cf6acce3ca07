"""Numeric precisions of the rollout engine: fp32, bf16, fp16, fp8 (e4m3), int8 and int4 weights.

`PRECISIONS` maps a name to an in-place transform of the engine's private copy of the weights, applied after
every `sync_from(policy)`; it returns the compute dtype. The trainer never sees these weights: this is
DCMDP's heterogeneous paradigm (arXiv:2606.08779): train in fp32, roll out and deploy at low cost.

  fp32  the trainer's numerics (up to kernel reduction order); bf16 weights and activations in bfloat16
  fp16  weights and activations in float16 (logits upcast to fp32 before the softmax)
  fp8   e4m3 weights with one scale per output channel; fp32 compute (weight-only, as FlashRL / vLLM fp8)
  int8  symmetric int8 weights, one scale per output channel; fp32 compute
  int4  symmetric int4 weights, one scale per group of 32 inputs; fp32 compute
Only the projection matrices of the transformer blocks (every nn.Linear weight, MoE experts included) are
quantised; embeddings (tied with the LM head) and norms stay fp32, as deployments usually keep them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from tether.core.registry import Registry
from tether.lm.rollout.quant import quant_fp8_e4m3, quant_int4, quant_int8

__all__ = ["PRECISIONS", "quantise_linear_weights"]

# In-place weight transforms applied to the engine's copy after every sync; returns the compute dtype.
PRECISIONS: Registry[Callable[[nn.Module], torch.dtype]] = Registry("rollout precision")


@PRECISIONS.register("fp32")
def _fp32(module: nn.Module) -> torch.dtype:
    """Same numerics as the fp32 trainer up to reduction order: the no-mismatch control (docs/results/dcmdp.md)."""
    return torch.float32


@PRECISIONS.register("bf16")
def _bf16(module: nn.Module) -> torch.dtype:
    """bf16 weights and activations; logits are upcast to fp32 before the softmax."""
    module.to(torch.bfloat16)
    return torch.bfloat16


def quantise_linear_weights(module: nn.Module, quant: Callable[[Tensor], Tensor]) -> int:
    """Replace every 2-D weight of every nn.Linear (and stacked expert weights, 3-D) by quant(weight)."""
    n = 0
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "embed" in name or "lm_head" in name or p.dim() < 2:
                continue
            w = p.data.float()
            flat = w.reshape(-1, w.shape[-1])  # stacked experts (E, out, in) quantise per (expert, out) row
            p.data.copy_(quant(flat).reshape(w.shape).to(p.dtype))
            n += 1
    return n


@PRECISIONS.register("fp16")
def _fp16(module: nn.Module) -> torch.dtype:
    """float16 weights and activations; logits are upcast to fp32 before the softmax."""
    module.to(torch.float16)
    return torch.float16


@PRECISIONS.register("fp8")
def _fp8(module: nn.Module) -> torch.dtype:
    """e4m3 weights, per-output-channel scales, fp32 compute."""
    quantise_linear_weights(module, quant_fp8_e4m3)
    return torch.float32


@PRECISIONS.register("int8")
def _int8(module: nn.Module) -> torch.dtype:
    """int8 weights, per-output-channel scales, fp32 compute."""
    quantise_linear_weights(module, quant_int8)
    return torch.float32


@PRECISIONS.register("int4")
def _int4(module: nn.Module) -> torch.dtype:
    """int4 weights, one scale per group of 32 inputs, fp32 compute."""
    quantise_linear_weights(module, quant_int4)
    return torch.float32
