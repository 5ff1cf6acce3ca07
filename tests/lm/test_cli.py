import json

import pytest

from tether.core.config import field_docs, help_text, leaf_fields, parse_args
from tether.lm.cli import COMMANDS, EvalConfig, demo_section, run_eval
from tether.lm.pretrain import PretrainConfig


def test_commands_and_every_field_documented():
    assert {c.name for c in COMMANDS} == {"train", "pretrain", "eval", "mismatch", "prior-check", "lens"}
    for cmd in COMMANDS:
        for path, (_, owner, name) in leaf_fields(cmd.config).items():
            assert field_docs(owner).get(name), f"{cmd.name}: field {path} has no docstring"
        assert "--" in help_text(cmd.config, prog=f"tether lm {cmd.name}", presets=cmd.presets)


def test_pretrain_flags_from_the_issue():
    cfg = parse_args(PretrainConfig, ["--task", "running-sum", "--steps", "5", "--error-rate", "0.1",
                                      "--alignment", "anti", "--out", "/tmp/b"])
    assert (cfg.task, cfg.steps, cfg.error_rate, cfg.alignment, cfg.out) == ("running-sum", 5, 0.1, "anti", "/tmp/b")


def test_eval_command_runs_on_a_random_model(capsys):
    cfg = parse_args(EvalConfig, ["--model.path", "", "--model.d_model", "32", "--model.d_ff", "64", "--n_prompts", "3",
                                  "--k", "2", "--max_new_tokens", "8", "--splits", "heldout"])
    assert run_eval(cfg) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out) == {"heldout/greedy_acc", "heldout/sample_acc", "heldout/pass@2", "heldout/maj@2",
                        "heldout/len_mean", "heldout/unparsable_frac"}


@pytest.mark.slow
def test_demo_section_writes_figures(tmp_path):
    md = demo_section(tmp_path)
    assert "lm_grpo_eval.png" in md and (tmp_path / "lm_grpo_eval.png").exists()


def test_bare_train_warns_once_that_the_model_is_random_and_closes_with_a_summary(tmp_path, capsys):
    from tether.cli import main

    run = tmp_path / "run"
    assert main(["lm", "train", "--steps", "1", "--rollout.prompts-per-step", "2", "--rollout.group-size", "2",
                 "--rollout.max-new-tokens", "4", "--eval.n-prompts", "2", "--eval.k", "1", "--eval.splits", "heldout",
                 "--run.dir", str(run)]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "randomly initialised TinyLM" in warnings[0]
    assert "--preset gsm-tiny" in warnings[0] and "--model.path base:medium" in warnings[0]
    out = captured.out.splitlines()
    assert out[1].startswith("lm train done (1 steps, ") and out[1].endswith(f": {run}")
    assert out[2].startswith("  heldout greedy acc 0.") and "sampled acc" in out[2] and "reward/mean" in out[2]
    assert out[3:] == ["next:", f"  tether report {run}"]  # no tensorboard line: --run.tensorboard is off


def test_smoke_preset_from_the_shipped_base(tmp_path, capsys):
    from tether.core.rundir import read_jsonl
    from tether.lm.cli import train
    from tether.lm.grpo.config import PRESETS, TrainConfig
    from tether.testing.docs import undocumented

    cfg = parse_args(TrainConfig, ["--preset", "smoke", "--run.dir", str(tmp_path / "run")], presets=PRESETS)
    assert train(cfg) == 0
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    evals = read_jsonl(tmp_path / "run" / "eval.jsonl")
    assert len(rows) == 6 and [e["step"] for e in evals] == [0, 6]
    assert evals[0]["eval/heldout/greedy_acc"] > 0.5          # the medium base is loaded, not a random model
    assert rows[0]["reward/mean"] > 0
    assert undocumented({k for r in rows + evals for k in r}) == []
    assert (tmp_path / "run" / "samples" / "step_0000006.jsonl").exists()
    captured = capsys.readouterr()
    assert "warning" not in captured.err  # a base was given: no random-model warning
    assert "lm train done (6 steps" in captured.out and f"  tether report {tmp_path / 'run'}" in captured.out
