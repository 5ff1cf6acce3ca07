"""Optional dependencies: which `tether-rl[...]` extra brings each one, and the one-line error that says so.

The core install (torch, numpy, scipy, matplotlib, rich, safetensors) runs `tether lm train --preset smoke`,
`tether coherence sweep` and `tether flow toy`; every other command checks what it needs when its config is
built, before any work starts or any file is written, and names the extra to install.
"""

from __future__ import annotations

import importlib.util
import sys

from tether.core.config import ConfigError

__all__ = ["EXTRAS", "MissingExtra", "available", "require"]

EXTRAS = {"transformers": "lm", "tokenizers": "lm", "peft": "lm", "trl": "lm", "ogbench": "flow", "mujoco": "flow",
          "gymnasium": "flow", "ray": "scale", "tensorboard": "tensorboard", "wandb": "wandb", "gguf": "real"}
"""Top-level module -> the extra of `pip install 'tether-rl[EXTRA]'` that installs it."""


class MissingExtra(ConfigError):
    """An optional dependency is not installed (a `ConfigError`: the CLI prints it as one line)."""


def available(module: str) -> bool:
    """Whether `module` can be imported, without importing it (a `None` entry in sys.modules counts as absent)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def require(*modules: str, purpose: str) -> None:
    """Raise `MissingExtra` naming the missing modules and the extra(s) to install, if any is absent."""
    missing = [m for m in modules if not available(m)]
    if missing:
        extras = ",".join(dict.fromkeys(EXTRAS[m] for m in missing))
        raise MissingExtra(f"{purpose} needs {', '.join(missing)}, which is not installed: "
                           f"pip install 'tether-rl[{extras}]'")
