import json

import numpy as np
import pytest

from tether.core.config import ConfigError, parse_args
from tether.lm.intrinsic.prior_check import (
    PriorCheckConfig,
    auroc,
    auroc_within,
    mann_whitney_u,
    prior_check,
    run_prior_check,
)


def test_auroc_extremes_ties_and_one_class():
    y = np.array([1, 1, 0, 0], bool)
    assert auroc(np.array([3.0, 2.0, 1.0, 0.0]), y) == 1.0
    assert auroc(np.array([0.0, 1.0, 2.0, 3.0]), y) == 0.0
    assert auroc(np.ones(4), y) == 0.5
    assert np.isnan(auroc(np.arange(4.0), np.ones(4, bool)))


def pair_count_auroc(scores, labels):
    """The former implementation: every (positive, negative) pair, ties 1/2 (the reference)."""
    pos, neg = scores[labels], scores[~labels]
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                 / (len(pos) * len(neg)))


def test_auroc_by_ranks_matches_a_hand_count_with_ties():
    # positives 3, 2, 2; negatives 2, 1: pairs (3,2) (3,1) (2,1) (2,1) win, (2,2) (2,2) tie -> U = 4 + 2/2 = 5
    scores = np.array([3.0, 2.0, 2.0, 2.0, 1.0])
    labels = np.array([1, 1, 1, 0, 0], bool)
    assert mann_whitney_u(scores[labels], scores[~labels]) == 5.0
    assert auroc(scores, labels) == 5 / 6
    assert auroc([0.5, 0.5], [True, False]) == 0.5 and np.isnan(auroc([1.0, 2.0], [False, False]))


def test_auroc_by_ranks_equals_the_pair_count_exactly():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 60))
        scores = rng.integers(0, 5, size=n).astype(float)        # few values: many ties
        labels = rng.random(n) < 0.4
        if labels.all() or not labels.any():
            continue
        assert auroc(scores, labels) == pair_count_auroc(scores, labels)   # bit-identical, not approximately


def test_within_group_auroc_removes_the_difficulty_confound():
    # easy prompt: long-scoring, mostly right; hard prompt: low-scoring, mostly wrong; inside a prompt the
    # score is constant, so it carries no information GRPO could use
    scores = np.array([5.0, 5, 5, 5, 0, 0, 0, 0])
    labels = np.array([1, 1, 1, 0, 1, 0, 0, 0], bool)
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert auroc(scores, labels) > 0.7
    within, pairs = auroc_within(scores, labels, groups)
    assert within == 0.5 and pairs == 3 * 1 + 1 * 3
    within, _ = auroc_within(np.array([1.0, 0, 0, 0, 1, 0, 0, 0]), labels, groups)
    # pairs (a,d) win, (b,d) (c,d) ties, (e,f) (e,g) (e,h) wins
    assert within == pytest.approx((1 + 0.5 + 0.5 + 3) / 6)
    assert np.isnan(auroc_within(scores, np.ones(8, bool), groups)[0])


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="samples"):
        PriorCheckConfig(samples=1)
    with pytest.raises(ConfigError, match="rewards"):
        PriorCheckConfig(rewards=("lp", "nope"))
    cfg = parse_args(PriorCheckConfig, ["--model", "base:medium", "--task", "running_sum", "--samples", "8", "--json"])
    assert cfg.samples == 8 and cfg.json


def test_prior_check_on_the_medium_base_scores_every_reward():
    rows, summary = prior_check(PriorCheckConfig(n_prompts=16, samples=8, rewards=("lp", "ent", "cp", "majority",
                                                                                   "random", "lp+avg_ent")))
    assert [r["reward"] for r in rows] == ["lp", "ent", "cp", "majority", "random", "lp+avg_ent"]
    for r in rows:
        assert r["pairs"] > 0 and 0 <= r["auroc"] <= 1 and 0 <= r["auroc_within"] <= 1
    lp = next(r for r in rows if r["reward"] == "lp")
    assert lp["score_mean"] == pytest.approx(-summary["len_mean"])   # the trainer's reward, not a copy
    assert 0 < summary["pass@1"] < 1 and 0 < summary["diversity"] <= 1 and "maj@8" in summary
    assert next(r for r in rows if r["reward"] == "majority")["auroc_within"] > 0.6  # medium base: votes inform


def test_json_output_and_warning_when_nothing_separates(capsys):
    # an untrained model is never right: no AUROC is defined, so nothing separates and the command warns
    cfg = PriorCheckConfig(model="", n_prompts=4, samples=2, max_new_tokens=8, rewards=("ent", "random"), json=True)
    assert run_prior_check(cfg) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(x) for x in out.strip().splitlines()]
    assert [x.get("reward") for x in lines[:-1]] == ["ent", "random"] and lines[-1]["summary"] is True
    assert lines[-1]["pass@1"] == 0.0 and lines[-1]["informative"] == []
    assert "warning: no intrinsic reward separates" in err
