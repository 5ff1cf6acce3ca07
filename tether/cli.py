"""The `tether` command: `tether <family> <command> [--field VALUE ...]`, `tether report`, `tether demo`.

Families register commands in `tether/<family>/cli.py` (a `COMMANDS` list of `tether.core.cli.Command`);
this module only dispatches. A family that has not landed yet is listed with what is coming.
Set TETHER_DEBUG=1 to see tracebacks instead of one-line errors.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from tether import __version__
from tether.core.cli import Command
from tether.core.config import ConfigError, help_text, parse_args
from tether.core.seeding import one_thread

FAMILIES = {
    "coherence": ("incoherence of goal-conditioned policies, exact and neural (arXiv:2510.06545)", "#3, #8"),
    "lm": ("language-model RL: tiny models, KV-cached sampler, GRPO, DCMDP, intrinsic rewards", "#4, #6, #7"),
    "flow": ("flow policies: BC, FQL, QAM, TRQAM (arXiv:2605.27079)", "#5"),
}


def _top_commands() -> list[Command]:
    from tether.core.report import ReportConfig, run_report
    from tether.demo import DemoConfig, run_demo
    from tether.sweep import SweepConfig, run_sweep

    return [Command("report", ReportConfig, run_report, "PNG learning curves + Markdown summary of run directories",
                    positional="runs"),
            Command("demo", DemoConfig, run_demo, "a ~5 minute tour of every family; writes runs/demo/report.md"),
            Command("sweep", SweepConfig, run_sweep, "a grid of tether runs as Ray tasks; resumable, with a summary "
                    "table (docs/sweep.md)", positional="specs")]


def family_commands(family: str) -> list[Command] | None:
    """The family's commands, or None if the family has not landed yet."""
    try:
        module = importlib.import_module(f"tether.{family}.cli")
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith(f"tether.{family}"):
            return None
        raise
    return list(module.COMMANDS)


def _usage() -> str:
    lines = [f"tether {__version__}: stable RL fine-tuning of pretrained policies", "",
             "usage: tether <command> [...]   (tether <command> --help for details)", "", "commands:"]
    for fam, (desc, issues) in FAMILIES.items():
        status = "" if family_commands(fam) is not None else f" [coming: issues {issues}]"
        lines.append(f"  {fam:<10} {desc}{status}")
    for cmd in _top_commands():
        lines.append(f"  {cmd.name:<10} {cmd.help}")
    return "\n".join(lines)


def _run(cmd: Command, argv: Sequence[str], prog: str) -> int:
    if "-h" in argv or "--help" in argv:
        print(help_text(cmd.config, prog=prog, description=cmd.help, presets=cmd.presets, positional=cmd.positional))
        return 0
    cfg = parse_args(cmd.config, argv, presets=cmd.presets, positional=cmd.positional)
    return cmd.run(cfg) or 0


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"tether {__version__}")
        return 0
    head, rest = argv[0], argv[1:]
    top = {c.name: c for c in _top_commands()}
    if head in top:
        return _run(top[head], rest, f"tether {head}")
    if head not in FAMILIES:
        raise ConfigError(f"unknown command {head!r}; expected one of {list(FAMILIES) + list(top)}")
    commands = family_commands(head)
    if commands is None:
        print(f"tether {head}: not available yet (coming in issues {FAMILIES[head][1]})")
        return 0 if not rest or rest[0] in ("-h", "--help") else 2
    by_name = {c.name: c for c in commands}
    if not rest or rest[0] in ("-h", "--help"):
        print(f"usage: tether {head} <command> [--field VALUE ...]\n\n{FAMILIES[head][0]}\n\ncommands:")
        for c in commands:
            print(f"  {c.name:<14} {c.help}")
        return 0
    if rest[0] not in by_name:
        raise ConfigError(f"unknown command 'tether {head} {rest[0]}'; expected one of {sorted(by_name)}")
    return _run(by_name[rest[0]], rest[1:], f"tether {head} {rest[0]}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    one_thread()  # set OMP_NUM_THREADS to choose another count
    try:
        return _dispatch(argv)
    except BrokenPipeError:  # `tether ... | head` closed the pipe: not an error
        sys.stderr.close()
        return 0
    except (ConfigError, FileNotFoundError, FileExistsError) as e:
        if os.environ.get("TETHER_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
