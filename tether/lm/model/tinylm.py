"""A small decoder-only transformer (Llama/Qwen2 layout) with a preallocated KV cache.

Pre-norm blocks with RMSNorm, rotary positions (HF `rotate_half` convention, so Qwen2/Llama weights load
unchanged), grouped-query attention, a SwiGLU MLP and tied embeddings; ~0.1M-5M parameters through
`ModelConfig`. q/k/v and gate/up projections are fused into one matmul each: fewer, larger kernels is what
matters on a CPU at these sizes (docs/results/lm-engine.md). Weights are stored as safetensors plus a
JSON config.

Owns the math of one forward: full-sequence with a causal + padding mask, prompts shared by several
continuations (GRPO groups, `TinyLM.continuation_logits`), or one cached decode step.
Not owned here: sampling (`sampler.py`) and log-prob/entropy bookkeeping (`policy.py`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tether.core.config import check
from tether.lm.model.moe import MoEMLP


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 31
    """Number of token ids (the char tokenizer has 31)."""
    d_model: int = 64
    """Residual width d."""
    n_layers: int = 2
    """Number of transformer blocks."""
    n_heads: int = 4
    """Query heads; head dim = d_model / n_heads."""
    n_kv_heads: int = 4
    """Key/value heads (grouped-query attention when < n_heads; must divide n_heads)."""
    d_ff: int = 192
    """Hidden width of the SwiGLU MLP."""
    max_seq_len: int = 128
    """Longest prompt + completion the model accepts (size of the rotary table and of the KV cache)."""
    rope_theta: float = 10000.0
    """Rotary base frequency."""
    norm_eps: float = 1e-6
    """RMSNorm epsilon."""
    qkv_bias: bool = False
    """Bias on the q/k/v projection (Qwen2 has one, Llama does not)."""
    n_experts: int = 0
    """Mixture-of-experts MLP with this many experts per block (0 = dense SwiGLU MLP; 4-8 for MoE)."""
    top_k: int = 2
    """Experts per token of the MoE MLP (top-k routing)."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_seq_len"):
            check(getattr(self, name) >= 1, name, getattr(self, name), "an integer >= 1")
        check(self.d_model % self.n_heads == 0, "d_model", self.d_model, f"a multiple of n_heads={self.n_heads}")
        check(self.n_heads % self.n_kv_heads == 0, "n_kv_heads", self.n_kv_heads,
              f"a divisor of n_heads={self.n_heads}")
        check((self.d_model // self.n_heads) % 2 == 0, "n_heads", self.n_heads, "a value giving an even head dim")
        check(self.n_experts == 0 or 1 <= self.top_k <= self.n_experts, "top_k", self.top_k,
              f"an integer in [1, n_experts={self.n_experts}]")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


def rope_tables(cfg: ModelConfig, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """cos (S, Dh) and sign-folded sin (S, Dh) so that rope(x) = x*cos + roll(x, Dh/2)*sin."""
    dh = cfg.head_dim
    inv_freq = 1.0 / cfg.rope_theta ** (torch.arange(0, dh, 2, dtype=torch.float32) / dh)  # (Dh/2,)
    freqs = torch.outer(torch.arange(cfg.max_seq_len, dtype=torch.float32), inv_freq)      # (S, Dh/2)
    cos = torch.cat([freqs.cos(), freqs.cos()], dim=-1)
    # HF: x*cos + rotate_half(x)*sin with rotate_half(x) = cat(-x2, x1) = roll(x, Dh/2) * [-1.., +1..]
    sin = torch.cat([-freqs.sin(), freqs.sin()], dim=-1)
    return cos.to(dtype), sin.to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (..., Dh) rotated by per-position cos/sin broadcastable to x."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), sin)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        qkv_out = (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim
        self.attn_norm = nn.Parameter(torch.ones(cfg.d_model))
        self.qkv = nn.Linear(cfg.d_model, qkv_out, bias=cfg.qkv_bias)
        self.o = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)
        self.mlp_norm = nn.Parameter(torch.ones(cfg.d_model))
        if cfg.n_experts:
            self.moe = MoEMLP(cfg.d_model, cfg.d_ff, cfg.n_experts, cfg.top_k)
        else:
            self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=False)
            self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def _qkv(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, L, d) -> q (B, H, L, Dh), k and v (B, Hkv, L, Dh), rope applied to q and k in one op."""
        c = self.cfg
        h = F.rms_norm(x, (c.d_model,), self.attn_norm, c.norm_eps)
        qkv = self.qkv(h).view(x.shape[0], x.shape[1], c.n_heads + 2 * c.n_kv_heads, c.head_dim)
        # under bf16 autocast qkv is bf16 while the tables are fp32: keep attention in the autocast dtype
        qk = apply_rope(qkv[:, :, : c.n_heads + c.n_kv_heads], cos.to(qkv.dtype), sin.to(qkv.dtype))
        q = qk[:, :, : c.n_heads].transpose(1, 2)
        k = qk[:, :, c.n_heads:].transpose(1, 2)
        v = qkv[:, :, c.n_heads + c.n_kv_heads:].transpose(1, 2)
        return q, k, v

    def _finish(self, x: Tensor, att: Tensor) -> Tensor:
        """Attention output (B, H, L, Dh) -> residual stream after the output projection and the MLP."""
        c = self.cfg
        x = x + self.o(att.transpose(1, 2).reshape(x.shape[0], x.shape[1], c.n_heads * c.head_dim))
        h = F.rms_norm(x, (c.d_model,), self.mlp_norm, c.norm_eps)
        if c.n_experts:
            return x + self.moe(h)
        gate, up = self.gate_up(h).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, attn_mask: Tensor | None) -> Tensor:
        q, k, v = self._qkv(x, cos, sin)
        gqa = self.cfg.n_kv_heads != self.cfg.n_heads
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=attn_mask is None,
                                             enable_gqa=gqa)
        return self._finish(x, att)

    def prefill(self, x: Tensor, cos: Tensor, sin: Tensor, attn_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Full forward over the prompt x (B, P, d); also returns its keys and values (B, Hkv, P, Dh) for a cache."""
        q, k, v = self._qkv(x, cos, sin)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=attn_mask is None,
                                             enable_gqa=self.cfg.n_kv_heads != self.cfg.n_heads)
        return self._finish(x, att), k, v

    def extend(self, x: Tensor, cos: Tensor, sin: Tensor, past_k: Tensor, past_v: Tensor,
               attn_mask: Tensor) -> Tensor:
        """Full forward over x (B, C, d) continuing past keys/values (B, Hkv, P, Dh), with gradient through both;
        attn_mask (B, 1, C, P + C) covers [past, x]."""
        q, k, v = self._qkv(x, cos, sin)
        att = F.scaled_dot_product_attention(q, torch.cat([past_k, k], 2), torch.cat([past_v, v], 2),
                                             attn_mask=attn_mask, enable_gqa=self.cfg.n_kv_heads != self.cfg.n_heads)
        return self._finish(x, att)

    def step(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache, layer: int, t: int) -> Tensor:
        """One decode position: x (B, 1, d); writes k/v at cache slot t and attends over slots [0, t].

        The cache is laid out (S, Dh, B*Hkv) so that the batch is the innermost, vectorised dimension: with
        one query per row, attention is B*H dot products of length Dh, and as batched matmuls (bmm, SDPA)
        each tiny product pays a per-matrix overhead that costs 3-5x more than these two broadcasts.
        """
        c = self.cfg
        B, H, Hkv, Dh = x.shape[0], c.n_heads, c.n_kv_heads, c.head_dim
        rep = H // Hkv
        h = F.rms_norm(x[:, 0], (c.d_model,), self.attn_norm, c.norm_eps)
        qkv = self.qkv(h).view(B, H + 2 * Hkv, Dh)
        qk = apply_rope(qkv[:, : H + Hkv], cos, sin)                       # (B, H+Hkv, Dh)
        cache.k[layer][t] = qk[:, H:].reshape(B * Hkv, Dh).t()
        cache.v[layer][t] = qkv[:, H + Hkv:].reshape(B * Hkv, Dh).t()
        q = qk[:, :H].reshape(B * Hkv, rep, Dh).permute(2, 0, 1).contiguous()   # (Dh, B*Hkv, rep)
        keys, vals = cache.k[layer][: t + 1, :, :, None], cache.v[layer][: t + 1, :, :, None]  # (t+1, Dh, B*Hkv, 1)
        s = (keys * q).sum(1).view(t + 1, B, H)                              # (t+1, B, H) query-key dots
        p = torch.softmax(torch.add(cache.bias[: t + 1], s, alpha=Dh ** -0.5), dim=0)
        att = (vals * p.view(t + 1, 1, B * Hkv, rep)).sum(0)                 # (Dh, B*Hkv, rep)
        return self._finish(x, att.view(Dh, B, H).permute(1, 2, 0).unsqueeze(2))


