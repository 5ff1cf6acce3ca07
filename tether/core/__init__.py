"""tether.core: the math and plumbing every family shares (torch + stdlib + numpy only; no family imports)."""

from tether.core.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from tether.core.config import ConfigError, check, from_dict, override, parse_args, to_dict
from tether.core.duals import Dual, DualState
from tether.core.kl import kl_categorical, kl_estimate, kl_k1, kl_k2, kl_k3
from tether.core.masked import aggregate, masked_mean, masked_sum, masked_var, masked_whiten
from tether.core.metrics import Metrics
from tether.core.registry import Registry
from tether.core.rundir import RunConfig, RunDir
from tether.core.seeding import generator, seed_everything
from tether.core.stability import NonFiniteError, NonFiniteGuard, clip_grad_norm
from tether.core.timing import Timer

__all__ = [
    "ConfigError", "Dual", "DualState", "Metrics", "NonFiniteError", "NonFiniteGuard", "Registry", "RunConfig", "RunDir", "Timer",
    "aggregate", "check", "clip_grad_norm", "from_dict", "generator", "kl_categorical", "kl_estimate", "kl_k1",
    "kl_k2", "kl_k3", "latest_checkpoint", "load_checkpoint", "masked_mean", "masked_sum", "masked_var",
    "masked_whiten", "override", "parse_args", "rng_state", "save_checkpoint", "seed_everything", "set_rng_state",
    "to_dict",
]
