import json

import pytest

from tether.core.config import field_docs, help_text, leaf_fields, parse_args
from tether.lm.cli import COMMANDS, EvalConfig, demo_section, run_eval
from tether.lm.pretrain import PretrainConfig


def test_commands_and_every_field_documented():
    assert {c.name for c in COMMANDS} == {"train", "pretrain", "eval", "mismatch", "prior-check", "lens", "grad-bias"}
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


# ------------------------------------------------------------------ crash-proof runs: states, resume, bad input

TINY = ["--preset", "smoke", "--steps", "2", "--rollout.prompts-per-step", "2", "--rollout.group-size", "4",
        "--rollout.max-new-tokens", "16", "--eval.n-prompts", "4", "--eval.k", "2", "--samples-every", "0"]


def _train(*args):
    from tether.cli import main

    return main(["lm", "train", *TINY, *args])


def test_a_run_killed_before_its_first_checkpoint_restarts_after_saying_so(tmp_path, capsys):
    from tether.core.rundir import RunDir, read_jsonl
    from tether.lm.grpo.config import smoke

    run = RunDir.create(tmp_path / "r", smoke(), seed=0)
    run.log_metrics(1, {"reward/mean": 0.5})                 # what a kill right after the first row leaves
    assert _train("--run.resume", "--run.dir", str(run.path)) == 2
    assert "stopped before its first checkpoint" in capsys.readouterr().err
    assert _train("--run.dir", str(run.path)) == 0
    err = capsys.readouterr().err
    assert "starting it again" in err
    kept = list(run.path.glob("interrupted-*/metrics.jsonl"))
    assert len(kept) == 1 and read_jsonl(kept[0]) == [{"step": 1, "reward/mean": 0.5}]   # nothing deleted
    assert [r["step"] for r in read_jsonl(run.path / "metrics.jsonl")] == [1, 2]


def test_resume_refuses_a_different_config_a_broken_config_and_another_commands_run(tmp_path, capsys):
    d = str(tmp_path / "r")
    assert _train("--run.dir", d) == 0
    capsys.readouterr()
    assert _train("--run.dir", d) == 2                      # a finished run is not silently overwritten
    assert "pass --run.resume" in capsys.readouterr().err
    assert _train("--run.resume", "--run.dir", d, "--optim.lr", "1e-4") == 2
    assert "optim.lr: run 3e-05, now 0.0001" in capsys.readouterr().err
    cfg = tmp_path / "r" / "config.json"
    good = cfg.read_text()
    cfg.write_text(good.replace('"lr": 3e-05', '"lr": "fast"'))
    assert _train("--run.resume", "--run.dir", d) == 2
    assert "not a valid config of this command" in capsys.readouterr().err
    cfg.write_text("{broken")
    assert _train("--run.resume", "--run.dir", d) == 2
    assert "not valid JSON" in capsys.readouterr().err
    cfg.write_text(json.dumps({"task": "scene-play-singletask-task2-v0", "method": "trqam"}))   # a flow run
    assert _train("--run.resume", "--run.dir", d) == 2
    assert "another command" in capsys.readouterr().err
    cfg.write_text(good)


def test_resuming_a_finished_lm_run_adds_no_row(tmp_path, capsys):
    d = tmp_path / "r"
    assert _train("--run.dir", str(d)) == 0
    evals, metrics = (d / "eval.jsonl").read_text(), (d / "metrics.jsonl").read_text()
    assert _train("--run.resume", "--run.dir", str(d)) == 0
    assert "already finished at step 2 of 2" in capsys.readouterr().err
    assert (d / "eval.jsonl").read_text() == evals and (d / "metrics.jsonl").read_text() == metrics