@dataclass
class KVCache:
    """Preallocated keys/values (S, Dh, B*Hkv) per layer plus an additive key mask (S, B, 1).

    Batch-innermost layout: see `Block.step`. Slot s holds position s of the left-padded sequence.
    """

    k: list[Tensor]
    v: list[Tensor]
    bias: Tensor

    @classmethod
    def empty(cls, cfg: ModelConfig, batch: int, slots: int, dtype: torch.dtype) -> KVCache:
        shape = (slots, cfg.head_dim, batch * cfg.n_kv_heads)
        # every slot is written (the prompt by `prefill`, slot t by `step`) before it is read: no zero fill
        return cls([torch.empty(shape, dtype=dtype) for _ in range(cfg.n_layers)],
                   [torch.empty(shape, dtype=dtype) for _ in range(cfg.n_layers)],
                   torch.zeros((slots, batch, 1), dtype=dtype))

    def store_prompt(self, layer: int, k: Tensor, v: Tensor) -> None:
        """Write the prompt's keys/values k, v (B, Hkv, P, Dh) into slots [0, P)."""
        B, Hkv, P, Dh = k.shape
        self.k[layer][:P] = k.permute(2, 3, 0, 1).reshape(P, Dh, B * Hkv)
        self.v[layer][:P] = v.permute(2, 3, 0, 1).reshape(P, Dh, B * Hkv)

    def mask_prompt(self, mask: Tensor) -> None:
        """Hide the left padding of the prompt mask (B, P) from every later query."""
        self.bias[: mask.shape[1], :, 0].masked_fill_(~mask.t(), float("-inf"))


