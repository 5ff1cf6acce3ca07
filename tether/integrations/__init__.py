"""Bridges from tether's methods to other training frameworks (issue #10; recipes in docs/scale.md).

`tether.integrations.trl` runs tether's mismatch corrections (TIS, MIS, IcePop, DCMDP), rewards and detectors
inside TRL's `GRPOTrainer` (optional extra `lm`). Integrations may import `tether.core` and the families; no
family imports an integration. Nothing heavy is imported here: the TRL version pin below reads the installed
distribution's metadata without importing `trl`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

TRL_SUPPORTED = (">=1.16", "<1.17")
"""The TRL versions the integration tests cover (GRPOTrainer's private hooks change between minor releases)."""


def require_trl(installed: str | None = None) -> str:
    """The installed TRL version; raises ImportError naming it and `TRL_SUPPORTED` when it is outside the range."""
    from packaging.specifiers import SpecifierSet

    if installed is None:
        try:
            installed = version("trl")
        except PackageNotFoundError:
            raise ImportError(f"tether.integrations.trl needs trl {','.join(TRL_SUPPORTED)}; trl is not installed "
                              "(pip install 'tether-rl[lm]')") from None
    if installed not in SpecifierSet(",".join(TRL_SUPPORTED)):
        raise ImportError(f"tether.integrations.trl supports trl {','.join(TRL_SUPPORTED)} (the versions its tests "
                          f"cover); installed: trl {installed}. Install a supported trl or pin it.")
    return installed
