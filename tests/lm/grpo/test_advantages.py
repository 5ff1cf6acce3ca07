import pytest
import torch

from tether.lm.grpo.advantages import ADVANTAGES, group_mean, group_zscore, rloo


def _loop(rewards, gids, kind, eps=1e-6):
    out = torch.zeros_like(rewards)
    for g in gids.unique():
        idx = (gids == g).nonzero()[:, 0]
        r = rewards[idx]
        for j, i in enumerate(idx):
            if kind == "z":
                out[i] = (r[j] - r.mean()) / (r.std() + eps)
            elif kind == "mean":
                out[i] = r[j] - r.mean()
            else:
                out[i] = r[j] - (r.sum() - r[j]) / (len(r) - 1)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_estimators_match_loop_references(seed):
    g = torch.Generator().manual_seed(seed)
    gids = torch.randint(0, 5, (40,), generator=g)
    gids = torch.cat([gids, torch.arange(5), torch.arange(5)])            # every group has >= 2 members
    rewards = torch.randn(50, generator=g, dtype=torch.float64)
    torch.testing.assert_close(group_zscore(rewards, gids, eps=1e-6), _loop(rewards, gids, "z"))
    torch.testing.assert_close(group_mean(rewards, gids, eps=1e-6), _loop(rewards, gids, "mean"))
    torch.testing.assert_close(rloo(rewards, gids, eps=1e-6), _loop(rewards, gids, "rloo"))


def test_invariances_and_zero_std_groups():
    gids = torch.arange(4).repeat_interleave(4)
    r = torch.rand(16, dtype=torch.float64)
    shift = torch.arange(4, dtype=torch.float64).repeat_interleave(4) * 10
    for name in ADVANTAGES.names():
        fn = ADVANTAGES.get(name)
        torch.testing.assert_close(fn(r + shift, gids, eps=1e-6), fn(r, gids, eps=1e-6))   # per-group shift
        torch.testing.assert_close(fn(r, gids, eps=1e-6).view(4, 4).sum(1), torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(group_zscore(3 * r, gids, eps=0.0), group_zscore(r, gids, eps=0.0))
    assert (group_zscore(torch.ones(8), torch.zeros(8, dtype=torch.long), eps=1e-6) == 0).all()


def test_errors():
    with pytest.raises(ValueError, match="at least 2"):
        rloo(torch.ones(3), torch.tensor([0, 0, 1]), eps=0.0)
    with pytest.raises(ValueError, match="1-D"):
        group_mean(torch.ones(3), torch.zeros(4, dtype=torch.long), eps=0.0)