def run_blocks(model: TinyLM, x: Tensor, cos: Tensor, sin: Tensor, attn: Tensor | None) -> Tensor:
    """The transformer blocks over embeddings x (B, L, d): everything `TinyLM.compile_blocks` hands to inductor."""
    for blk in model.blocks:
        x = blk(x, cos, sin, attn)
    return x


def run_shared_blocks(model: TinyLM, xp: Tensor, xc: Tensor, rows: Tensor, rope_p: tuple[Tensor, Tensor],
                      rope_c: tuple[Tensor, Tensor], attn_p: Tensor | None, attn_c: Tensor) -> tuple[Tensor, Tensor]:
    """The blocks over U distinct prompts xp (U, P, d) and B continuations xc (B, C, d), continuation b
    following prompt rows[b]: each prompt runs once, and its keys/values are gathered per continuation at every
    layer. Returns (xp, xc) after the last block; the values are those of `run_blocks` on the B joined rows."""
    for blk in model.blocks:
        xp, k, v = blk.prefill(xp, *rope_p, attn_p)
        xc = blk.extend(xc, *rope_c, k[rows], v[rows], attn_c)
    return xp, xc


def distinct_prompts(ids: Tensor, mask: Tensor, max_frac: float = 1.0) -> tuple[Tensor, Tensor, Tensor | None]:
    """The distinct rows of left-padded prompts ids/mask (B, P): (ids_u, mask_u, rows) with rows (B,) the index
    of each row's prompt in ids_u, or (ids, mask, None) when no two rows share a prompt or when more than
    max_frac * B prompts are distinct (sharing a few coincidental repeats costs more than it saves)."""
    uniq, rows = torch.unique(ids.masked_fill(~mask, -1), dim=0, return_inverse=True)
    if len(uniq) == len(ids) or len(uniq) > max_frac * len(ids):
        return ids, mask, None
    first = torch.full((len(uniq),), len(ids)).scatter_reduce(0, rows, torch.arange(len(ids)), "amin")
    return ids[first], mask[first], rows


