import json

import pytest

from tether.core.config import parse_args
from tether.lm.intrinsic.cli import INTRINSIC_COMMANDS, intrinsic_demo_section


def command(name):
    return next(c for c in INTRINSIC_COMMANDS if c.name == name)


def test_commands_are_declared_with_documented_configs():
    assert [c.name for c in INTRINSIC_COMMANDS] == ["prior-check", "lens"]
    assert command("lens").positional == "run_dirs"


def test_prior_check_command_with_the_documented_flags(capsys):
    cmd = command("prior-check")
    cfg = parse_args(cmd.config, ["--model", "base:medium", "--task", "running_sum", "--samples", "4",
                                  "--n-prompts", "6", "--rewards", "lp,majority", "--json"],
                     positional=cmd.positional)
    assert cmd.run(cfg) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [x["reward"] for x in lines[:-1]] == ["lp", "majority"]
    assert {"reward", "auroc", "auroc_within"} <= set(lines[0]) and lines[-1]["summary"] is True


@pytest.mark.slow
def test_demo_section_writes_its_pictures(tmp_path):
    md = intrinsic_demo_section(tmp_path, steps=12)
    assert "![phase trajectories](intrinsic_lens_phase.png)" in md
    assert (tmp_path / "intrinsic_lens_phase.png").stat().st_size < 150_000
