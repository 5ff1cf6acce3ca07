import json
import math
import random
import subprocess
import sys
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pytest
import safetensors.torch
import torch

from tether.core import checkpoint as ckpt_mod
from tether.core.checkpoint import (
    CheckpointWriteError,
    clean_stale,
    latest_checkpoint,
    load_checkpoint,
    load_latest,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from tether.core.config import ConfigError
from tether.core.rundir import RunDir, read_jsonl
from tether.core.stability import NonFiniteError
from tether.testing.toy import ToyConfig, ToyTrainer


def test_round_trip_model_optimizer_rng(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(7)
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "rng": rng_state({"g": gen}), "step": 3}
    save_checkpoint(tmp_path / "step_0000003", state, {"step": 3})
    expected = (random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=gen))

    loaded = load_checkpoint(tmp_path / "step_0000003")
    set_rng_state(loaded["rng"], {"g": gen})
    got = (random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=gen))
    assert got[0] == expected[0] and got[1] == expected[1]
    assert torch.equal(got[2], expected[2]) and torch.equal(got[3], expected[3])
    m2 = torch.nn.Linear(3, 2)
    m2.load_state_dict(loaded["model"])
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), m2.parameters(), strict=False))
    assert json.loads((tmp_path / "step_0000003" / "trainer_state.json").read_text()) == {"step": 3}


def test_crash_during_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "step_0000001", {"x": torch.ones(2)})

    def exploding_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(safetensors.torch, "save_file", exploding_save)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path / "step_0000002", {"x": torch.zeros(2)})
    assert latest_checkpoint(tmp_path).name == "step_0000001"  # the half-written one is invisible
    assert torch.equal(load_checkpoint(latest_checkpoint(tmp_path))["x"], torch.ones(2))
    assert not (tmp_path / "step_0000002").exists()


def test_replacing_same_step_is_atomic(tmp_path):
    save_checkpoint(tmp_path / "step_0000001", {"x": torch.ones(1)})
    save_checkpoint(tmp_path / "step_0000001", {"x": torch.zeros(1)})
    assert torch.equal(load_checkpoint(tmp_path / "step_0000001")["x"], torch.zeros(1))
    assert [p.name for p in tmp_path.iterdir()] == ["step_0000001"]


def test_resume_reproduces_uninterrupted_run_exactly(tmp_path):
    cfg = ToyConfig(steps=20, save_every=5)
    full = ToyTrainer(cfg, RunDir.create(tmp_path / "full", cfg, seed=0))
    full.fit()

    killed = ToyTrainer(cfg, RunDir.create(tmp_path / "killed", cfg, seed=0))
    with pytest.raises(KeyboardInterrupt):
        killed.fit(stop_after=13)  # killed between checkpoints 10 and 15: steps 11-13 are logged, then lost
    assert len(read_jsonl(tmp_path / "killed" / "metrics.jsonl")) == 13

    resumed = ToyTrainer(cfg, RunDir.open(tmp_path / "killed"))  # a fresh process would do exactly this
    resumed.resume()
    assert resumed.step_idx == 10
    resumed.fit()
    a = read_jsonl(tmp_path / "full" / "metrics.jsonl")
    b = read_jsonl(tmp_path / "killed" / "metrics.jsonl")
    assert len(a) == len(b) == 20
    assert a == b  # bit-exact floats, not approximately equal
    assert torch.equal(full.w, resumed.w)