def positions_from_mask(mask: Tensor) -> Tensor:
    """Position ids (B, L) for left-padded rows: 0 at each row's first real token (pads get 0)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def attention_mask(mask: Tensor) -> Tensor:
    """Causal & key-padding boolean mask (B, 1, L, L); the diagonal stays on so pad queries never see NaN."""
    L = mask.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    eye = torch.eye(L, dtype=torch.bool)
    return ((causal & mask[:, None, None, :]) | eye)


class TinyLM(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.Parameter(torch.ones(cfg.d_model))
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()
        self._compiled_blocks = self._compiled_shared = None

    def reset_parameters(self) -> None:
        # GPT-2 style: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layers).
        for name, p in self.named_parameters():
            if p.dim() in (2, 3):  # 3-D: stacked MoE expert weights
                residual = name.endswith(("o.weight", "down.weight", "moe.down"))
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * self.cfg.n_layers) if residual else 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def head(self, h: Tensor) -> Tensor:
        """Final norm + tied unembedding: (..., d) -> logits (..., V)."""
        return F.linear(F.rms_norm(h, (self.cfg.d_model,), self.norm, self.cfg.norm_eps), self.embed.weight)

    def rope_at(self, pos: Tensor) -> tuple[Tensor, Tensor]:
        """Rotary tables cos, sin (B, L, 1, Dh) at position ids pos (B, L), in the embeddings' dtype."""
        dtype = self.embed.weight.dtype
        return self.rope_cos[pos, None].to(dtype), self.rope_sin[pos, None].to(dtype)

    def hidden(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """Residual stream (B, L, d) before the final norm. `mask` (B, L) bool marks real tokens."""
        B, L = ids.shape
        if L > self.cfg.max_seq_len:
            raise ValueError(f"sequence length {L} exceeds model max_seq_len={self.cfg.max_seq_len}")
        if mask is None or bool(mask.all()):
            cos, sin, attn = *self.rope_at(torch.arange(L)), None                           # (L, 1, Dh)
        else:
            (cos, sin), attn = self.rope_at(positions_from_mask(mask)), attention_mask(mask)  # (B, L, 1, Dh)
        return (self._compiled_blocks or run_blocks)(self, self.embed(ids), cos, sin, attn)

    def compile_blocks(self) -> None:
        """Run the full-sequence blocks (training forward/backward, scoring) through `torch.compile`.

        The blocks only: the padding-mask branch and the embedding stay eager, so the graph has no
        data-dependent control flow. Inductor fuses the norms, rotary, SwiGLU and their backward between the
        matmuls: 1.13-1.24x faster forward+backward on padded batches of 128 x ~40 tokens (d=64 and 128), no
        gain on unpadded ones, after a compile of ~20 s per variant (grad / no-grad, padded / unpadded) plus one
        when the sequence length first changes (docs/results/lm-engine.md, "Compiled decode and compiled
        training blocks").
        """
        # a function of the model, not a bound method: a deepcopy of this module must run its own blocks
        self._compiled_blocks = torch.compile(run_blocks)
        self._compiled_shared = torch.compile(run_shared_blocks)

    def forward(self, ids: Tensor, mask: Tensor | None = None, *, logits_from: int = 0) -> Tensor:
        """Logits (B, L - logits_from, V) for positions logits_from..L-1."""
        return self.head(self.hidden(ids, mask)[:, logits_from:])

    def continuation_logits(self, ids: Tensor, mask: Tensor, start: int) -> Tensor:
        """Logits (B, L - start, V) predicting ids[:, start:] from everything before them.

        ids/mask (B, L): left-padded prompts of width `start`, continuations right-padded after them. When rows
        share prompts (GRPO's G >= 2 completions per prompt: at most B/2 distinct ones), each distinct prompt is
        run once (`run_shared_blocks`): same values as `forward` up to float rounding, with U*P + B*C instead of
        B*(P + C) token-forwards.
        """
        if not 1 <= start <= ids.shape[1]:
            raise ValueError(f"start={start}: expected 1 <= start <= sequence length {ids.shape[1]}")
        p_ids, p_mask, rows = distinct_prompts(ids[:, :start], mask[:, :start], max_frac=0.5)
        if rows is None or start == ids.shape[1]:
            return self(ids, mask, logits_from=start - 1)[:, :-1]
        if ids.shape[1] > self.cfg.max_seq_len:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds model max_seq_len={self.cfg.max_seq_len}")
        rope_p = self.rope_at(positions_from_mask(p_mask))                                 # (U, P, 1, Dh)
        rope_c = self.rope_at(positions_from_mask(mask)[:, start:])                        # (B, C, 1, Dh)
        attn_p = None if bool(p_mask.all()) else attention_mask(p_mask)                   # (U, 1, P, P)
        attn_c = attention_mask(mask)[:, :, start:]                                       # (B, 1, C, L)
        xp, xc = (self._compiled_shared or run_shared_blocks)(self, self.embed(p_ids), self.embed(ids[:, start:]),
                                                              rows, rope_p, rope_c, attn_p, attn_c)
        # position start-1 (each prompt's last token) predicts the first continuation token
        return self.head(torch.cat([xp[rows, -1:], xc[:, :-1]], 1))

    def prefill(self, ids: Tensor, mask: Tensor, cache) -> Tensor:
        """Run the left-padded prompts ids/mask (B, P) into `cache` (anything with store_prompt / mask_prompt,
        e.g. `KVCache`); returns last-position logits (B, V).

        Rows that share a prompt (GRPO's G samples per prompt) run it once and get copies of its keys/values.
        """
        u_ids, u_mask, rows = distinct_prompts(ids, mask)
        cos, sin = self.rope_at(positions_from_mask(u_mask))                              # (U, P, 1, Dh)
        attn = None if bool(u_mask.all()) else attention_mask(u_mask)
        x = self.embed(u_ids)
        for i, blk in enumerate(self.blocks):
            x, k, v = blk.prefill(x, cos, sin, attn)
            if rows is not None:
                k, v = k[rows], v[rows]
            cache.store_prompt(i, k, v)
        cache.mask_prompt(mask)
        logits = self.head(x[:, -1]).float()
        return logits if rows is None else logits[rows]

    def decode(self, tok: Tensor, pos: Tensor, cache: KVCache, t: int) -> Tensor:
        """One cached step: tokens (B,) at positions (B,) written to cache slot t; returns logits (B, V)."""
        x = self.embed(tok)[:, None]                                                      # (B, 1, d)
        cos = self.rope_cos[pos].to(x.dtype)[:, None, :]                                  # (B, 1, Dh)
        sin = self.rope_sin[pos].to(x.dtype)[:, None, :]
        for i, blk in enumerate(self.blocks):
            x = blk.step(x, cos, sin, cache, i, t)
        return self.head(x[:, 0]).float()

    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(dataclasses.asdict(self.cfg), indent=2))
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(d / "model.safetensors"))

    @classmethod
    def load(cls, directory: str | Path) -> TinyLM:
        from safetensors.torch import load_file
        d = Path(directory)
        if not (d / "config.json").exists():
            raise FileNotFoundError(f"{d} has no config.json; expected a directory written by TinyLM.save")
        model = cls(ModelConfig(**json.loads((d / "config.json").read_text())))
        model.load_state_dict(load_file(str(d / "model.safetensors")))
        return model

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
