"""The one command lookup of the `tether` CLI: what each command is called, what it does, where it lives.

The tables are plain strings, so `tether --help` lists every command without importing torch or any family;
a command's module is imported only when that command is looked up. `tether.cli` (dispatch), `tether.demo`
(one section per family) and `tether.sweep` (a grid of any command) all find commands here.
"""

from __future__ import annotations

import importlib

from tether.core.cli import Command
from tether.core.config import ConfigError

__all__ = ["FAMILIES", "TOP", "family_commands", "top_command", "top_commands", "find"]

FAMILIES: dict[str, str] = {
    "coherence": "incoherence of goal-conditioned policies, exact and neural (arXiv:2510.06545)",
    "lm": "language-model RL: tiny models, KV-cached sampler, GRPO, DCMDP, intrinsic rewards",
    "flow": "flow policies: BC, FQL, QAM, TRQAM (arXiv:2605.27079)",
}
"""Family -> one-line help; its commands are `tether.<family>.cli.COMMANDS`."""

TOP: dict[str, tuple[str, str, str, str, str | None]] = {
    "report": ("PNG learning curves + Markdown summary of run directories",
               "tether.core.report", "ReportConfig", "run_report", "runs"),
    "demo": ("a ~5 minute tour of every family; writes runs/demo/report.md", "tether.demo", "DemoConfig", "run_demo",
             None),
    "sweep": ("a grid of tether runs as Ray tasks; resumable, with a summary table (docs/sweep.md)",
              "tether.sweep", "SweepConfig", "run_sweep", "specs"),
}
"""Top-level command -> (help, module, config class, run function, positional field)."""


def family_commands(family: str) -> list[Command]:
    """The `Command`s of a family (imports `tether.<family>.cli`)."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown family {family!r}; expected one of {list(FAMILIES)}")
    return list(importlib.import_module(f"tether.{family}.cli").COMMANDS)


def top_command(name: str) -> Command:
    """The `Command` of a top-level name (imports its module)."""
    help_, module, config, run, positional = TOP[name]
    mod = importlib.import_module(module)
    return Command(name, getattr(mod, config), getattr(mod, run), help_, positional=positional)


def top_commands() -> list[Command]:
    return [top_command(name) for name in TOP]


def find(command: str) -> Command:
    """The `Command` behind "family name" or a top-level name; a one-line error lists what exists."""
    words = command.split()
    if len(words) == 1 and words[0] in TOP:
        return top_command(words[0])
    if words and words[0] in FAMILIES:
        by_name = {c.name: c for c in family_commands(words[0])}
        if len(words) == 2 and words[1] in by_name:
            return by_name[words[1]]
        raise ConfigError(f"command {command!r} does not exist; expected one of "
                          f"{[f'{words[0]} {n}' for n in by_name]}")
    raise ConfigError(f"command {command!r} does not exist; expected one of "
                      f"{[f'{fam} <command>' for fam in FAMILIES] + sorted(TOP)}")
