"""A compiled decode step for the native rollout engine (`RolloutEngine(compile=True)`).

Why: at the sizes trained on a CPU (0.1M-5M parameters, batch 128-256), an eager decode step is ~40 small
kernels. Profiled at d=128 / 4 layers / batch 256, the matmuls were 45 % of the step; the attention's
broadcast products and reductions were 28 %; norms, rotary, copies and casts were the rest. `torch.compile`
(inductor) fuses everything between the matmuls into a few generated C++ loops
(docs/results/lm-engine.md, "Compiled decode and compiled training blocks").

Inductor's code is much faster when shapes do not change from step to step. So this path attends over *all*
S cache slots with an additive mask (-inf on left padding and on slots not written yet), where the eager
`Block.step` slices the cache to the t+1 written slots. Compiled with a per-step slice length, the step ran at
0.2-0.4x the speed of this fixed-shape version (measured while choosing it). The current token's key and value
enter as a separate attention term and are written to the cache after the step, so the compiled graph does not
mutate its inputs. Rows are never dropped from the batch mid-generation (a new batch size would cost a
recompile), as in HF `generate`.

Owns: the fixed-shape cache and step. Not owned here: sampling and the decode loop (`sampler.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tether.lm.model.tinylm import ModelConfig, TinyLM


@dataclass
class StaticKVCache:
    """Keys/values (L, B, Hkv, S, Dh) and an additive key mask (B, S): 0 where a slot may be attended."""

    k: Tensor
    v: Tensor
    bias: Tensor

    @classmethod
    def empty(cls, cfg: ModelConfig, batch: int, slots: int, dtype: torch.dtype) -> StaticKVCache:
        shape = (cfg.n_layers, batch, cfg.n_kv_heads, slots, cfg.head_dim)
        # zeros, not empty: unwritten slots are read (and masked); garbage NaNs would survive a -inf mask
        return cls(torch.zeros(shape, dtype=dtype), torch.zeros(shape, dtype=dtype),
                   torch.full((batch, slots), float("-inf"), dtype=dtype))

    def store_prompt(self, layer: int, k: Tensor, v: Tensor) -> None:
        """Write the prompt's keys/values k, v (B, Hkv, P, Dh) into slots [0, P)."""
        P = k.shape[2]
        self.k[layer, :, :, :P] = k
        self.v[layer, :, :, :P] = v

    def mask_prompt(self, mask: Tensor) -> None:
        """Open the prompt's real tokens (mask (B, P) True) to every later query; padding stays at -inf."""
        self.bias[:, : mask.shape[1]].masked_fill_(mask, 0.0)

    def append(self, slot: int, k: Tensor, v: Tensor) -> None:
        """Store one step's keys/values k, v (L, B, Hkv, Dh) at `slot` and open it."""
        self.k[:, :, :, slot] = k
        self.v[:, :, :, slot] = v
        self.bias[:, slot] = 0.0


def decode_step(model: TinyLM, tok: Tensor, pos: Tensor, cache_k: Tensor, cache_v: Tensor,
                bias: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One fixed-shape decode position for tokens (B,) at positions (B,), attending over every cache slot.

    Returns float32 logits (B, V) and this position's keys and values (L, B, Hkv, Dh), to store with
    `StaticKVCache.append`.
    """
    c = model.cfg
    B, Hkv, rep, Dh = tok.shape[0], c.n_kv_heads, c.n_heads // c.n_kv_heads, c.head_dim
    x = model.embed(tok)[:, None]                                                      # (B, 1, d)
    cos = model.rope_cos[pos].to(x.dtype)[:, None, None]                               # (B, 1, 1, Dh)
    sin = model.rope_sin[pos].to(x.dtype)[:, None, None]
    new_k, new_v = [], []
    for i, blk in enumerate(model.blocks):
        q, k, v = blk._qkv(x, cos, sin)                        # q (B, H, 1, Dh); k, v (B, Hkv, 1, Dh)
        q = q.reshape(B, Hkv, rep, Dh)
        s_cache = (q[:, :, :, None] * cache_k[i][:, :, None]).sum(-1)                 # (B, Hkv, rep, S)
        s_self = (q * k).sum(-1, keepdim=True)                                         # (B, Hkv, rep, 1)
        scores = torch.cat([s_cache * Dh ** -0.5 + bias[:, None, None], s_self * Dh ** -0.5], -1)
        p = torch.softmax(scores, -1)
        S = cache_k.shape[3]
        att = (p[..., :S, None] * cache_v[i][:, :, None]).sum(-2) + p[..., S:] * v    # (B, Hkv, rep, Dh)
        x = blk._finish(x, att.reshape(B, c.n_heads, 1, Dh))
        new_k.append(k[:, :, 0])
        new_v.append(v[:, :, 0])
    return model.head(x[:, 0]).float(), torch.stack(new_k), torch.stack(new_v)


def compile_step():
    """A fresh `torch.compile` of `decode_step` (one per engine; shapes that change get dynamic kernels)."""
    return torch.compile(decode_step, fullgraph=True)


class CompiledStepper:
    """The decode loop's stepper (see `sampler._decode_loop`) for a compiled `decode_step`."""

    def __init__(self, step_fn, model: TinyLM, ids: Tensor, mask: Tensor, max_new: int,
                 dtype: torch.dtype) -> None:
        if model.cfg.n_experts:
            raise ValueError("rollout compile does not support mixture-of-experts models (its route recording "
                             "is a Python side effect); set compile=False")
        self.fn, self.model, self.P = step_fn, model, ids.shape[1]
        self.cache = StaticKVCache.empty(model.cfg, ids.shape[0], self.P + max_new, dtype)
        self.first_logits = model.prefill(ids, mask, self.cache)     # each distinct prompt runs once
        self.next_pos = mask.sum(-1)                                                    # (B,)

    def __call__(self, tok: Tensor, t: int) -> Tensor:
        c = self.cache
        logits, k, v = self.fn(self.model, tok, self.next_pos + t, c.k, c.v, c.bias)
        c.append(self.P + t, k, v)
        return logits

    def compact(self, keep: Tensor) -> bool:
        return False
