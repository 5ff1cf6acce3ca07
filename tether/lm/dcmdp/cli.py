"""`tether lm mismatch` (the train/inference discrepancy of a checkpoint, arXiv:2606.08779), `tether lm grad-bias`
(the gradient each correction follows against the on-policy and straight-through ones) and the DCMDP demo.

The work lives in `mismatch.py`; `tether/lm/cli.py` lists `DCMDP_COMMANDS` with the other LM commands.
"""

from __future__ import annotations

from tether.core.cli import Command
from tether.lm.dcmdp.grad_bias import GradBiasConfig, run_grad_bias
from tether.lm.dcmdp.mismatch import MismatchConfig, dcmdp_demo_section, run_mismatch

__all__ = ["DCMDP_COMMANDS", "dcmdp_demo_section"]

DCMDP_COMMANDS: list[Command] = [
    Command("mismatch", MismatchConfig, run_mismatch,
            "train/inference discrepancy of a checkpoint at every rollout-engine precision (DCMDP's metrics)",
            aliases={"model.path": "checkpoint"}),
    Command("grad-bias", GradBiasConfig, run_grad_bias,
            "is a mismatch benign? cosine of each correction's gradient with the fp32 on-policy and the engine's "
            "straight-through gradient, with noise ceilings", aliases={"model.path": "checkpoint"}),
]
