"""tether.lm: language-model RL on CPU: tiny reasoning models, a KV-cached rollout engine, GRPO.

Layers, imported one way: `model` <- `rollout` <- `grpo` <- {`dcmdp`, `intrinsic`} (docs/architecture.md).
The public names below load on first access, after `tether.lm.builtins` has registered every reward and
correction, so `import tether.lm.rollout.engine` stays light (no GRPO, no papers).
"""

import importlib

_PUBLIC = {
    "GRPOTrainer": "tether.lm.grpo.trainer", "TrainConfig": "tether.lm.grpo.config", "smoke": "tether.lm.grpo.config",
    "gsm_tiny": "tether.lm.grpo.config", "ModelConfig": "tether.lm.model.tinylm", "TinyLM": "tether.lm.model.tinylm",
    "Policy": "tether.lm.model.policy", "TinyPolicy": "tether.lm.model.policy",
    "CharTokenizer": "tether.lm.model.tokenizer", "HFTokenizer": "tether.lm.model.tokenizer",
    "PRECISIONS": "tether.lm.rollout.precision", "Rollout": "tether.lm.rollout.engine",
    "RolloutEngine": "tether.lm.rollout.engine", "TASKS": "tether.lm.grpo.tasks",
    "make_task": "tether.lm.grpo.tasks", "parse_answer": "tether.lm.grpo.tasks",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'tether.lm' has no attribute {name!r}")
    importlib.import_module("tether.lm.builtins")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__() -> list[str]:
    return __all__
