"""`tether flow toy --json` prints one JSON object with the issue's keys (progress on stderr); the commands are
registered."""

import json

import pytest

from tether.cli import main
from tether.flow.cli import COMMANDS, demo_section
from tether.flow.toy.toy import pretrained_flow


def test_commands_are_registered():
    assert {c.name for c in COMMANDS} == {"data", "train", "toy", "toy-plot"}


def test_toy_json_output(capsys):
    pretrained_flow.cache_clear()  # BC pretraining runs (and reports progress) in this test
    code = main(["flow", "toy", "--method", "trqam", "--kl-budget", "0.3", "--critic-error", "6", "--q-scale", "10",
                 "--steps", "5", "--bc-steps", "10", "--width", "16", "--batch-size", "32", "--seed", "2", "--json"])
    assert code == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)  # stdout is exactly one JSON object: progress went to stderr
    assert {"method", "realised_kl", "lambda", "true_reward", "believed_q", "on_support"} <= out.keys()
    assert out["method"] == "trqam" and out["kl_budget"] == 0.3 and out["q_scale"] == 10.0 and out["seed"] == 2
    lines = captured.err.splitlines()
    assert any(line.startswith("[toy BC pretraining] 10/10 ") and " eta " in line for line in lines)
    assert any(line.startswith("[toy trqam fine-tuning] 5/5 ") and " kl=" in line for line in lines)


def test_toy_plot_writes_small_pngs(tmp_path, capsys):
    code = main(["flow", "toy-plot", "--out", str(tmp_path), "--steps", "3", "--bc-steps", "5", "--width", "8",
                 "--betas", "1,10", "--budgets", "0.5"])
    assert code == 0
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == 2 and all(p.stat().st_size < 150_000 for p in pngs)


@pytest.mark.slow
def test_demo_section(tmp_path):
    md = demo_section(tmp_path)
    assert "![trqam_demo_q10](trqam_demo_q10.png)" in md and (tmp_path / "trqam_demo_q10.png").exists()
