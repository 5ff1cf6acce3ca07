"""The `tether` command: `tether <family> <command> [--field VALUE ...]`, `tether report`, `tether demo`.

Commands are found through `tether.commands` (families declare theirs in `tether/<family>/cli.py` as a
`COMMANDS` list of `tether.core.cli.Command`); this module only dispatches. Listing commands imports no
family, so `tether --help` answers at once. Set TETHER_DEBUG=1 to see tracebacks instead of one-line errors.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence

from tether import __version__
from tether.commands import FAMILIES, TOP, family_commands, top_command
from tether.core.cli import Command
from tether.core.config import ConfigError, NonFiniteError, help_text, parse_args, preset_name
from tether.core.extras import EXTRAS
from tether.core.signals import StopRequested


def _usage() -> str:
    lines = [f"tether {__version__}: stable RL fine-tuning of pretrained policies", "",
             "usage: tether <command> [...]   (tether <command> --help for details)", "", "commands:"]
    lines += [f"  {fam:<10} {desc}" for fam, desc in FAMILIES.items()]
    lines += [f"  {name:<10} {entry[0]}" for name, entry in TOP.items()]
    return "\n".join(lines)


def _run(cmd: Command, argv: Sequence[str], prog: str) -> int:
    if "-h" in argv or "--help" in argv:
        print(help_text(cmd.config, prog=prog, description=cmd.help, presets=cmd.presets, positional=cmd.positional,
                        aliases=cmd.aliases, preset=preset_name(argv, cmd.presets)))
        return 0
    cfg = parse_args(cmd.config, argv, presets=cmd.presets, positional=cmd.positional, aliases=cmd.aliases)
    from tether.core.seeding import one_thread  # imports torch: only once a command really runs

    one_thread()  # set OMP_NUM_THREADS to choose another count
    return cmd.run(cfg) or 0


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"tether {__version__}")
        return 0
    head, rest = argv[0], argv[1:]
    if head in TOP:
        return _run(top_command(head), rest, f"tether {head}")
    if head not in FAMILIES:
        raise ConfigError(f"unknown command {head!r}; expected one of {list(FAMILIES) + list(TOP)}")
    commands = family_commands(head)
    by_name = {c.name: c for c in commands}
    if not rest or rest[0] in ("-h", "--help"):
        print(f"usage: tether {head} <command> [--field VALUE ...]\n\n{FAMILIES[head]}\n\ncommands:")
        for c in commands:
            print(f"  {c.name:<14} {c.help}")
        return 0
    if rest[0] not in by_name:
        raise ConfigError(f"unknown command 'tether {head} {rest[0]}'; expected one of {sorted(by_name)}")
    return _run(by_name[rest[0]], rest[1:], f"tether {head} {rest[0]}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except BrokenPipeError:  # `tether ... | head` closed the pipe: not an error
        sys.stderr.close()
        return 0
    except StopRequested as e:  # SIGTERM / Ctrl-C under graceful_stop: the trainer saved and says where
        print(e, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C (abort), or one where no graceful_stop was active
        if os.environ.get("TETHER_DEBUG"):
            raise
        print("interrupted by Ctrl-C", file=sys.stderr)
        return 130
    except (ConfigError, FileNotFoundError, FileExistsError) as e:
        if os.environ.get("TETHER_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteError as e:  # the run stopped on NaN/inf; its message names the flag to change
        if os.environ.get("TETHER_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 3
    except OSError as e:  # a full disk or a read-only file system mid-run: one line, the checkpoints are intact
        if e.errno not in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT) or os.environ.get("TETHER_DEBUG"):
            raise
        print(f"error: {e.filename}: {e.strerror}" if e.filename else f"error: {e.strerror}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:  # an optional dependency no config check caught: still one line
        root = (e.name or "").split(".")[0]
        if root not in EXTRAS or os.environ.get("TETHER_DEBUG"):
            raise
        print(f"error: {root} is not installed: pip install 'tether-rl[{EXTRAS[root]}]'", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
