"""tether inside TRL's `GRPOTrainer` (issue #10): the public entry point.

Importing this module checks that the installed trl is in `TRL_SUPPORTED` (the range the tests cover) and fails
with the installed version and the range otherwise. The pieces:
  TetherGRPOTrainer   GRPOTrainer + tether corrections (TIS/MIS/IcePop/DCMDP, dual state checkpointed)
  TetherReward        tether rewards as TRL reward functions (text-only, or logit-based via the trainer)
  engine_rollout      a TRL `rollout_func` on tether's low-precision rollout engine (the CPU stand-in for vLLM)
  DetectorCallback, EnvelopeCallback   collapse/hacking detectors and the envelope lens as TrainerCallbacks
Recipes for multi-GPU runs are in docs/scale.md.
"""

from __future__ import annotations

from tether.integrations import TRL_SUPPORTED, require_trl

TRL_VERSION = require_trl()

import tether.lm.builtins  # noqa: E402, F401  (TetherReward and the corrections look names up in the registries)
from tether.integrations.trl.callbacks import TRL_KEYS, DetectorCallback, EnvelopeCallback  # noqa: E402
from tether.integrations.trl.rewards import TetherReward  # noqa: E402
from tether.integrations.trl.trainer import STATE_FILE, TetherBatch, TetherGRPOTrainer, engine_rollout  # noqa: E402

__all__ = ["TRL_SUPPORTED", "TRL_VERSION", "require_trl", "TetherGRPOTrainer", "TetherBatch", "TetherReward",
           "engine_rollout", "DetectorCallback", "EnvelopeCallback", "TRL_KEYS", "STATE_FILE"]
