"""Where a flow run's tensors live: `--device cpu | cuda | cuda:N | auto`, resolved once and checked before any work.

Owns the name -> `torch.device` rule and its one-line errors. Every flow module creates its tensors on the
agent's device (`FlowAgent.device`); nothing else decides placement.
"""

from __future__ import annotations

import re

import torch

from tether.core.config import ConfigError

DEVICE_RE = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")
DEVICE_HELP = "'cpu', 'cuda', 'cuda:N' or 'auto' (cuda when a GPU is visible, else cpu)"


def check_device_name(name: str) -> None:
    """ConfigError unless `name` is one of DEVICE_HELP (the spelling only; availability is `resolve_device`'s)."""
    if not isinstance(name, str) or not DEVICE_RE.match(name):
        raise ConfigError(f"config field 'device': got {name!r}, expected {DEVICE_HELP}")


def resolve_device(name: str | torch.device) -> torch.device:
    """The torch.device for `name`; a CUDA name without a usable GPU is one ConfigError line, raised before any
    tensor or file is made (so `tether flow train --device cuda` on a CPU machine fails at once)."""
    if isinstance(name, torch.device):
        name = str(name)
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        built = "this torch build has no CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise ConfigError(f"--device {name}: CUDA is not available ({built}, torch {torch.__version__}); "
                          "use --device cpu or --device auto")
    index = int(name.split(":")[1]) if ":" in name else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"--device {name}: only {count} CUDA device(s) visible (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)
