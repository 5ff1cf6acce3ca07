import json

import pytest

from tether.cli import main
from tether.core.config import ConfigError
from tether.demo import MARKER, DemoConfig, claim_output_dir, run_demo


def test_a_foreign_non_empty_directory_is_refused_and_left_as_it_was(tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("years of work")
    assert main(["demo", "--out", str(tmp_path), "--sections", "core"]) == 2
    assert "holds files that tether demo did not write" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_rerunning_replaces_only_the_demos_own_files(tmp_path):
    out = tmp_path / "demo"
    run_demo(DemoConfig(out=str(out), sections=("core",)))
    first = json.loads((out / MARKER).read_text())
    assert first["complete"] and "report.md" in first["written"]
    (out / "notes.md").write_text("mine")
    (out / "core_bandit" / "mine.txt").write_text("mine too")    # inside a folder the demo made
    run_demo(DemoConfig(out=str(out), sections=("core",)))
    assert (out / "notes.md").read_text() == "mine" and (out / "core_bandit" / "mine.txt").exists()
    assert (out / "report.md").exists()
    assert "notes.md" not in json.loads((out / MARKER).read_text())["written"]


def test_an_interrupted_demo_loses_only_what_it_wrote(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "old.txt").write_text("before the demo")
    with pytest.raises(ConfigError):
        claim_output_dir(out)                      # not a demo folder: refused
    (out / "old.txt").unlink()
    claim_output_dir(out)                          # empty: claimed, marker says incomplete
    (out / "partial").mkdir()
    (out / "partial" / "half.png").write_bytes(b"x")
    claim_output_dir(out)                          # the interrupted demo's files go, its empty folder too
    assert not (out / "partial").exists() and (out / MARKER).exists()


def test_a_file_as_output_is_refused(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        claim_output_dir(f)
