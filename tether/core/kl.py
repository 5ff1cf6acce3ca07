"""Per-token KL estimators and the exact KL between categorical distributions.

Owns the three sample-based estimators of Schulman's note "Approximating KL Divergence" (2020) and the
exact categorical KL. Does not own where KL enters an objective (loss or reward): that is the trainer's
choice.

Convention, for every estimator: tokens x are sampled from the *current* policy p, `logp = log p(x)`,
`ref_logp = log q(x)`, and the estimand is KL(p || q) = E_{x~p}[log p(x) - log q(x)]. With
r = q(x)/p(x) (so log r = ref_logp - logp):

| name | per-sample value        | bias for KL(p||q)        | variance / sign                          |
|------|-------------------------|--------------------------|------------------------------------------|
| k1   | -log r                  | unbiased                 | high variance; negative on some samples  |
| k2   | (log r)^2 / 2           | biased (2nd-order exact) | low variance; always >= 0                |
| k3   | (r - 1) - log r         | unbiased                 | low variance when p ~ q; always >= 0     |

k2's expectation equals KL(p||q) up to O(|log r|^3); k3 is unbiased because E_p[r] = 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["kl_k1", "kl_k2", "kl_k3", "kl_estimate", "kl_categorical"]


def _check(logp: Tensor, ref_logp: Tensor) -> None:
    if logp.shape != ref_logp.shape:
        raise ValueError(f"logp has shape {tuple(logp.shape)} but ref_logp has {tuple(ref_logp.shape)}; "
                         "they must match (no broadcasting)")


def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k1 = log p(x) - log q(x), per token. Unbiased for KL(p||q) when x ~ p; high variance."""
    _check(logp, ref_logp)
    return logp - ref_logp


def kl_k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k2 = (log p(x) - log q(x))^2 / 2, per token. Non-negative, biased (exact to second order)."""
    _check(logp, ref_logp)
    return 0.5 * (logp - ref_logp).square()


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 = (r - 1) - log r with r = q(x)/p(x), per token. Unbiased and non-negative."""
    _check(logp, ref_logp)
    log_r = ref_logp - logp
    # expm1 keeps precision when p ~ q, where r - 1 is tiny and exp(log_r) - 1 would cancel.
    return torch.expm1(log_r) - log_r


_ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def kl_estimate(logp: Tensor, ref_logp: Tensor, *, value: str = "k3", grad: str | None = None) -> Tensor:
    """Per-token KL whose forward value comes from estimator `value` and whose gradient comes from `grad`.

    `grad=None` uses the same estimator for both. The split (value from one, gradient from another) is
    the straight-through trick: `v.detach() + g - g.detach()`. Example: value k3, gradient k2 is the
    low-variance gradient of KL(p||q) in the loss.
    """
    for name in (value, grad):
        if name is not None and name not in _ESTIMATORS:
            raise ValueError(f"unknown KL estimator {name!r}; expected one of {sorted(_ESTIMATORS)}")
    v = _ESTIMATORS[value](logp, ref_logp)
    if grad is None or grad == value:
        return v
    g = _ESTIMATORS[grad](logp, ref_logp)
    return v.detach() + g - g.detach()


def kl_categorical(logits_p: Tensor, logits_q: Tensor, dim: int = -1) -> Tensor:
    """Exact KL(p || q) between categorical distributions given by (unnormalised) logits.

    Args:
        logits_p, logits_q: same shape (..., V, ...); normalised along `dim` here.
    Returns:
        KL with `dim` reduced. +inf where p puts mass on a category q excludes (logit -inf); 0*log 0 = 0.
    """
    if logits_p.shape != logits_q.shape:
        raise ValueError(f"logits shapes differ: {tuple(logits_p.shape)} vs {tuple(logits_q.shape)}")
    logp = torch.log_softmax(logits_p, dim=dim)
    logq = torch.log_softmax(logits_q, dim=dim)
    p = logp.exp()
    # where p == 0 the term is 0 whatever q is (avoid 0 * (-inf - x) = nan)
    terms = torch.where(p > 0, p * (logp - logq), torch.zeros_like(p))
    return terms.sum(dim)
