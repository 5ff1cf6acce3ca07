"""Networks for flow policies: the velocity field, the one-step policy and the critic ensemble.

Owns parameterised modules and the EMA target update. Knows nothing about losses, sampling
schedules or training; those live in `losses.py`, `sampler.py` and the algorithm files.

Sizes follow FQL/QAM (arXiv:2502.02538, arXiv:2601.14234): MLPs with GELU and Xavier-uniform
init; the critic has LayerNorm after every hidden layer and the actor has none by default.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, *, layer_norm: bool = False) -> nn.Sequential:
    """GELU MLP with Xavier-uniform weights and zero biases (the FQL/QAM init)."""
    layers: list[nn.Module] = []
    d = in_dim
    for w in hidden:
        layers.append(nn.Linear(d, w))
        if layer_norm:
            layers.append(nn.LayerNorm(w))
        layers.append(nn.GELU())
        d = w
    layers.append(nn.Linear(d, out_dim))
    for m in layers:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


class VelocityField(nn.Module):
    """v(s, x, t): velocity of the flow over a flattened action chunk x of size D = act_dim * H.

    The raw scalar t is concatenated to the input (no Fourier features), as in the official code.
    Leading batch dimensions are free: s (..., S), x (..., D), t (..., 1) or a float.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...], *, layer_norm: bool = False):
        super().__init__()
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.net = mlp(obs_dim + action_dim + 1, hidden, action_dim, layer_norm=layer_norm)

    def forward(self, obs: Tensor, x: Tensor, t: Tensor | float) -> Tensor:
        if not torch.is_tensor(t):
            t = torch.full_like(x[..., :1], float(t))
        obs = obs.expand(*x.shape[:-1], self.obs_dim)
        t = t.expand(*x.shape[:-1], 1)
        return self.net(torch.cat([obs, x, t], dim=-1))  # (..., D)


class OneStepPolicy(nn.Module):
    """mu(s, z): FQL's one-step policy mapping noise z straight to an action chunk (arXiv:2502.02538)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...], *, layer_norm: bool = False):
        super().__init__()
        self.obs_dim = obs_dim
        self.net = mlp(obs_dim + action_dim, hidden, action_dim, layer_norm=layer_norm)

    def forward(self, obs: Tensor, z: Tensor) -> Tensor:
        obs = obs.expand(*z.shape[:-1], self.obs_dim)
        return self.net(torch.cat([obs, z], dim=-1))  # (..., D)


class EnsembleLinear(nn.Module):
    """N independent linear layers applied as one batched matmul: (N, B, i) -> (N, B, o)."""

    def __init__(self, n: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(n, 1, out_dim))
        bound = math.sqrt(6.0 / (in_dim + out_dim))  # Xavier uniform, per member
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class CriticEnsemble(nn.Module):
    """N_Q critics Q_j(s, a) stacked into one set of (N, ...) weights, evaluated in one pass.

    Each hidden layer is Linear -> LayerNorm (per member affine) -> GELU. Returns (N, B).
    Stacking replaces `torch.func.stack_module_state` + vmap: same math, no functional-call plumbing.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...], n: int, *, layer_norm: bool = True):
        super().__init__()
        self.n, self.obs_dim, self.layer_norm = n, obs_dim, layer_norm
        dims = (obs_dim + action_dim, *hidden)
        self.linears = nn.ModuleList(EnsembleLinear(n, i, o) for i, o in zip(dims[:-1], dims[1:], strict=True))
        self.ln_w = nn.ParameterList(nn.Parameter(torch.ones(n, 1, w)) for w in hidden)
        self.ln_b = nn.ParameterList(nn.Parameter(torch.zeros(n, 1, w)) for w in hidden)
        self.head = EnsembleLinear(n, dims[-1], 1)

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        # fp32 even under bf16 autocast (which then speeds up the flows only): a sparse-reward Q sits near
        # -1 / (1 - gamma) = -100, where bf16's spacing is 0.5 and its ~0.4 % relative error is ~0.1, while the Q
        # differences between nearby actions the critic must learn are ~0.05 (docs/results/trqam.md section 6.6)
        with torch.autocast(obs.device.type, enabled=False):
            obs = obs.float().expand(*action.shape[:-1], self.obs_dim)
            h = torch.cat([obs, action.float()], dim=-1).reshape(-1, obs.shape[-1] + action.shape[-1])  # (B, S+D)
            h = h.unsqueeze(0).expand(self.n, *h.shape)  # (N, B, S+D)
            for lin, w, b in zip(self.linears, self.ln_w, self.ln_b, strict=True):
                h = lin(h)
                if self.layer_norm:
                    h = F.layer_norm(h, h.shape[-1:]) * w + b
                h = F.gelu(h)
            q = self.head(h).squeeze(-1)  # (N, B)
        return q.reshape(self.n, *action.shape[:-1])


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float | Tensor) -> None:
    """Polyak average: target <- tau * online + (1 - tau) * target (tau = 0.005 in FQL/QAM/TRQAM).

    Foreach ops over all tensors. `tau` may be a 0-d tensor on the device (0 for a skipped step): then it is
    target += tau * (online - target), because `_foreach_lerp_` takes a tensor weight as a Python scalar (a host
    sync on a GPU)."""
    targets, sources = list(target.parameters()), list(online.parameters())
    if isinstance(tau, Tensor):
        diff = torch._foreach_sub(sources, targets)
        torch._foreach_mul_(diff, tau)
        torch._foreach_add_(targets, diff)
    else:
        torch._foreach_lerp_(targets, sources, tau)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy with requires_grad off: EMA targets and frozen references."""
    import copy

    out = copy.deepcopy(module)
    for p in out.parameters():
        p.requires_grad_(False)
    return out
