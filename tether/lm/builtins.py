"""The one place that imports every module registering into tether.lm's registries.

The registries are defined where their interface lives (`grpo.rewards.REWARDS`, `grpo.corrections.CORRECTIONS`);
the paper-specific entries live with their paper (`intrinsic.rewards`: label-free rewards; `dcmdp.corrections`:
TIS, MIS, IcePop, DCMDP) and register when imported. Importing a low layer (e.g. `tether.lm.rollout.engine`)
therefore never loads GRPO or either paper; the CLI, the public API in `tether.lm` and the TRL integration
import this module first.
"""

from tether.lm.dcmdp import corrections as _corrections  # noqa: F401
from tether.lm.intrinsic import rewards as _rewards  # noqa: F401
