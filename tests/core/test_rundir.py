import io
import json

import pytest

from tether.core.progress import progress
from tether.core.rundir import RunDir, read_jsonl
from tether.testing.toy import ToyConfig


def test_layout_and_env(tmp_path):
    run = RunDir.create(tmp_path / "r", ToyConfig(steps=3), seed=3)
    run.log_metrics(1, {"loss/x": 1.0})
    run.log_eval(1, {"eval/acc": 0.5})
    run.write_jsonl("samples/step_0000001.jsonl", [{"prompt": "1+1=", "completion": "2"}])
    assert json.loads((tmp_path / "r" / "config.json").read_text())["steps"] == 3
    env = json.loads((tmp_path / "r" / "env.json").read_text())
    assert env["seed"] == 3 and "git_sha" in env and "git_dirty" in env and env["torch_threads"] >= 1
    assert read_jsonl(tmp_path / "r" / "metrics.jsonl") == [{"step": 1, "loss/x": 1.0}]
    assert run.checkpoint_path(12).name == "step_0000012"


def test_refuses_to_mix_runs(tmp_path):
    RunDir.create(tmp_path, ToyConfig(), seed=0).log_metrics(1, {"loss/x": 1.0})
    with pytest.raises(FileExistsError, match="resume"):
        RunDir.create(tmp_path, ToyConfig(), seed=0)


def test_truncated_last_line_is_ignored(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"step": 1}\n{"step": 2, "lo')
    assert read_jsonl(tmp_path / "m.jsonl") == [{"step": 1}]


def test_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboard")
    run = RunDir.create(tmp_path, ToyConfig(), seed=0, tensorboard=True)
    run.log_metrics(1, {"loss/x": 1.0})
    run.close()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_progress_plain_lines_when_not_a_tty():
    buf = io.StringIO()
    with progress(3, "train", stream=buf, every_s=0.0) as p:
        for i in range(3):
            p.update(loss=float(i))
    lines = buf.getvalue().splitlines()
    assert lines[-1].startswith("[train] 3/3") and "loss=2" in lines[-1]


def test_run_config_creates_and_resumes(tmp_path):
    from tether.core.rundir import RunConfig

    cfg = ToyConfig()
    run = RunDir.from_config(RunConfig(), cfg, default_dir=str(tmp_path / "default"))
    assert (tmp_path / "default" / "config.json").exists()
    again = RunDir.from_config(RunConfig(dir=str(run.path), resume=True), cfg, default_dir="unused")
    assert again.path == run.path
    with pytest.raises(ValueError, match="run.resume needs --run.dir"):
        RunConfig(resume=True)
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        RunDir.from_config(RunConfig(dir=str(tmp_path / "missing"), resume=True), cfg, default_dir="")
