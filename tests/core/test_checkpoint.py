import json
import random

import numpy as np
import pytest
import torch

from tether.core import checkpoint as ckpt_mod
from tether.core.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from tether.core.rundir import RunDir, read_jsonl
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

    def exploding_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt_mod.torch, "save", exploding_save)
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
