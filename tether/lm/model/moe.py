"""A small mixture-of-experts SwiGLU MLP with top-k routing, and routing-flip counting.

Top-k routing is discontinuous: a tiny numeric difference between the trainer and a low-precision rollout
engine can flip which experts a token uses, a main source of train/inference mismatch for MoE models such as
Qwen3-30B-A3B (DCMDP's MoE model). `MoEMLP` routes each token to its top-k of E experts with softmax gates over
the selected logits (Mixtral, arXiv:2401.04088; top-1 uses Switch's gate, arXiv:2101.03961) and, when `record`
is on, keeps the chosen expert ids so the
trainer's and the engine's routes can be compared (`route_flip_frac`).

Experts are computed densely (every expert on every token, then gated): with E <= 8 tiny experts on a CPU this
is simpler and not slower than gathering tokens per expert. Stacked expert weights are 3-D parameters; the
weight quantisers treat each (expert, output row) as a channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MoEMLP", "route_flip_frac", "recording_routes", "route_flips"]


class MoEMLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int, n_experts: int, top_k: int) -> None:
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.gate_up = nn.Parameter(torch.empty(n_experts, 2 * d_ff, d_model))    # (E, 2F, d)
        self.down = nn.Parameter(torch.empty(n_experts, d_model, d_ff))           # (E, d, F)
        self.record = False
        self.routes: list[Tensor] = []
        nn.init.normal_(self.gate_up, std=0.02)
        nn.init.normal_(self.down, std=0.02)

    def forward(self, h: Tensor) -> Tensor:
        """h (..., d) -> (..., d)."""
        logits = self.router(h)                                                  # (..., E)
        top_v, top_i = logits.topk(self.top_k, dim=-1)                           # (..., k)
        if self.record:
            self.routes.append(top_i.detach())
        # top-1: a softmax over the one selected logit is the constant 1 and the router would get no gradient,
        # so the gate is the selected expert's probability under all E logits (Switch, arXiv:2101.03961)
        sel = torch.softmax(logits, -1).gather(-1, top_i) if self.top_k == 1 else torch.softmax(top_v, dim=-1)
        gates = torch.zeros_like(logits).scatter(-1, top_i, sel)                 # (..., E)
        gu = torch.einsum("...d,efd->...ef", h, self.gate_up)                    # (..., E, 2F)
        g, u = gu.chunk(2, dim=-1)
        y = torch.einsum("...ef,edf->...ed", F.silu(g) * u, self.down)           # (..., E, d)
        return (gates.unsqueeze(-1) * y).sum(-2)


class recording_routes:
    """Context manager: record the top-k expert ids of every MoE layer of `model` during its forwards."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, MoEMLP)]

    def __enter__(self) -> list[MoEMLP]:
        for m in self.layers:
            m.record, m.routes = True, []
        return self.layers

    def __exit__(self, *exc) -> None:
        for m in self.layers:
            m.record = False


def route_flip_frac(routes_a: list[Tensor], routes_b: list[Tensor], mask: Tensor) -> Tensor:
    """Fraction of (token, layer) pairs whose top-k expert *sets* differ.

    Args:
        routes_a, routes_b: per layer, (B, T, k) expert ids of the same tokens under two engines.
        mask: (B, T) bool tokens to count.
    """
    flips, total = torch.zeros(()), torch.zeros(())
    for a, b in zip(routes_a, routes_b, strict=True):
        same = (a.sort(-1).values == b.sort(-1).values).all(-1)                # (B, T)
        flips = flips + (~same & mask).sum()
        total = total + mask.sum()
    return flips / total.clamp(min=1)


@torch.no_grad()
def route_flips(model_a: nn.Module, model_b: nn.Module, ids: Tensor, mask: Tensor, count: Tensor) -> Tensor | None:
    """Routing-flip fraction between two copies of one MoE model (e.g. trainer vs low-precision engine).

    Both run a full-sequence forward on ids/mask (B, L); `count` (B, L) bool marks the positions whose routes
    are compared. Returns None when the models have no MoE layer.
    """
    with recording_routes(model_a) as la, recording_routes(model_b) as lb:
        if not la:
            return None
        model_a(ids, mask)
        model_b(ids, mask)
    return route_flip_frac([m.routes[0] for m in la], [m.routes[0] for m in lb], count)
