import pytest
import torch

from tether.core.metrics import Metrics
from tether.core.timing import Timer


def test_flush_means_and_resets():
    m = Metrics()
    m.log("loss/policy", torch.tensor(1.0))
    m.log("loss/policy", 3.0)
    m.log("kl/k3", torch.tensor([0.5]))
    assert m.flush() == {"loss/policy": 2.0, "kl/k3": 0.5}
    assert m.flush() == {}


@pytest.mark.parametrize("key", ["policy_loss", "foo/bar", "loss/", "Loss/x"])
def test_rejects_unknown_namespaces(key):
    with pytest.raises(ValueError, match="docs/metrics.md"):
        Metrics().log(key, 1.0)


def test_rejects_non_scalars():
    with pytest.raises(ValueError, match="scalar"):
        Metrics().log("loss/x", torch.ones(3))


def test_timer():
    t = Timer()
    with t("rollout"):
        sum(range(1000))
    out = t.flush()
    assert set(out) == {"time/rollout", "time/total"} and out["time/rollout"] >= 0
