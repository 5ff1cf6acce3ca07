import pytest
import torch

from tether.lm.rollout.quant import FP8_E4M3_MAX, cast_roundtrip, quant_fp8_e4m3, quant_int4, quant_int8


def _w(seed=0, shape=(16, 70)):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g) * torch.logspace(-3, 0, shape[0])[:, None]  # rows of very different scale
    w[3] = 0.0  # an all-zero row must stay exactly zero (no 0/0)
    return w


def test_int8_error_bound_and_levels():
    w = _w()
    q = quant_int8(w)
    scale = (w.abs().amax(1, keepdim=True) / 127).clamp(min=1e-30)
    assert ((w - q).abs() <= scale / 2 + 1e-7 * w.abs().amax(1, keepdim=True)).all()
    levels = q / torch.where(scale > 0, scale, 1)
    assert torch.allclose(levels[w.abs().amax(1) > 0], levels[w.abs().amax(1) > 0].round(), atol=1e-3)
    assert (q[3] == 0).all()
    # the row maximum is represented exactly (it maps to level +-127)
    assert torch.allclose(q.abs().amax(1), w.abs().amax(1))


def test_int4_groupwise_error_bound():
    w = _w()
    q = quant_int4(w, group=32)
    for g0 in range(0, 70, 32):
        blk, qb = w[:, g0:g0 + 32], q[:, g0:g0 + 32]
        scale = blk.abs().amax(1, keepdim=True) / 7
        assert ((blk - qb).abs() <= scale / 2 + 1e-6 * blk.abs().amax(1, keepdim=True)).all()
    assert q.shape == w.shape and (q[3] == 0).all()
    assert len(torch.unique(q[5, :32])) <= 16  # at most 16 int4 levels per group


def test_fp8_e4m3_relative_error_bound():
    w = _w()
    q = quant_fp8_e4m3(w)
    scale = w.abs().amax(1, keepdim=True) / FP8_E4M3_MAX
    scaled = (w / torch.where(scale > 0, scale, 1)).abs()
    normal = scaled >= 2.0 ** -6  # e4m3 smallest normal
    err = (w - q).abs()
    assert (err[normal] <= 2.0 ** -4 * w.abs()[normal] * (1 + 1e-6)).all()
    assert (err[~normal] <= (2.0 ** -10 * scale).expand_as(w)[~normal] * (1 + 1e-6)).all()
    assert (err > 0).any()  # it really quantises


@pytest.mark.parametrize("dtype,rel,subnormal_half_ulp", [(torch.bfloat16, 2.0 ** -8, 2.0 ** -134),
                                                         (torch.float16, 2.0 ** -11, 2.0 ** -25)])
def test_cast_roundtrip_bound(dtype, rel, subnormal_half_ulp):
    w = torch.randn(64, 64)
    q = cast_roundtrip(w, dtype)
    bound = torch.maximum(rel * w.abs(), torch.tensor(subnormal_half_ulp))
    assert ((w - q).abs() <= bound * (1 + 1e-6)).all() and not torch.equal(w, q)


def test_error_ordering_matches_precision():
    w = torch.randn(64, 256)
    errs = {name: (w - f(w)).abs().mean().item() for name, f in
            [("int8", quant_int8), ("fp8", quant_fp8_e4m3), ("int4", quant_int4)]}
    assert errs["int8"] < errs["fp8"] < errs["int4"]
