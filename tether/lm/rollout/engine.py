"""The rollout engine: batched KV-cached sampling, kept separate from the trained policy.

`RolloutEngine` owns its own copy of the weights, refreshed by `sync_from(policy)`, and its own numeric
precision (the `PRECISIONS` registry of `precision.py`): the trainer/engine
mismatch studied in DCMDP (arXiv:2606.08779; docs/results/dcmdp.md) exists only if the two are distinct code paths.

Two backends: `native` runs `TinyLM` (any Llama/Qwen2-layout HF model exports its weights to it) with a
preallocated cache and fused projections; `hf` drives a `transformers` model through its own
`DynamicCache` (used for LoRA/peft models and unsupported architectures). The native backend runs each
distinct prompt through the prefill once, however many rows share it (GRPO's G samples per prompt), and can
decode with a torch.compile'd step (`compiled.py`). The decode loop is the only Python per-token overhead.
Sampling uses one uniform per row per step (inverse CDF), so the same generator state gives the same tokens
in a full-recompute reference.

`logit_noise = s > 0` adds, at every decode step, s * std_v(z) * eps to each row's logits z, eps ~ N(0, 1) drawn from
a key mixed from the call's generator and the batch's prompt ids: a stand-in for batch-variant kernels (split-K
matmuls, attention and reductions whose order depends on the batch size and composition, so the same prompt gets
slightly different logits in every call). Unlike the PRECISIONS transforms it is not a function of the weights,
so the uncorrected update is not the straight-through gradient of any deployed model (docs/results/dcmdp.md).
`noisy_logits` reproduces the noise of a call from its `Rollout.noise_key` on full-sequence logits.

Returned log-probs are the engine's "processed" log-probs: of the sampled token under the distribution it
was actually drawn from (after temperature and top-p). Not owned here: rewards and training.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from tether.lm.model.tinylm import KVCache, TinyLM, positions_from_mask
from tether.lm.rollout.compiled import CompiledStepper, compile_step
from tether.lm.rollout.precision import PRECISIONS


@dataclass
class Rollout:
    tokens: Tensor
    """(B, T) long sampled ids; pad after a row's EOS."""
    logp: Tensor
    """(B, T) float32 engine log-prob of each sampled token (after temperature/top-p); 0 where masked."""
    mask: Tensor
    """(B, T) bool, True on completion tokens up to and including EOS."""
    entropy: Tensor | None = None
    """(B, T) float32 entropy of the sampling distribution, when requested; 0 where masked."""
    noise_key: int | None = None
    """The logit-noise key of this call (None without logit noise); `noisy_logits` reproduces its noise."""

    @property
    def lengths(self) -> Tensor:
        return self.mask.sum(-1)


