"""LM tests use every registered reward and correction, as the CLI does (`tether.lm.builtins`)."""

import tether.lm.builtins  # noqa: F401
