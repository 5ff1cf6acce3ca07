"""tether.core: the math and plumbing every family shares (torch + stdlib + numpy only; no family imports).

The public names below load on first access, so importing one light module (`tether.core.config`,
`tether.core.cli`) does not import torch: `tether --help` stays fast.
"""

import importlib

_PUBLIC = {
    "ConfigError": "tether.core.config",
    "Dual": "tether.core.duals",
    "DualState": "tether.core.duals",
    "Metrics": "tether.core.metrics",
    "NonFiniteError": "tether.core.stability",
    "NonFiniteGuard": "tether.core.stability",
    "Registry": "tether.core.registry",
    "RunConfig": "tether.core.rundir",
    "RunDir": "tether.core.rundir",
    "StopRequested": "tether.core.signals",
    "Timer": "tether.core.timing",
    "aggregate": "tether.core.masked",
    "check": "tether.core.config",
    "clean_stale": "tether.core.checkpoint",
    "clip_grad_norm": "tether.core.stability",
    "from_dict": "tether.core.config",
    "generator": "tether.core.seeding",
    "graceful_stop": "tether.core.signals",
    "kl_categorical": "tether.core.kl",
    "kl_estimate": "tether.core.kl",
    "kl_k1": "tether.core.kl",
    "kl_k2": "tether.core.kl",
    "kl_k3": "tether.core.kl",
    "latest_checkpoint": "tether.core.checkpoint",
    "load_checkpoint": "tether.core.checkpoint",
    "load_latest": "tether.core.checkpoint",
    "masked_mean": "tether.core.masked",
    "masked_sum": "tether.core.masked",
    "masked_var": "tether.core.masked",
    "masked_whiten": "tether.core.masked",
    "override": "tether.core.config",
    "parse_args": "tether.core.config",
    "rng_state": "tether.core.checkpoint",
    "save_checkpoint": "tether.core.checkpoint",
    "seed_everything": "tether.core.seeding",
    "set_rng_state": "tether.core.checkpoint",
    "to_dict": "tether.core.config",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'tether.core' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__() -> list[str]:
    return __all__