def sample_next(logits: Tensor, u: Tensor | None, *, temperature: float, top_p: float,
                entropy: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
    """Draw one token per row by inverse CDF.

    Args:
        logits: (B, V) float32. u: (B, 1) uniforms in [0, 1); ignored (may be None) when temperature == 0.
    Returns:
        tokens (B,), their log-probs (B,) and, if asked, the entropy (B,) of the distribution sampled from.
        temperature == 0 is greedy; its log-probs and entropy are those of the temperature-1 softmax.
    """
    if temperature == 0.0:
        logp_all = torch.log_softmax(logits, -1)
        tok = logits.argmax(-1)
    else:
        z = logits / temperature if temperature != 1.0 else logits
        if top_p < 1.0:
            z = _top_p_filter(z, top_p)
        logp_all = torch.log_softmax(z, -1)                                            # (B, V)
        cdf = logp_all.exp().cumsum(-1)
        # scale u by the total mass so rounding can never push it past the last category
        tok = (cdf < u * cdf[:, -1:]).sum(-1).clamp_(max=logits.shape[-1] - 1)
    lp = logp_all.gather(-1, tok[:, None])[:, 0]
    ent = -(logp_all.exp() * logp_all).nan_to_num_(0.0).sum(-1) if entropy else None
    return tok, lp, ent


def noise_key(ids: Tensor, generator: torch.Generator | None) -> int:
    """The noise key of one call: a fresh draw from the call's generator mixed with the batch composition."""
    draw = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    weights = torch.arange(1, ids.numel() + 1, dtype=torch.long).reshape(ids.shape)
    composition = int((ids.long() * weights).sum()) * 1_000_003 + ids.shape[0]       # batch size and content
    return (draw * 2_654_435_761 + composition) % (2**62)


def step_noise(key: int, t: int, shape: tuple[int, int]) -> Tensor:
    """eps (B, V) ~ N(0, 1) of decode step t of the call `key` (drawn for all B rows, as the uniforms are)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed((key + 7919 * t) % (2**62)))


def add_logit_noise(logits: Tensor, eps: Tensor, scale: float) -> Tensor:
    """logits + scale * std_v(logits) * eps; the std is treated as a constant (the noise is exogenous). (..., V)."""
    return logits + scale * logits.detach().float().std(-1, keepdim=True) * eps


def noisy_logits(logits: Tensor, key: int, scale: float) -> Tensor:
    """The engine's noise of call `key` added to full-sequence logits (B, T, V) of its completions."""
    B, T, V = logits.shape
    eps = torch.stack([step_noise(key, t, (B, V)) for t in range(T)], 1)                 # (B, T, V)
    return add_logit_noise(logits, eps, scale)


def _top_p_filter(z: Tensor, top_p: float) -> Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (always at least one): -inf elsewhere."""
    sorted_z, idx = z.sort(-1, descending=True)
    probs = torch.softmax(sorted_z, -1)
    drop_sorted = probs.cumsum(-1) - probs >= top_p                                     # mass before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
    return z.masked_fill(drop, float("-inf"))


class RolloutEngine:
    """Samples completions with its own copy of the policy weights."""

    def __init__(self, *, precision: str = "fp32", backend: Literal["auto", "native", "hf"] = "auto",
                 logprobs: Literal["auto", "sampler", "recompute"] = "auto", compile: bool = False,
                 logit_noise: float = 0.0) -> None:
        PRECISIONS.get(precision)  # unknown names raise with the list of valid ones
        if not (logit_noise >= 0.0 and logit_noise == logit_noise):
            raise ValueError(f"logit_noise must be a float >= 0, got {logit_noise!r}")
        if backend not in ("auto", "native", "hf"):
            raise ValueError(f"backend must be 'auto', 'native' or 'hf', got {backend!r}")
        if logprobs not in ("auto", "sampler", "recompute"):
            raise ValueError(f"logprobs must be 'auto', 'sampler' or 'recompute', got {logprobs!r}")
        if compile and backend == "hf":
            raise ValueError("compile=True runs the native backend only; got backend='hf'")
        self.precision, self.backend = precision, backend
        # "recompute": return log-probs from a full-sequence forward of the engine's own weights (one extra
        # forward). In fp32 that is the trainer's computation bit for bit, so the fp32 engine is an exact
        # on-policy control (zero mismatch); "auto" uses it for fp32 only. "sampler": the decode loop's own.
        # With logit noise the sampled distribution is the noisy one: its log-probs come from the decode loop.
        self.logit_noise = float(logit_noise)
        if self.logit_noise and logprobs == "recompute":
            raise ValueError("logprobs='recompute' would drop the logit noise the tokens were drawn with; use "
                             "logprobs='sampler' or 'auto' with logit_noise > 0")
        self.recompute = not self.logit_noise and (
            logprobs == "recompute" or (logprobs == "auto" and precision == "fp32"))
        # compile: decode with a torch.compile'd fixed-shape step (compiled.py); native backend only
        self.compile = compile
        self._step_fn = None
        self.model: nn.Module | None = None
        self.kind: str | None = None
        self.dtype = torch.float32

    def sync_from(self, policy) -> None:
        """Copy the policy's current weights into the engine, then apply the engine precision."""
        native = policy.export_native() if self.backend != "hf" else None
        if native is None and self.backend == "native":
            raise ValueError("backend='native' but the policy's architecture has no TinyLM export")
        if native is None and self.compile:
            raise ValueError("compile=True needs the native backend, but this policy has no TinyLM export "
                             "(peft/LoRA or an unsupported architecture); use compile=False")
        if native is not None:
            cfg, state = native
            if self.kind != "native" or self.model.cfg != cfg:
                self.model, self.kind = TinyLM(cfg), "native"
            self.model.to(torch.float32).load_state_dict(state)
        else:
            if self.kind != "hf":
                self.model, self.kind = copy.deepcopy(policy.module), "hf"
            self.model.to(torch.float32).load_state_dict(policy.module.state_dict())
        self.model.eval().requires_grad_(False)
        self.dtype = PRECISIONS.get(self.precision)(self.model)

    @torch.inference_mode()
    def generate(self, ids: Tensor, mask: Tensor, *, max_new_tokens: int, eos_id: int, pad_id: int,
                 temperature: float = 1.0, top_p: float = 1.0, generator: torch.Generator | None = None,
                 entropy: bool = False) -> Rollout:
        """Sample up to `max_new_tokens` per row after the left-padded prompts ids/mask (B, P)."""
        if self.model is None:
            raise RuntimeError("RolloutEngine.generate called before sync_from(policy)")
        if not (temperature >= 0.0 and 0.0 < top_p <= 1.0 and max_new_tokens >= 1):
            raise ValueError(f"need temperature >= 0, 0 < top_p <= 1, max_new_tokens >= 1; got "
                             f"{temperature}, {top_p}, {max_new_tokens}")
        limit = self.model.cfg.max_seq_len if self.kind == "native" else _hf_max_len(self.model)
        if ids.shape[1] + max_new_tokens > limit:
            raise ValueError(f"prompt length {ids.shape[1]} + max_new_tokens {max_new_tokens} exceeds the "
                             f"model context {limit}; shorten the prompts or lower max_new_tokens")
        if self.kind == "native" and self.compile:
            if self._step_fn is None:
                self._step_fn = compile_step()
            step = CompiledStepper(self._step_fn, self.model, ids, mask, max_new_tokens, self.dtype)
        elif self.kind == "native":
            step = _NativeStepper(self.model, ids, mask, max_new_tokens, self.dtype)
        else:
            step = _HFStepper(self.model, ids, mask, max_new_tokens)
        key = noise_key(ids, generator) if self.logit_noise else None
        out = _decode_loop(step, ids.shape[0], max_new_tokens, eos_id, pad_id, temperature, top_p,
                           generator, entropy, noise=None if key is None else (key, self.logit_noise))
        out.noise_key = key
        if self.recompute and temperature > 0 and top_p == 1.0:  # top-p/greedy change the distribution sampled
            out.logp = self._rescore(ids, mask, out, temperature)
        return out

    def _rescore(self, ids: Tensor, mask: Tensor, out: Rollout, temperature: float) -> Tensor:
        """Log-probs (B, T) of the sampled tokens from one full-sequence forward of the engine's weights."""
        from tether.lm.model.policy import score_tokens

        full, full_mask = torch.cat([ids, out.tokens], 1), torch.cat([mask, out.mask], 1)
        start = ids.shape[1]
        if self.kind == "native":
            logits = self.model.continuation_logits(full, full_mask, start)
        else:
            logits = self.model(input_ids=full, attention_mask=full_mask.long()).logits[:, start - 1:-1]
        return score_tokens(logits, out.tokens, temperature=temperature)["logp"].masked_fill(~out.mask, 0.0)


def _decode_loop(step, B: int, T: int, eos_id: int, pad_id: int, temperature: float, top_p: float,
                 generator: torch.Generator | None, want_entropy: bool,
                 noise: tuple[int, float] | None = None) -> Rollout:
    """The per-token loop shared by both backends; `step(tok, t)` returns next logits for its live rows.

    `noise = (key, scale)` perturbs the logits of every step (`add_logit_noise`), drawn for all B rows.

    Finished rows are dropped from the stepper's batch once a quarter of them are done (HF `generate` keeps
    computing them). Uniforms are drawn for all B rows at every step, so the tokens do not depend on when
    rows are dropped.
    """
    tokens = torch.full((B, T), pad_id, dtype=torch.long)
    logps = torch.zeros((B, T), dtype=torch.float32)
    valid = torch.zeros((B, T), dtype=torch.bool)
    ents = torch.zeros((B, T), dtype=torch.float32) if want_entropy else None
    done = torch.zeros(B, dtype=torch.bool)
    rows = slice(None)                  # the stepper's rows: all of them, later a tensor of global row ids
    logits = step.first_logits
    for t in range(T):
        u = torch.rand((B, 1), generator=generator)[rows] if temperature > 0 else None
        if noise is not None:
            logits = add_logit_noise(logits, step_noise(noise[0], t, (B, logits.shape[-1]))[rows], noise[1])
        tok, lp, ent = sample_next(logits, u, temperature=temperature, top_p=top_p, entropy=want_entropy)
        finished = done[rows]                          # a view while rows is slice(None): read before done is written
        tok.masked_fill_(finished, pad_id)
        tokens[rows, t] = tok
        logps[rows, t] = lp.masked_fill_(finished, 0.0)
        valid[rows, t] = ~finished
        if ents is not None:
            ents[rows, t] = ent.masked_fill_(finished, 0.0)
        live = ~(finished | (tok == eos_id))
        done[rows] = ~live
        n_live = int(live.sum())
        if t + 1 == T or n_live == 0:
            T = t + 1
            break
        if n_live <= 0.75 * len(live) and step.compact(live.nonzero()[:, 0]):
            rows, tok = torch.arange(B)[rows][live], tok[live]
        logits = step(tok, t)
    return Rollout(tokens[:, :T], logps[:, :T], valid[:, :T], None if ents is None else ents[:, :T])


class _NativeStepper:
    def __init__(self, model: TinyLM, ids: Tensor, mask: Tensor, max_new: int, dtype: torch.dtype) -> None:
        self.model, self.P = model, ids.shape[1]
        self.cache = KVCache.empty(model.cfg, ids.shape[0], self.P + max_new, dtype)
        self.first_logits = model.prefill(ids, mask, self.cache)     # each distinct prompt runs once
        self.next_pos = mask.sum(-1)                                                    # (B,)

    def __call__(self, tok: Tensor, t: int) -> Tensor:
        return self.model.decode(tok, self.next_pos + t, self.cache, self.P + t)

    def compact(self, keep: Tensor) -> bool:
        """Keep only rows `keep` (indices into the current batch) in the cache."""
        c = self.model.cfg
        b = self.next_pos.shape[0]
        for kv in (self.cache.k, self.cache.v):
            for i, x in enumerate(kv):
                kv[i] = x.view(x.shape[0], c.head_dim, b, c.n_kv_heads)[:, :, keep].reshape(
                    x.shape[0], c.head_dim, len(keep) * c.n_kv_heads)
        self.cache.bias = self.cache.bias[:, keep]
        self.next_pos = self.next_pos[keep]
        return True


class _HFStepper:
    def __init__(self, model: nn.Module, ids: Tensor, mask: Tensor, max_new: int) -> None:
        from transformers import DynamicCache
        self.model, self.P = model, ids.shape[1]
        self.cache = DynamicCache()
        self.attn = torch.cat([mask.long(), torch.ones((ids.shape[0], max_new), dtype=torch.long)], dim=1)
        out = model(input_ids=ids, attention_mask=self.attn[:, : self.P], position_ids=positions_from_mask(mask),
                    past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        self.first_logits = out.logits[:, -1].float()
        self.next_pos = mask.sum(-1)

    def compact(self, keep: Tensor) -> bool:
        self.cache.batch_select_indices(keep)
        self.attn, self.next_pos = self.attn[keep], self.next_pos[keep]
        return True

    def __call__(self, tok: Tensor, t: int) -> Tensor:
        out = self.model(input_ids=tok[:, None], attention_mask=self.attn[:, : self.P + t + 1],
                         position_ids=(self.next_pos + t)[:, None], past_key_values=self.cache, use_cache=True,
                         logits_to_keep=1)
        return out.logits[:, -1].float()


def _hf_max_len(model: nn.Module) -> int:
    return int(getattr(model.config, "max_position_embeddings", 1 << 30))
