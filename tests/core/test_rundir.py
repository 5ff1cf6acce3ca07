import io
import json

import pytest
import torch

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
    from tether.core.checkpoint import save_checkpoint
    from tether.core.config import ConfigError
    from tether.core.rundir import RunConfig

    cfg = ToyConfig()
    run = RunDir.from_config(RunConfig(), cfg, default_dir=str(tmp_path / "default"))
    assert (tmp_path / "default" / "config.json").exists() and RunDir.state(run.path) == "started"
    with pytest.raises(ConfigError, match="stopped before its first checkpoint.*without --run.resume"):
        RunDir.from_config(RunConfig(dir=str(run.path), resume=True), cfg, default_dir="unused")
    save_checkpoint(run.checkpoint_path(1), {"w": torch.ones(2)})
    assert RunDir.state(run.path) == "resumable"
    again = RunDir.from_config(RunConfig(dir=str(run.path), resume=True), cfg, default_dir="unused")
    assert again.path == run.path
    with pytest.raises(ValueError, match="run.resume needs --run.dir"):
        RunConfig(resume=True)
    with pytest.raises(ConfigError, match="has no run, so there is nothing to continue"):
        RunDir.from_config(RunConfig(dir=str(tmp_path / "missing"), resume=True), cfg, default_dir="")


def wandb_records(path):
    """The protobuf records of an offline run-*.wandb file. It is a LevelDB-style log: a 7-byte file header, then
    32 KiB blocks of chunks crc32 (4 bytes) + length (2, little-endian) + type (1 full, 2 first, 3 middle, 4 last)
    + data; a block with under 7 bytes left is padded."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, out, buf, pos = path.read_bytes(), [], b"", 7
    while pos + 7 <= len(data):
        if pos % 32768 > 32768 - 7:
            pos += 32768 - pos % 32768
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        buf, pos = buf + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            out.append(pb.Record.FromString(buf))
            buf = b""
    return out


def test_rundir_calls_wandb_with_the_config_every_row_and_finish(tmp_path, monkeypatch):
    """The calls tether makes (a stand-in module: the real offline run is the slow test below)."""
    import sys
    import types

    from tether.core.rundir import RunConfig

    calls = []

    class FakeRun:
        def log(self, row, step):
            calls.append(("log", step, row))

        def finish(self):
            calls.append(("finish",))

    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: calls.append(("init", kw)) or FakeRun()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run = RunDir.from_config(RunConfig(wandb=True), ToyConfig(steps=3), default_dir=str(tmp_path / "r"))
    run.log_metrics(1, {"loss/x": 1.0})
    run.log_eval(1, {"eval/acc": 0.5})
    run.close()
    init = calls[0][1]
    assert init["mode"] == "offline" and init["config"] == json.loads((tmp_path / "r" / "config.json").read_text())
    assert [c[0] for c in calls] == ["init", "log", "log", "finish"] and calls[1][1:] == (1, {"loss/x": 1.0})


@pytest.mark.slow
def test_wandb_logs_the_config_and_every_row_offline(tmp_path, monkeypatch):
    """A real offline W&B run (slow lane: wandb starts a service process, which is slow on a loaded machine)."""
    pytest.importorskip("wandb")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):  # nothing outside tmp_path
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    from tether.core.rundir import RunConfig

    run = RunDir.from_config(RunConfig(wandb=True), ToyConfig(steps=3), default_dir=str(tmp_path / "r"))
    assert run._wandb.settings.mode == "offline"
    run.log_metrics(1, {"loss/x": 1.0})
    run.log_metrics(2, {"loss/x": 0.5})
    run.log_eval(2, {"eval/acc": 0.25})
    run.close()
    assert run._wandb is None
    [file] = (tmp_path / "r" / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(file)
    [meta] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {i.key: json.loads(i.value_json) for i in meta.config.update if not i.key.startswith("_")}
    assert config == json.loads((tmp_path / "r" / "config.json").read_text()) and meta.display_name == "r"
    rows = [{"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]
    assert [{k: v for k, v in row.items() if k in ("_step", "loss/x", "eval/acc")} for row in rows] == [
        {"_step": 1, "loss/x": 1.0}, {"_step": 2, "loss/x": 0.5, "eval/acc": 0.25}]   # eval joins its step's row


def test_wandb_missing_is_a_one_line_error_before_any_file(tmp_path, monkeypatch):
    import sys

    from tether.core.config import ConfigError
    from tether.core.rundir import RunConfig

    monkeypatch.setitem(sys.modules, "wandb", None)   # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'tether-rl\[wandb\]'") as e:
        RunConfig(wandb=True)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="wandb"):
        RunDir.create(tmp_path / "r", ToyConfig(), seed=0, wandb=True)
    assert not (tmp_path / "r").exists()
