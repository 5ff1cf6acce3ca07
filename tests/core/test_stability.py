import pytest
import torch

from tether.core.stability import NonFiniteError, NonFiniteGuard, clip_grad_norm


def test_skips_and_counts_then_stops_naming_step_and_checkpoint(tmp_path):
    g = NonFiniteGuard(max_consecutive=3)
    ok, nan = torch.tensor(1.0), torch.tensor(float("nan"))
    assert g.ok(ok, ok, step=0)
    assert not g.ok(nan, ok, step=1) and g.skipped == 1
    assert g.ok(ok, ok, step=2) and g.consecutive == 0  # a good step resets the streak
    assert not g.ok(ok, torch.tensor(float("inf")), step=3)
    assert not g.ok(nan, ok, step=4)
    with pytest.raises(NonFiniteError, match=r"3 consecutive non-finite steps, the last at step 5.*step_0000002"):
        g.ok(nan, ok, step=5, last_checkpoint=tmp_path / "step_0000002")
    assert g.skipped == 4


def test_clip_grad_norm_reports_preclip_norm():
    w = torch.nn.Parameter(torch.zeros(2))
    w.grad = torch.tensor([3.0, 4.0])
    assert clip_grad_norm([w], 1.0).item() == pytest.approx(5.0)
    assert w.grad.norm().item() == pytest.approx(1.0)
    w.grad = torch.tensor([float("nan"), 1.0])
    assert not torch.isfinite(clip_grad_norm([w], 1.0))


def test_toy_trainer_skips_nan_steps(tmp_path):
    from tether.core.rundir import RunDir
    from tether.testing.toy import ToyConfig, ToyTrainer

    cfg = ToyConfig(steps=4)
    t = ToyTrainer(cfg, RunDir.create(tmp_path, cfg, seed=0))
    t.step()
    w_before = t.w.detach().clone()
    t.w_true = t.w_true * float("nan")  # poison the data
    m = t.step()
    assert m["grad/skipped_steps"] == 1.0
    assert torch.equal(t.w.detach(), w_before)  # the poisoned step was not applied
