"""`tether lm mismatch` (the train/inference discrepancy of a checkpoint, arXiv:2606.08779) and the DCMDP demo.

The work lives in `mismatch.py`; `tether/lm/cli.py` lists `DCMDP_COMMANDS` with the other LM commands.
"""

from __future__ import annotations

from tether.core.cli import Command
from tether.lm.dcmdp.mismatch import MismatchConfig, dcmdp_demo_section, run_mismatch

__all__ = ["DCMDP_COMMANDS", "dcmdp_demo_section"]

DCMDP_COMMANDS: list[Command] = [
    Command("mismatch", MismatchConfig, run_mismatch,
            "train/inference discrepancy of a checkpoint at every rollout-engine precision (DCMDP's metrics)"),
]
