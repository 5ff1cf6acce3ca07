"""The policy protocol: a trainable causal LM that scores given token ids.

`Policy.token_stats(ids, mask, start=P)` returns the per-token log-probs of `ids[:, P:]` under the model
(temperature-scaled), plus any requested logit statistics computed in the same forward from the full
next-token distribution (entropy, collision probability, self-certainty): intrinsic rewards need them and
materialising (B, T, V) logits outside the policy would cost a second forward.

Two implementations share the protocol: `TinyPolicy` (tether's own `TinyLM`) and `tether.lm.model.hf.HFPolicy`
(any `transformers` causal LM, optionally with LoRA). Both export their weights to the rollout engine.
Not owned here: sampling (`sampler.py`) and the losses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor, nn

from tether.core.registry import Registry
from tether.lm.model.tinylm import ModelConfig, TinyLM

# Per-token statistics of the next-token distribution, from logits (..., V) in float32 -> (...).
LOGIT_STATS: Registry[Callable[[Tensor, Tensor], Tensor]] = Registry("logit statistic")


@LOGIT_STATS.register("entropy")
def entropy(logits: Tensor, logp_all: Tensor) -> Tensor:
    """Shannon entropy H(p) = -sum_v p log p, in nats (>= 0)."""
    return -(logp_all.exp() * logp_all).sum(-1)


@LOGIT_STATS.register("collision")
def collision(logits: Tensor, logp_all: Tensor) -> Tensor:
    """Collision probability CP(p) = sum_v p(v)^2, in (0, 1]; Renyi-2 entropy is -log CP."""
    return (2 * logp_all).exp().sum(-1)


@LOGIT_STATS.register("self_certainty")
def self_certainty(logits: Tensor, logp_all: Tensor) -> Tensor:
    """INTUITOR self-certainty, up to the constant log V: logsumexp(z) - mean(z) (arXiv:2505.19590)."""
    return torch.logsumexp(logits, -1) - logits.mean(-1)


def score_tokens(logits: Tensor, targets: Tensor, *, temperature: float = 1.0,
                 stats: tuple[str, ...] = ()) -> dict[str, Tensor]:
    """Log-prob of `targets` (B, T) under softmax(logits / temperature), plus requested statistics.

    Args:
        logits: (B, T, V) raw logits predicting `targets`; upcast to float32 here.
        targets: (B, T) long.
    Returns:
        {"logp": (B, T)} (differentiable) and one (B, T) entry per name in `stats` (see LOGIT_STATS; no gradient),
        all on the same temperature-scaled distribution.
    """
    z = logits.float() / temperature if temperature != 1.0 else logits.float()
    logp_all = torch.log_softmax(z, dim=-1)                                         # (B, T, V)
    out = {"logp": logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)}
    # statistics are read, never differentiated (rewards, logging): no graph keeps their (B, T, V) temporaries
    with torch.no_grad():
        for name in stats:
            out[name] = LOGIT_STATS.get(name)(z, logp_all)
    return out


def score_hidden(hidden: Tensor, head: nn.Module, targets: Tensor, *, temperature: float = 1.0,
                 stats: tuple[str, ...] = (), max_logits: int = 1 << 24) -> dict[str, Tensor]:
    """`score_tokens` of `head(hidden)`, a block of rows at a time, so at most `max_logits` float32 logits (64 MB) and
    their log-softmax exist at once outside autograd: the (B, T, V) tensors of a 49K vocabulary never do, and the
    statistics' temporaries are freed block by block (under autograd each block's log-softmax is kept for the
    backward, as one call would keep it).

    Args:
        hidden: (B, T, H) the hidden states that predict `targets` (after the final norm).
        head: the LM head, (..., H) -> (..., V).
        targets: (B, T) long.
    Returns:
        as `score_tokens`.
    """
    B, T, _ = hidden.shape
    vocab = head.weight.shape[0]
    rows = max(1, max_logits // max(1, T * vocab))
    parts = [score_tokens(head(hidden[i:i + rows]), targets[i:i + rows], temperature=temperature, stats=stats)
             for i in range(0, B, rows)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


class Policy(Protocol):
    """A trainable policy that scores token ids. `module` holds every trainable parameter."""

    module: nn.Module
    max_seq_len: int

    def token_stats(self, ids: Tensor, mask: Tensor, *, start: int, temperature: float = 1.0,
                    stats: tuple[str, ...] = ()) -> dict[str, Tensor]:
        """Scores of ids[:, start:] given the prefix: {"logp": (B, L - start), <stat>: (B, L - start)}.

        Args:
            ids: (B, L) long; prompts left-padded to width `start`, completions right-padded after it.
            mask: (B, L) bool, True on real tokens (pads are never attended to).
        """
        ...

    def export_native(self) -> tuple[ModelConfig, dict[str, Tensor]] | None:
        """Weights in `TinyLM` layout for the fast rollout engine, or None if the architecture has none."""
        ...


class TinyPolicy:
    """`Policy` over tether's own `TinyLM`."""

    def __init__(self, model: TinyLM) -> None:
        self.module = model
        self.max_seq_len = model.cfg.max_seq_len

    def token_stats(self, ids: Tensor, mask: Tensor, *, start: int, temperature: float = 1.0,
                    stats: tuple[str, ...] = ()) -> dict[str, Tensor]:
        if start < 1:
            raise ValueError(f"start={start}: the first scored token needs at least one token of context")
        logits = self.module.continuation_logits(ids, mask, start)                   # (B, L - start, V)
        return score_tokens(logits, ids[:, start:], temperature=temperature, stats=stats)

    def export_native(self) -> tuple[ModelConfig, dict[str, Tensor]]:
        return self.module.cfg, self.module.state_dict()
