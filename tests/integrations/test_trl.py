"""The public entry point `tether.integrations.trl`: the TRL version pin, and tether rewards in a plain TRL trainer."""

import os

import pytest

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
pytest.importorskip("trl")

from tether.integrations import TRL_SUPPORTED, require_trl  # noqa: E402


def test_installed_trl_is_in_the_pinned_range():
    import trl

    import tether.integrations.trl as bridge

    assert bridge.TRL_VERSION == trl.__version__ == require_trl()
    assert TRL_SUPPORTED == (">=1.16", "<1.17")


@pytest.mark.parametrize("bad", ["1.15.2", "1.17.0", "0.20.0"])
def test_unsupported_trl_versions_fail_naming_version_and_range(bad):
    with pytest.raises(ImportError, match=rf"supports trl >=1.16,<1.17 .*installed: trl {bad}"):
        require_trl(bad)


def test_pin_accepts_patch_releases():
    assert require_trl("1.16.3") == "1.16.3"


def test_text_rewards_run_in_a_plain_trl_grpo_trainer(tmp_path):
    """Text-only tether rewards need nothing from the trainer: TRL's own GRPOTrainer and its generate() path."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from tether.integrations.trl import TetherReward
    from tether.lm.model.hf import tiny_hf_model
    from tether.lm.model.tokenizer import CharTokenizer, to_hf_tokenizer

    tok = CharTokenizer()
    ds = Dataset.from_dict({"prompt": ["S1,2?", "S3,4,5?"] * 4, "answer": [3, 12] * 4})
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=8,
                      num_generations=4, max_completion_length=8, max_steps=2, logging_steps=1, report_to="none",
                      save_strategy="no", gradient_checkpointing=False, beta=0.0, seed=0)
    rewards = [TetherReward("correct"), TetherReward("lp+format", num_generations=4)]
    tr = GRPOTrainer(model=tiny_hf_model("qwen2", vocab_size=tok.vocab_size, hidden=32, layers=2, heads=2,
                                         intermediate=64), processing_class=to_hf_tokenizer(tok),
                     reward_funcs=rewards, args=args, train_dataset=ds)
    tr.train()
    rows = [r for r in tr.state.log_history if "rewards/correct/mean" in r]
    assert len(rows) == 2 and all(r["rewards/correct/mean"] == 0.0 for r in rows)  # a random model never answers
    assert all(abs(r["rewards/lp+format/mean"]) < 1e-5 for r in rows)  # a mixture of group z-scores has mean 0
    assert all(r["reward/unparsable_frac"] == 1.0 for r in rows)
    with pytest.raises(RuntimeError, match="needs per-token statistics"):
        GRPOTrainer(model=tr.model, processing_class=to_hf_tokenizer(tok), reward_funcs=[TetherReward("ent")],
                    args=args, train_dataset=ds).train()
