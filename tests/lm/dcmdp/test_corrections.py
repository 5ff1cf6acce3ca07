import math

import pytest
import torch

from tether.core.config import ConfigError
from tether.lm.grpo.corrections import CORRECTIONS, CorrectionConfig, CorrectionInputs, apply_corrections


def _inputs(lam=0.5):
    # sequence 0: ratios r = (2, 0.25) ; sequence 1: r = (1, 8) then padding
    train = torch.log(torch.tensor([[0.4, 0.1, 0.5], [0.3, 0.8, 0.5]]))
    roll = torch.log(torch.tensor([[0.2, 0.4, 0.5], [0.3, 0.1, 0.9]]))
    mask = torch.tensor([[True, True, False], [True, True, False]])
    return CorrectionInputs(train, roll, mask, torch.tensor([0, 0]), lam)


def _run(name, **kw):
    return apply_corrections(_inputs(), CorrectionConfig(name=name, **kw))


def test_none_is_identity():
    c = _run("none")
    assert (c.weight == 1).all() and torch.equal(c.keep, _inputs().mask) and (c.adv_shift == 0).all()


def test_tis_token_caps():
    c = _run("tis_token", cap=2.0)
    assert torch.allclose(c.weight[0, :2], torch.tensor([2.0, 0.25]))
    assert torch.allclose(c.weight[1, :2], torch.tensor([1.0, 2.0]))  # 8 capped at 2


def test_tis_and_mis_sequence():
    c = _run("tis_seq", cap=2.0)
    assert torch.allclose(c.weight[0, :2], torch.full((2,), 0.5))  # rho = 2 * 0.25
    assert torch.allclose(c.weight[1, :2], torch.full((2,), 2.0))  # rho = 8, capped
    m = _run("mis_seq", cap=2.0)
    assert m.keep[0, :2].all() and not m.keep[1].any()  # rho = 8 > 2 drops the whole sequence
    assert torch.allclose(m.weight[0, :2], torch.full((2,), 0.5))


def test_mis_token_and_icepop_masks():
    m = _run("mis_token", cap=3.0)
    assert m.keep.tolist() == [[True, True, False], [True, False, False]]
    ice = _run("icepop", band_low=0.5, band_high=5.0)
    assert ice.keep.tolist() == [[True, False, False], [True, False, False]]  # 0.25 and 8 leave the band
    assert torch.allclose(ice.weight[0, 0], torch.tensor(2.0))


def test_dcmdp_variants_on_hand_built_batch():
    delta = torch.tensor([[0.2, 0.3, 0.0], [0.0, 0.7, 0.0]])  # |p_train - p_inf|, zero on padding
    c = _run("dcmdp", variant="token_immediate")
    assert torch.allclose(c.adv_shift, -0.5 * delta)
    c = _run("dcmdp", variant="token_to_go")
    to_go = torch.tensor([[0.5, 0.3, 0.0], [0.7, 0.7, 0.0]])
    base = to_go.mean(0, keepdim=True)  # both sequences are in group 0
    expected = torch.where(_inputs().mask, -0.5 * (to_go - base), torch.zeros(2, 3))
    assert torch.allclose(c.adv_shift, expected)
    c = _run("dcmdp", variant="sequence_reward")
    assert torch.allclose(c.reward_shift, -0.5 * torch.tensor([0.25, 0.35]))
    assert (c.adv_shift == 0).all()
    c = _run("dcmdp", variant="differentiable")
    assert c.penalty == 0.5 and (c.adv_shift == 0).all()


def test_stacking_dcmdp_with_tis():
    c = _run("dcmdp+tis_token")
    assert torch.allclose(c.weight, _run("tis_token").weight)
    assert torch.allclose(c.adv_shift, _run("dcmdp").adv_shift)


def test_bad_configs_name_the_field():
    with pytest.raises(ConfigError, match="correction.name"):
        CorrectionConfig(name="tis")
    with pytest.raises(ConfigError, match="correction.band_low"):
        CorrectionConfig(band_low=6.0)
    with pytest.raises(ConfigError, match="lambda_init"):
        CorrectionConfig(lambda_init=2.0)
    with pytest.raises(ConfigError, match="correction.geo_threshold"):
        CorrectionConfig(geo_threshold=0.9)
    assert set(CORRECTIONS.names()) == {"none", "tis_token", "tis_seq", "mis_token", "mis_seq", "geo_rs", "icepop",
                                        "dcmdp"}


def test_weights_are_detached():
    inp = _inputs()
    train = inp.train_logp.clone().requires_grad_(True)
    c = apply_corrections(CorrectionInputs(train, inp.rollout_logp, inp.mask, inp.group_ids, 0.1),
                          CorrectionConfig(name="tis_token"))
    assert not c.weight.requires_grad
    assert math.isfinite(c.weight.sum().item())


def _extreme(T=40):
    # 40 tokens each at log r = +60 (clamped to +20 per token): an unclamped sum is exp(800) = inf in float32
    train = torch.zeros(2, T)
    roll = torch.full((2, T), -60.0)
    roll[1] = 0.0                                    # sequence 1: no mismatch
    return CorrectionInputs(train, roll, torch.ones(2, T, dtype=torch.bool), torch.tensor([0, 0]), 1.0)


@pytest.mark.parametrize("name", ["tis_seq", "mis_seq", "geo_rs", "tis_token", "mis_token", "icepop"])
def test_extreme_log_ratios_give_finite_weights_and_loss(name):
    c = apply_corrections(_extreme(), CorrectionConfig(name=name))
    assert torch.isfinite(c.weight).all(), name
    per_token = torch.ones(2, 40) * c.weight * c.keep           # what the trainer multiplies the PPO loss by
    assert torch.isfinite(per_token).all() and not per_token.isnan().any(), name


def test_sequence_ratio_is_clamped_after_the_sum():
    from tether.lm.dcmdp.corrections import seq_log_ratio

    assert seq_log_ratio(_extreme()).tolist() == [20.0, 0.0]
    m = apply_corrections(_extreme(), CorrectionConfig(name="mis_seq"))
    assert not m.keep[0].any() and m.keep[1].all() and (m.weight[0] == 0).all()


def test_geo_rs_is_length_neutral():
    # every token at r = 1.01: rho = 1.01^T grows with T, the geometric mean stays 1.01 at any length
    for T in (5, 80):
        roll = torch.full((1, T), math.log(1 / 1.01))
        inp = CorrectionInputs(torch.zeros(1, T), roll, torch.ones(1, T, dtype=torch.bool), torch.tensor([0]), 0.0)
        assert not apply_corrections(inp, CorrectionConfig(name="geo_rs", geo_threshold=1.005)).keep.any()
        assert apply_corrections(inp, CorrectionConfig(name="geo_rs", geo_threshold=1.02)).keep.all()


def test_token_immediate_penalises_both_signs_of_the_gap():
    # token 0: p_train > p_inf; token 1: p_train < p_inf; both get the same negative shift (documented behaviour)
    train = torch.log(torch.tensor([[0.6, 0.2]]))
    roll = torch.log(torch.tensor([[0.4, 0.4]]))
    inp = CorrectionInputs(train, roll, torch.ones(1, 2, dtype=torch.bool), torch.tensor([0]), 1.0)
    c = apply_corrections(inp, CorrectionConfig(name="dcmdp", variant="token_immediate"))
    assert torch.allclose(c.adv_shift, torch.tensor([[-0.2, -0.2]]))
