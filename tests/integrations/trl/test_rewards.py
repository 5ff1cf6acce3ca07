"""TetherReward with TRL's reward-function signature, called directly (no trainer)."""

import pytest

pytest.importorskip("trl")

import torch  # noqa: E402

from tether.integrations.trl.rewards import TetherReward  # noqa: E402
from tether.integrations.trl.trainer import TetherBatch  # noqa: E402
from tether.lm.grpo.rewards import RewardOptions  # noqa: E402
from tether.lm.grpo.tasks import make_task  # noqa: E402

IDS = [[5, 6, 1], [7, 1], [5, 5, 5, 5], [1]]  # completion ids as TRL passes them (EOS = 1 included)
TEXTS = ["1#3", "#12", "#4", ""]
PROMPTS = ["S1,2?"] * 2 + ["S3,4,5?"] * 2


def test_text_rewards_follow_tether_definitions():
    assert TetherReward("lp")(PROMPTS, TEXTS, IDS) == [-3.0, -2.0, -4.0, -1.0]
    assert TetherReward("format")(PROMPTS, TEXTS, IDS) == [1.0, 1.0, 1.0, 0.0]
    assert TetherReward("correct")(PROMPTS, TEXTS, IDS, answer=[3, 3, 12, 12]) == [1.0, 0.0, 0.0, 0.0]
    assert TetherReward("majority", num_generations=2)(PROMPTS, ["#3", "#3", "#4", "#5"], IDS) == [1.0, 1.0, 1.0, 0.0]


def test_a_tasks_parser_reads_free_text_answers():
    words = ["The answer is 3.", "So 1 + 2 = 4", "\\boxed{12}", "I am not sure."]
    assert TetherReward("correct")(PROMPTS, words, IDS, answer=[3, 3, 12, 12]) == [0.0, 0.0, 0.0, 0.0]
    parse = make_task("word_problems", 1).parse
    assert TetherReward("correct", parse=parse)(PROMPTS, words, IDS, answer=[3, 3, 12, 12]) == [1.0, 0.0, 1.0, 0.0]
    assert TetherReward("format", parse=parse)(PROMPTS, words, IDS) == [1.0, 1.0, 1.0, 0.0]


def test_conversational_completions_use_the_last_turn():
    conv = [[{"role": "assistant", "content": t}] for t in TEXTS]
    assert TetherReward("format")(PROMPTS, conv, IDS) == [1.0, 1.0, 1.0, 0.0]


def test_misuse_fails_naming_the_problem():
    with pytest.raises(Exception, match="reward"):
        TetherReward("no_such_reward")
    with pytest.raises(ValueError, match="column 'answer'"):
        TetherReward("correct")(PROMPTS, TEXTS, IDS)
    with pytest.raises(ValueError, match="num_generations"):
        TetherReward("majority")(PROMPTS, TEXTS, IDS)
    with pytest.raises(RuntimeError, match="TetherGRPOTrainer"):
        TetherReward("avg_ent")(PROMPTS, TEXTS, IDS)


def test_logit_rewards_read_the_bound_trainers_statistics():
    """Statistics come from the trainer's batch, possibly wider than the completions (TRL's pad_to_multiple_of)."""
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]]).bool()
    ent = torch.arange(24.0).reshape(4, 6)
    stats = {"entropy": ent, "logp": -ent, "renyi_3": ent / 2}

    class Source:
        num_generations = 2
        tether_batch = TetherBatch(mask, torch.tensor([0, 0, 1, 1]), stats)

    r = TetherReward("avg_ent")
    r.bind(Source())
    assert r.needs == ("entropy",)
    assert r(PROMPTS, TEXTS, IDS) == [-1.0, -6.5, -13.5, -18.0]
    s = TetherReward("renyi", options=RewardOptions(renyi_alpha=3.0))
    s.bind(Source())
    assert s.needs == ("renyi_3",) and s(PROMPTS, TEXTS, IDS) == [-1.5, -6.5, -27.0, -9.0]
    em = TetherReward("em_seq")
    em.bind(Source())
    assert em(PROMPTS, TEXTS, IDS) == [-3.0, -13.0, -54.0, -18.0]


def test_metrics_go_through_trls_log_metric():
    logged = {}
    TetherReward("lp")(PROMPTS, TEXTS, IDS, answer=[3, 3, 12, 12], log_metric=logged.__setitem__)
    assert logged["reward/unparsable_frac"] == 0.25
    # ranks of rewards [2, 3, 1, 4] against correctness [4, 2, 2, 2] (ties averaged): -1 / sqrt(5 * 3)
    assert logged["diag/reward_acc_spearman"] == pytest.approx(-(15 ** -0.5))
