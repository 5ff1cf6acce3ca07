"""Each intrinsic reward's sign and implicit length incentive on hand-built distributions (intrinsic.md §1.2)."""

import math

import pytest
import torch

from tether.core.config import ConfigError
from tether.lm.grpo.rewards import REWARDS, RewardInput, RewardOptions, compute_rewards, reward_needs
from tether.lm.intrinsic import rewards as intrinsic
from tether.lm.intrinsic.rewards import renyi_stat
from tether.lm.model.policy import score_tokens

V = 4


def _batch(kind: str, lengths: list[int], T: int = 10, options=None, parsed=None, groups=None) -> RewardInput:
    """Completions whose every token comes from a uniform (kind='uniform') or near-one-hot distribution."""
    B = len(lengths)
    logits = (torch.zeros(B, T, V) if kind == "uniform"
              else torch.full((B, T, V), -30.0).index_fill_(2, torch.tensor([1]), 0.0))
    tokens = torch.ones(B, T, dtype=torch.long)  # token 1: the likely one under the one-hot distribution
    stats = score_tokens(logits, tokens, stats=("entropy", "collision", "self_certainty",
                                                renyi_stat((options or RewardOptions()).renyi_alpha)))
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    return RewardInput([None] * B, [""] * B, parsed or [None] * B, torch.tensor(groups or [0] * B), tokens, mask,
                       stats, options or RewardOptions())


SHORT_BETTER = {"lp", "ent", "renyi", "em_seq", "rlsc"}
LENGTH_NEUTRAL = {"avg_ent", "self_certainty", "rent"}
LONG_BETTER = {"cp"}  # the verbosity bonus the paper reports as collapsing everywhere


@pytest.mark.parametrize("name", sorted(SHORT_BETTER | LENGTH_NEUTRAL | LONG_BETTER))
def test_sign_certain_beats_uncertain_and_length_incentive(name):
    fn = REWARDS.get(name)
    certain, uncertain = fn(_batch("onehot", [5])), fn(_batch("uniform", [5]))
    if name != "lp":  # LP ignores certainty
        assert certain.item() > uncertain.item(), name
    short, long = fn(_batch("uniform", [1, 10]))
    if name in SHORT_BETTER:
        assert short > long
    elif name in LONG_BETTER:
        assert long > short
    else:
        assert short.item() == pytest.approx(long.item(), abs=1e-6)


def test_hand_computed_values():
    b = _batch("uniform", [1, 10])
    assert torch.allclose(REWARDS.get("lp")(b), torch.tensor([-1.0, -10.0]))
    assert torch.allclose(REWARDS.get("ent")(b), -torch.tensor([1.0, 10.0]) * math.log(V))
    assert torch.allclose(REWARDS.get("avg_ent")(b), torch.full((2,), -math.log(V)))
    assert torch.allclose(REWARDS.get("cp")(b), torch.tensor([1.0, 10.0]) / V)
    assert torch.allclose(REWARDS.get("renyi")(b), -torch.tensor([1.0, 10.0]) * math.log(V))  # uniform: H_a = log V
    assert torch.allclose(REWARDS.get("self_certainty")(b), torch.full((2,), math.log(V)))
    assert torch.allclose(REWARDS.get("em_seq")(b), torch.tensor([1.0, 10.0]) * -math.log(V))
    assert torch.allclose(REWARDS.get("rlsc")(b), torch.tensor([V ** -1, V ** -10.0]))


def test_renyi_alpha_is_configurable():
    p = torch.tensor([0.7, 0.2, 0.05, 0.05])
    for alpha in (0.5, 2.0, 3.0):
        b = _batch("uniform", [1], options=RewardOptions(renyi_alpha=alpha))
        b.stats[renyi_stat(alpha)] = score_tokens(p.log()[None, None].expand(1, 10, V), b.tokens,
                                                  stats=(renyi_stat(alpha),))[renyi_stat(alpha)]
        expected = math.log((p ** alpha).sum().item()) / (1 - alpha)
        assert REWARDS.get("renyi")(b).item() == pytest.approx(-expected, rel=1e-5)
    assert REWARDS.get("renyi").needs(RewardOptions(renyi_alpha=3.0)) == ("renyi_3",)
    assert reward_needs("lp+renyi+ent", RewardOptions(renyi_alpha=0.5)) == ("renyi_0.5", "entropy")
    with pytest.raises(ConfigError, match="renyi_alpha"):
        RewardOptions(renyi_alpha=1.0)


def test_rent_uses_last_k_tokens():
    b = _batch("onehot", [10], options=RewardOptions(rent_last_k=3))
    b.stats["entropy"] = torch.arange(10.0)[None]  # entropies 0..9
    assert REWARDS.get("rent")(b).item() == pytest.approx(-8.0)  # mean of 7, 8, 9


def test_majority_semantic_random():
    b = _batch("uniform", [3] * 6, parsed=[5, 5, 7, None, 2, 2], groups=[0, 0, 0, 1, 1, 1])
    assert REWARDS.get("majority")(b).tolist() == [1, 1, 0, 0, 1, 1]
    assert torch.allclose(REWARDS.get("semantic")(b), torch.tensor([2 / 3, 2 / 3, 1 / 3, 0, 2 / 3, 2 / 3]))
    torch.manual_seed(0)
    r = REWARDS.get("random")(_batch("uniform", [3] * 4000))
    assert set(r.unique().tolist()) == {0.0, 1.0} and abs(r.mean().item() - 0.5) < 0.05  # 6.3 sd: p < 1e-9


def test_mixture_normalises_each_term_within_group():
    b = _batch("uniform", [1, 10, 2, 20], groups=[0, 0, 1, 1])
    mix = compute_rewards("lp+avg_ent", b)  # avg_ent is constant here: contributes 0 after z-scoring
    z = 2 ** -0.5  # two samples per group, Bessel-corrected std (the GRPO z-score)
    assert torch.allclose(mix, torch.tensor([z, -z, z, -z]), atol=1e-4)
    assert set(intrinsic.INTRINSIC) <= set(REWARDS.names())