def _assert_identical(a, b, where="state"):
    """Same types all the way down, same dict key order and key types, bit-identical tensors and arrays."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.requires_grad == b.requires_grad, where
        bits = lambda t: t.detach().contiguous().reshape(-1).view(torch.uint8)  # noqa: E731
        assert torch.equal(bits(a), bits(b)), where  # NaN payloads and -0.0 included
    elif isinstance(a, np.ndarray | np.generic):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), where
    elif isinstance(a, dict):
        assert [(type(k), k) for k in a] == [(type(k), k) for k in b], where
        assert getattr(a, "_metadata", None) == getattr(b, "_metadata", None), where
        for k in a:
            _assert_identical(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b)), where
    else:
        assert a == b, where


def _rich_state() -> tuple[dict, torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 3)).square().mean().backward()
        opt.step()
    base = torch.arange(12.0).reshape(3, 4)
    state = {
        "model": model.state_dict(), "optim": opt.state_dict(), "rng": rng_state({"g": torch.Generator()}),
        "prompt_rng": random.Random(3).getstate(),
        "nested": (1, (2.0, None, ("x", [True, False])), [], ()), "floats": [math.inf, -math.inf, math.nan, -0.0, 0.1],
        "keys": {0: "int", (1, "a"): "tuple", None: "none", 2.5: "float", True: "bool", "s": "str"},
        "reserved": {"__tensor__": "not a tensor", "__tuple__": [1]},
        "numpy": {"u32": np.arange(5, dtype=np.uint32), "f32": np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3),
                  "big_endian": np.arange(3, dtype=">i8"), "zero_d": np.array(2.5), "scalar": np.float64(1.5),
                  "int_scalar": np.int32(-3), "bool": np.array([True, False]), "c128": np.array([1 + 2j])},
        "tensors": {"t": base.t(), "whole": base, "row": base[1], "again": base, "empty": torch.zeros(0, 3),
                    "bf16": torch.tensor([1.5, -2.0], dtype=torch.bfloat16), "i64": torch.tensor([2**40, -1]),
                    "bool": torch.tensor([True, False]), "u8": torch.tensor([0, 255], dtype=torch.uint8),
                    "param": torch.nn.Parameter(torch.ones(2)), "scalar": torch.tensor(3.0, dtype=torch.float64)},
        "ordered": OrderedDict(b=1, a=2), "step": 3, "big_int": 2**80, "text": "naïve ☃", "flag": False, "none": None,
    }
    return state, model, opt


def test_round_trip_of_every_kind_of_value_is_identical(tmp_path):
    state, model, opt = _rich_state()
    save_checkpoint(tmp_path / "step_0000003", state, {"step": 3})
    loaded = load_checkpoint(tmp_path / "step_0000003")
    _assert_identical(state, loaded)
    assert loaded["tensors"]["whole"] is loaded["tensors"]["again"]  # one view saved twice: one tensor again
    assert loaded["model"]._metadata == model.state_dict()._metadata  # nn.Module versions survive

    m2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    m2.load_state_dict(loaded["model"])
    opt2 = torch.optim.AdamW(m2.parameters(), lr=1e-2)
    opt2.load_state_dict(loaded["optim"])
    x = torch.randn(8, 3)
    for m, o in ((model, opt), (m2, opt2)):  # the restored optimizer takes the very same next step
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), m2.state_dict().values(), strict=True))


def test_checkpoint_files_are_safetensors_and_strict_json(tmp_path):
    state, _, _ = _rich_state()
    path = save_checkpoint(tmp_path / "step_0000001", state, {"step": 1})
    assert sorted(p.name for p in path.iterdir()) == ["state.json", "tensors.safetensors", "trainer_state.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["step_0000001"]

    def no_constants(name):
        raise AssertionError(f"state.json is not strict JSON: {name}")

    doc = json.loads((path / "state.json").read_text(), parse_constant=no_constants)
    tensors = safetensors.torch.load_file(path / "tensors.safetensors")
    assert doc["state"]["optim"]["state"]["__dict__"][0][0] == 0  # int param ids stay ints
    assert tensors["rng/numpy/1"].dtype == torch.uint32 and tensors["rng/torch"].dtype == torch.uint8
    assert doc["state"]["floats"][:3] == [{"__float__": "inf"}, {"__float__": "-inf"}, {"__float__": "nan"}]


def _corrupt(path, how):
    if how == "truncated tensors":
        data = (path / "tensors.safetensors").read_bytes()
        (path / "tensors.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "corrupt json":
        (path / "state.json").write_text('{"version": 1, "state": {"x": ')
    elif how == "missing tensor key":
        (path / "state.json").write_text((path / "state.json").read_text().replace('"x"', '"gone"'))
    else:
        (path / how).unlink()


@pytest.mark.parametrize("how", ["truncated tensors", "corrupt json", "missing tensor key", "state.json",
                                 "tensors.safetensors"])
def test_load_latest_falls_back_past_a_broken_latest_checkpoint(tmp_path, how):
    save_checkpoint(tmp_path / "step_0000001", {"x": torch.ones(2)})
    save_checkpoint(tmp_path / "step_0000002", {"x": torch.zeros(2)})
    _corrupt(tmp_path / "step_0000002", how)
    with pytest.warns(RuntimeWarning, match="step_0000002") as warned:
        path, state = load_latest(tmp_path)
    assert len(warned) == 1 and "\n" not in str(warned[0].message)
    assert path.name == "step_0000001" and torch.equal(state["x"], torch.ones(2))
    with pytest.raises(ConfigError, match="step_0000002"):  # loading it directly: a one-line error, not a traceback
        load_checkpoint(tmp_path / "step_0000002")


def test_load_latest_returns_none_when_nothing_is_loadable(tmp_path):
    assert load_latest(tmp_path / "missing") is None and load_latest(tmp_path) is None
    save_checkpoint(tmp_path / "step_0000001", {"x": torch.ones(2)})
    _corrupt(tmp_path / "step_0000001", "truncated tensors")
    with pytest.warns(RuntimeWarning, match="step_0000001"):
        assert load_latest(tmp_path) is None


def test_directories_not_named_step_int_are_ignored(tmp_path):
    save_checkpoint(tmp_path / "step_0000007", {"x": torch.ones(1)})
    save_checkpoint(tmp_path / "step_abc", {"x": torch.zeros(1)})
    (tmp_path / "step_").mkdir()
    (tmp_path / "step_0000009").write_text("a file, not a checkpoint")
    assert latest_checkpoint(tmp_path).name == "step_0000007"
    assert load_latest(tmp_path)[0].name == "step_0000007"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_stale_removes_folders_of_dead_processes_only(tmp_path):
    ckpts, dead, live = tmp_path / "r" / "checkpoints", _dead_pid(), ckpt_mod.os.getpid()
    RunDir.create(tmp_path / "r", ToyConfig(), seed=0)
    save_checkpoint(ckpts / "step_0000003", {"x": torch.ones(1)})
    for name in (f".step_0000003.tmp-{dead}", f".step_0000003.old-{dead}", f".step_0000004.old-{dead}",
                 f".step_0000005.tmp-{live}", ".step_0000006.tmp-notapid"):
        (ckpts / name).mkdir()
    save_checkpoint(ckpts / "step_0000004", {"x": torch.zeros(1)})
    (ckpts / "step_0000004").rename(ckpts / f".step_0000004.old-{dead}")  # killed between a same-step save's renames
    assert latest_checkpoint(ckpts).name == "step_0000003"

    RunDir.open(tmp_path / "r")  # a run that starts or resumes cleans up
    assert sorted(p.name for p in ckpts.iterdir()) == [f".step_0000005.tmp-{live}", ".step_0000006.tmp-notapid",
                                                       "step_0000003", "step_0000004"]
    assert torch.equal(load_checkpoint(ckpts / "step_0000004")["x"], torch.zeros(1))  # the only copy, restored
    assert clean_stale(ckpts) == [] and clean_stale(tmp_path / "none") == []


@pytest.mark.parametrize("bad", [torch.tensor([1.0, math.nan]), torch.tensor([math.inf], dtype=torch.float16),
                                 torch.tensor([-math.inf], dtype=torch.bfloat16)])
def test_non_finite_tensor_is_never_saved(tmp_path, bad):
    save_checkpoint(tmp_path / "step_0000001", {"x": torch.ones(1)})
    state = {"fine": {"ints": torch.tensor([-1, 2**62]), "rng": rng_state(), "json_nan": math.nan},
             "opt": {"state": {0: {"exp_avg": torch.zeros(2)}, 1: {"exp_avg": bad}}}}
    with pytest.raises(NonFiniteError, match=r"state\['opt'\]\['state'\]\[1\]\['exp_avg'\]"):
        save_checkpoint(tmp_path / "step_0000002", state)
    assert [p.name for p in tmp_path.iterdir()] == ["step_0000001"]  # nothing written, not even a temp folder
    del state["opt"]
    save_checkpoint(tmp_path / "step_0000002", state)  # integer tensors, RNG states and JSON NaN are not checked


def test_unsupported_object_is_a_type_error_naming_its_key_path(tmp_path):
    @dataclass
    class Point:
        x: float

    with pytest.raises(TypeError, match=r"state\['dual'\]\[0\] is a .*Point.*convert it to a dict"):
        save_checkpoint(tmp_path / "step_0000001", {"dual": [Point(1.0)]})
    with pytest.raises(TypeError, match=r"state\['d'\] has a key of type Tensor"):
        save_checkpoint(tmp_path / "step_0000001", {"d": {torch.ones(()): 1}})
    assert list(tmp_path.iterdir()) == []


def test_old_pickled_checkpoint_is_refused_with_one_line(tmp_path):
    old = tmp_path / "step_0000004"
    old.mkdir()
    torch.save({"x": torch.ones(1)}, old / "state.pt")
    assert latest_checkpoint(tmp_path) == old  # so a resume reaches the clear error, instead of starting afresh
    for load in (lambda: load_checkpoint(old), lambda: load_latest(tmp_path)):
        with pytest.raises(ConfigError, match="checkpoint format changed") as err:
            load()
        assert str(old / "state.pt") in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("target", ["save_file", "open"])
def test_full_disk_is_one_line_error_and_leaves_previous_checkpoints(tmp_path, monkeypatch, target):
    save_checkpoint(tmp_path / "step_0000001", {"x": torch.ones(2)}, {"step": 1})

    def no_space(file, *args, **kwargs):
        raise OSError(28, "No space left on device")

    if target == "save_file":
        monkeypatch.setattr(safetensors.torch, "save_file", no_space)
    else:  # the JSON files, after the tensors were written
        monkeypatch.setattr(ckpt_mod, "open", no_space, raising=False)
    for step in (1, 2):  # a new step, and replacing the step that exists
        with pytest.raises(CheckpointWriteError, match=f"step_000000{step}.*No space left on device") as err:
            save_checkpoint(tmp_path / f"step_000000{step}", {"x": torch.zeros(2)}, {"step": step})
        assert isinstance(err.value, ConfigError) and isinstance(err.value, OSError) and err.value.errno == 28
        assert "\n" not in str(err.value)
        assert [p.name for p in tmp_path.iterdir()] == ["step_0000001"]
    assert torch.equal(load_latest(tmp_path)[1]["x"], torch.ones(2))
    assert json.loads((tmp_path / "step_0000001" / "trainer_state.json").read_text()) == {"step": 1}


def test_resume_falls_back_past_a_corrupted_checkpoint_and_stays_exact(tmp_path):
    cfg = ToyConfig(steps=20, save_every=5)
    full = ToyTrainer(cfg, RunDir.create(tmp_path / "full", cfg, seed=0))
    full.fit()
    killed = ToyTrainer(cfg, RunDir.create(tmp_path / "killed", cfg, seed=0))
    with pytest.raises(KeyboardInterrupt):
        killed.fit(stop_after=13)
    _corrupt(tmp_path / "killed" / "checkpoints" / "step_0000010", "truncated tensors")

    resumed = ToyTrainer(cfg, RunDir.open(tmp_path / "killed"))
    with pytest.warns(RuntimeWarning, match="step_0000010"):
        resumed.resume()
    assert resumed.step_idx == 5
    resumed.fit()
    assert read_jsonl(tmp_path / "full" / "metrics.jsonl") == read_jsonl(tmp_path / "killed" / "metrics.jsonl")
    assert torch.equal(full.w, resumed.w)