def test_a_garbage_metrics_line_is_kept_when_resume_rewrites_the_file(tmp_path, capsys):
    d = tmp_path / "r"
    assert _train("--run.dir", str(d), "--steps", "2", "--run.save-every", "1") == 0
    with open(d / "metrics.jsonl", "a") as f:
        f.write("[1, 2]\n")
    import shutil

    shutil.rmtree(d / "checkpoints" / "step_0000002")           # as if killed before the last checkpoint
    assert _train("--run.resume", "--run.dir", str(d), "--steps", "2", "--run.save-every", "1") == 0
    assert "[1, 2]" in (d / "metrics.jsonl.before-resume").read_text()
    assert "are not rows" in capsys.readouterr().err


@pytest.mark.parametrize("flags, match", [
    (["--optim.lr", "inf"], "'optim.lr': got inf, expected a finite float > 0"),
    (["--optim.lr", "-1"], "'optim.lr': got -1.0, expected a finite float > 0"),
    (["--rollout.temperature", "inf"], "'rollout.temperature': got inf"),
    (["--rollout.temperature", "nan"], "'rollout.temperature': got '?nan"),
    (["--eval.temperature", "inf"], "'eval.temperature': got inf"),
    (["--model.path", "", "--model.max-seq-len", "4"], "needs a context of .* > the model's 4"),
    (["--steps", "-1"], "steps"),
    (["--model.path", "/no/such/base"], "has no config.json"),
])
def test_bad_input_is_one_line_before_any_file_is_written(tmp_path, capsys, flags, match):
    import re

    d = tmp_path / "r"
    assert _train("--run.dir", str(d), *flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert re.search(match, err[-1]) and err[-1].startswith("error:"), err
    assert not d.exists()


def test_a_run_directory_under_a_file_is_refused_before_work(tmp_path, capsys):
    (tmp_path / "f").write_text("not a folder")
    assert _train("--run.dir", str(tmp_path / "f" / "run")) == 2
    assert "is not a directory" in capsys.readouterr().err and (tmp_path / "f").read_text() == "not a folder"


def test_a_read_only_output_directory_is_refused_before_work(tmp_path, capsys, monkeypatch):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    # root may write anywhere, so the permission is simulated: the check must ask the OS and refuse
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(ro) else real(path, mode))
    assert _train("--run.dir", str(ro / "run")) == 2
    assert "is not writable" in capsys.readouterr().err and not any(ro.iterdir())


def test_a_full_disk_during_a_run_is_one_line(monkeypatch, capsys):
    import tether.cli as cli

    def full(argv):
        raise OSError(28, "No space left on device", "runs/x/metrics.jsonl")

    monkeypatch.setattr(cli, "_dispatch", full)
    assert cli.main(["lm", "train"]) == 2
    assert capsys.readouterr().err.strip() == "error: runs/x/metrics.jsonl: No space left on device"


def test_a_far_out_learning_rate_warns(tmp_path, capsys):
    assert _train("--run.dir", str(tmp_path / "r"), "--steps", "1", "--optim.lr", "1e6") in (0, 2)
    assert "optim.lr=1e+06 is far outside the usual" in capsys.readouterr().err


def _rows(path):
    from tether.core.rundir import read_jsonl

    return [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/"))} for r in read_jsonl(path)]


def test_sigterm_saves_and_exits_with_one_line_and_the_resumed_run_equals_an_uninterrupted_one(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "tether.cli", "lm", "train", *TINY, "--steps", "40"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*cmd, "--run.dir", str(tmp_path / "a")], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([*cmd, "--run.dir", str(tmp_path / "b")], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(_rows(tmp_path / "b" / "metrics.jsonl")) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 143 and last.startswith("stopped by SIGTERM at step "), err[-2000:]
    assert "Traceback" not in err and "checkpoint saved" in last
    step = int(last.split("at step ")[1].split(";")[0])
    assert (tmp_path / "b" / "checkpoints" / f"step_{step:07d}").is_dir()
    subprocess.run([*cmd, "--run.dir", str(tmp_path / "b"), "--run.resume"], env=env, check=True, capture_output=True)
    for name in ("metrics.jsonl", "eval.jsonl"):
        assert _rows(tmp_path / "a" / name) == _rows(tmp_path / "b" / name), name
