import json
import subprocess
import sys

import pytest

from tether.commands import FAMILIES, TOP, family_commands, find, top_command
from tether.core.config import ConfigError


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_listing_commands_imports_no_heavy_module():
    """`tether --help` (and `tether lm` needs nothing more than the table) must not import torch & co."""
    loaded = _modules_after("from tether.cli import main; main(['--help'])")
    assert not {"torch", "numpy", "matplotlib", "scipy"} & {m.split(".")[0] for m in loaded}


def test_find_resolves_family_and_top_commands():
    assert find("lm train").name == "train"
    assert find("report").positional == "runs"
    assert {c.name for c in family_commands("flow")} >= {"train", "toy", "data"}
    assert [top_command(n).name for n in TOP] == list(TOP)


@pytest.mark.parametrize("bad, listed", [("lm nope", "lm train"), ("nope", "report"), ("lm", "lm train"),
                                         ("flow toy x", "flow toy-plot"), ("nope x", "flow <command>")])
def test_unknown_commands_list_what_exists(bad, listed):
    with pytest.raises(ConfigError, match="does not exist") as e:
        find(bad)
    assert listed in str(e.value)


def test_every_family_has_a_cli_module_with_commands_and_a_demo_section():
    import importlib

    for fam in FAMILIES:
        mod = importlib.import_module(f"tether.{fam}.cli")
        assert mod.COMMANDS and callable(mod.demo_section)
