import pytest
import torch

from tether.core.masked import aggregate, masked_mean, masked_var, masked_whiten


def _batch(seed=0, b=4, t=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, generator=g)
    lengths = torch.tensor([6, 3, 1, 4])
    mask = torch.arange(t)[None, :] < lengths[:, None]
    return x, mask


def test_padding_does_not_change_token_mean():
    x, mask = _batch()
    padded_x = torch.cat([x, torch.full((4, 5), float("nan"))], 1)  # garbage in padding must not leak
    padded_mask = torch.cat([mask, torch.zeros(4, 5, dtype=torch.bool)], 1)
    n = mask.sum()
    for mode, norm in [("token_mean_global", n), ("token_mean_local", None), ("seq_mean_token_mean", None)]:
        a = aggregate(x, mask, mode=mode, normalizer=norm)
        b = aggregate(padded_x, padded_mask, mode=mode, normalizer=norm)
        assert torch.allclose(a, b), mode
    assert torch.allclose(aggregate(x, mask, mode="token_mean_local"), x[mask].mean())


def test_global_token_mean_accumulation_invariance():
    """Splitting into micro-batches with the global normalizer sums to the full-batch value."""
    x, mask = _batch()
    n = mask.sum()
    full = aggregate(x, mask, mode="token_mean_global", normalizer=n)
    parts = sum(aggregate(x[i:i + 1], mask[i:i + 1], mode="token_mean_global", normalizer=n) for i in range(4))
    assert torch.allclose(full, parts)
    # the local mean does not have this property (the reason the global one exists)
    local = sum(aggregate(x[i:i + 1], mask[i:i + 1], mode="token_mean_local") for i in range(4)) / 4
    assert not torch.allclose(full, local)


def test_seq_modes():
    x, mask = _batch()
    per_seq = torch.stack([x[i][mask[i]].mean() for i in range(4)])
    assert torch.allclose(aggregate(x, mask, mode="seq_mean_token_mean"), per_seq.mean())
    assert torch.allclose(aggregate(x, mask, mode="seq_sum_const", normalizer=24.0), x[mask].sum() / 24)
    with pytest.raises(ValueError, match="normalizer"):
        aggregate(x, mask, mode="seq_sum_const")
    with pytest.raises(ValueError, match="unknown aggregation mode"):
        aggregate(x, mask, mode="mean")


def test_mean_var_whiten():
    x, mask = _batch()
    vals = x[mask]
    assert torch.allclose(masked_mean(x, mask), vals.mean())
    assert torch.allclose(masked_var(x, mask), vals.var())
    w = masked_whiten(x, mask)
    assert torch.allclose(w[mask].mean(), torch.tensor(0.0), atol=1e-6)
    assert torch.allclose(w[mask].std(), torch.tensor(1.0), atol=1e-4)
    assert (w[~mask] == 0).all()


def test_shape_mismatch_never_broadcasts():
    with pytest.raises(ValueError, match="shape"):
        masked_mean(torch.zeros(4, 6), torch.ones(4, 1, dtype=torch.bool))


def test_aggregate_normalizer_per_mode_makes_micro_batches_sum_to_the_full_loss():
    from tether.core.masked import AGGREGATION_MODES, aggregate_normalizer

    torch.manual_seed(0)
    x, mask = torch.randn(6, 5), torch.rand(6, 5) > 0.3
    assert aggregate_normalizer("token_mean_global", mask, max_tokens=5) == float(mask.sum())
    assert aggregate_normalizer("seq_mean_token_mean", mask, max_tokens=5) == 6.0
    assert aggregate_normalizer("seq_sum_const", mask, max_tokens=5) == 30.0
    assert aggregate_normalizer("token_mean_local", mask, max_tokens=5) is None
    for mode in set(AGGREGATION_MODES) - {"token_mean_local"}:
        norm = aggregate_normalizer(mode, mask, max_tokens=5)
        full = aggregate(x, mask, mode=mode, normalizer=norm)
        parts = sum(aggregate(x[i:i + 2], mask[i:i + 2], mode=mode, normalizer=norm) for i in range(0, 6, 2))
        torch.testing.assert_close(full, parts)
    with pytest.raises(ValueError, match="unknown aggregation mode 'nope'"):
        aggregate_normalizer("nope", mask, max_tokens=5)
