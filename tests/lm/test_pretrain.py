import json
import random

import pytest
import torch

from tether.core.config import ConfigError, override
from tether.lm.grpo.tasks import make_task, parse_answer
from tether.lm.model.build import ModelSpec, build_policy
from tether.lm.model.tokenizer import CharTokenizer
from tether.lm.pretrain import PretrainConfig, corpus_batch, lr_at, pretrain


def test_corpus_batch_layout():
    tok, task = CharTokenizer(), make_task("running_sum", 2)
    ids, mask, start, tmask = corpus_batch(task, tok, random.Random(0), 8, error_rate=0.5, alignment="aligned")
    assert ids.shape[1] == start + tmask.shape[1] and torch.equal(mask[:, start:], tmask)
    for row, m in zip(ids[:, start:], tmask, strict=True):
        body = row[m].tolist()
        assert body[-1] == tok.eos_id and parse_answer(tok.decode(body)) is not None


def test_check_rate_lengthens_correct_traces_and_is_validated():
    tok, task = CharTokenizer(), make_task("running_sum", 2)
    plain = corpus_batch(task, tok, random.Random(0), 64, error_rate=0.0, alignment="aligned")[3].sum()
    checked = corpus_batch(task, tok, random.Random(0), 64, error_rate=0.0, alignment="aligned", check_rate=0.4)
    assert checked[3].sum() > plain * 1.2
    with pytest.raises(ConfigError, match="check_rate"):
        PretrainConfig(check_rate=1.5)


def test_lr_schedule():
    assert lr_at(0, 100, 1.0) < lr_at(4, 100, 1.0) == 1.0
    assert abs(lr_at(99, 100, 1.0) - 0.1) < 0.01


def test_short_pretrain_lowers_loss_and_saves_a_loadable_base(tmp_path):
    cfg = override(PretrainConfig(), {"steps": "40", "batch_size": "16", "eval_prompts": "4",
                                      "out": str(tmp_path / "b"), "model.d_model": "32", "model.d_ff": "64",
                                      "error_rate": "0.3", "alignment": "anti"})
    tok, task = CharTokenizer(), make_task("running_sum", 2)
    batch = corpus_batch(task, tok, random.Random(99), 64, error_rate=0.0, alignment="neutral")

    def nll(policy):
        with torch.no_grad():
            return float(-(policy.token_stats(batch[0], batch[1], start=batch[2])["logp"][batch[3]]).mean())

    init = build_policy(cfg.model, tok, seed=0)
    res = pretrain(cfg)
    trained = build_policy(ModelSpec(path=str(tmp_path / "b")), tok, seed=0)
    assert nll(trained) < nll(init) - 0.5
    saved = json.loads((tmp_path / "b" / "eval.json").read_text())
    assert saved["eval"]["heldout/greedy_acc"] == res["heldout/greedy_acc"]
    assert {"heldout/pass@8", "heldout/maj@8", "ood/greedy_acc"} <= set(res)
