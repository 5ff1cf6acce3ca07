"""The command protocol shared by every family's CLI (`tether/<family>/cli.py` exposes `COMMANDS`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Command"]


@dataclass(frozen=True)
class Command:
    name: str
    """Subcommand name (`tether <family> <name>`)."""
    config: type
    """Frozen dataclass parsed from the flags; its field docstrings are the --help text."""
    run: Callable[[Any], int | None]
    """Does the work; returns an exit code (None = 0)."""
    help: str
    """One-line description shown in `tether <family> --help`."""
    presets: Mapping[str, Callable[[], Any]] | None = field(default=None)
    """Named starting configs for `--preset NAME`."""
    positional: str | None = None
    """Name of a tuple field collecting positional arguments (e.g. run directories)."""
    aliases: Mapping[str, str] | None = None
    """Short flags for nested fields (`beta` -> `qam.beta`), accepted by the parser and shown in --help."""
