import math
from dataclasses import replace

import pytest
import torch

from tether.core.config import ConfigError, override, parse_args
from tether.core.rundir import RunDir, read_jsonl
from tether.lm.grpo.config import PRESETS, TrainConfig, smoke
from tether.lm.grpo.trainer import GRPOTrainer
from tether.testing.docs import undocumented
from tether.testing.lm import tiny_train_config


def test_end_to_end_changes_parameters_and_logs_documented_finite_metrics(tmp_path):
    cfg = tiny_train_config()
    run = RunDir.create(tmp_path / "run", cfg, seed=0)
    tr = GRPOTrainer(cfg, run)
    before = [p.detach().clone() for p in tr.policy.module.parameters()]
    tr.fit()
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.policy.module.parameters(), strict=True))
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl") + read_jsonl(tmp_path / "run" / "eval.jsonl")
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [1, 2]
    keys = {k for r in rows for k in r if k != "step"}
    assert all(math.isfinite(v) for r in rows for k, v in r.items())
    assert undocumented(keys) == []
    samples = read_jsonl(tmp_path / "run" / "samples" / "step_0000001.jsonl")
    assert len(samples) == 16 and {"prompt", "completion", "reward", "advantage"} <= set(samples[0])
    assert (tmp_path / "run" / "checkpoints" / "step_0000002").is_dir()


def _grads(tr, batch, micro):
    """Gradients through the recompute path (a fused batch's attached forward would be consumed once)."""
    batch = replace(batch, live_logp=None)
    tr.cfg = replace(tr.cfg, optim=replace(tr.cfg.optim, micro_batch=micro))
    tr.policy.module.zero_grad(set_to_none=True)
    tr.backward(batch)
    return [p.grad.clone() for p in tr.params]


@pytest.mark.parametrize("mode", ["token_mean_global", "seq_mean_token_mean", "seq_sum_const"])
def test_gradient_accumulation_1x8_equals_8x1(mode):
    tr = GRPOTrainer(tiny_train_config(**{"algo.aggregation": mode, "rollout.prompts_per_step": "2"}))
    batch, _ = tr.prepare(tr.rollout(), lam=0.0)
    g_one = _grads(tr, batch, micro=0)
    g_acc = _grads(tr, batch, micro=1)
    for a, b in zip(g_one, g_acc, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_loss_ignores_padding_length():
    tr = GRPOTrainer(tiny_train_config(**{"correction.name": "dcmdp+tis_token"}))  # corrections must ignore padding too
    batch, _ = tr.prepare(tr.rollout(), lam=0.5)
    g = _grads(tr, batch, micro=0)
    extra = 5
    pad = lambda x, v: torch.cat([x, torch.full((x.shape[0], extra), v, dtype=x.dtype)], 1)
    c = batch.correction
    padded = replace(batch, ids=pad(batch.ids, 0), mask=pad(batch.mask, False), comp_mask=pad(batch.comp_mask, False),
                     rollout_logp=pad(batch.rollout_logp, 0.0), old_logp=pad(batch.old_logp, 0.0),
                     correction=replace(c, weight=pad(c.weight, 1.0), keep=pad(c.keep, False),
                                        adv_shift=pad(c.adv_shift, 0.0)))
    for a, b in zip(g, _grads(tr, padded, micro=0), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_resume_is_exact(tmp_path):
    cfg = tiny_train_config(**{"steps": "4", "run.save_every": "2"})
    straight = GRPOTrainer(cfg, RunDir.create(tmp_path / "a", cfg, seed=0))
    straight.fit()
    cfg2 = override(cfg, {"steps": "2"})
    first = GRPOTrainer(cfg2, RunDir.create(tmp_path / "b", cfg2, seed=0))
    first.fit()
    resumed = GRPOTrainer(cfg, RunDir.open(tmp_path / "b"))
    resumed.resume()
    resumed.fit()
    for a, b in zip(straight.policy.module.parameters(), resumed.policy.module.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("over", [{}, {"algo.filter_zero_std": "true", "correction.name": "dcmdp+tis_token",
                                   "correction.variant": "differentiable"}, {"model.arch": "qwen2"},
                                  {"model.arch": "qwen2", "model.lora_r": "4"}])
def test_fused_forward_equals_the_separate_theta_old_forward(over):
    """One optimizer step per batch: reusing the update's forward as theta_old changes only rounding."""
    fused, plain = GRPOTrainer(tiny_train_config(**over)), GRPOTrainer(tiny_train_config(**over))
    assert fused.fused and not GRPOTrainer(tiny_train_config(**{"optim.ppo_epochs": "2"})).fused
    plain.fused = False
    for _ in range(2):
        m_fused, m_plain = fused.step(), plain.step()
    assert m_fused["mismatch/delta_mean"] == m_plain["mismatch/delta_mean"] == 0.0
    assert m_fused["clip/ratio_mean"] == 1.0
    # Adam divides by sqrt(v): on elements whose gradient is near zero, rounding-level gradient differences move
    # the parameter by a small fraction of lr per step, so the bound is relative to lr, not to the parameter
    atol = 5e-3 * fused.cfg.optim.lr
    for a, b in zip(fused.policy.module.parameters(), plain.policy.module.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=1e-4)
    torch.testing.assert_close(m_fused["loss/total"], m_plain["loss/total"], atol=1e-6, rtol=1e-5)


def test_kl_multi_epoch_minibatch_zero_std_filter_and_bf16_paths():
    tr = GRPOTrainer(tiny_train_config(**{"algo.kl_coef": "0.1", "optim.ppo_epochs": "2", "optim.minibatches": "2",
                             "algo.filter_zero_std": "true", "optim.bf16": "true", "algo.clip_high": "0.28"}))
    m = tr.step()
    assert {"kl/ref", "rollout/filtered_frac", "clip/ratio_mean"} <= set(m)
    assert all(math.isfinite(v) for v in m.values())
    assert m["time/old_logp"] > 0 and m["time/ref_logp"] > 0


def test_bad_configs_raise_clear_errors():
    with pytest.raises(ConfigError, match="group_size"):
        override(smoke(), {"rollout.group_size": "1"})
    with pytest.raises(ConfigError, match="clip_high"):
        override(smoke(), {"algo.clip_low": "0.3", "algo.clip_high": "0.2"})
    with pytest.raises(ConfigError, match="task.name"):
        override(smoke(), {"task.name": "chess"})
    with pytest.raises(ConfigError, match="algo.advantage"):
        override(smoke(), {"algo.advantage": "gae"})
    with pytest.raises(ConfigError, match="rollout.precision"):
        override(smoke(), {"rollout.precision": "fp7"})
    with pytest.raises(ConfigError, match="preset"):
        parse_args(TrainConfig, ["--preset", "huge"], presets=PRESETS)
    with pytest.raises(ValueError, match="max_seq_len"):
        GRPOTrainer(tiny_train_config(**{"model.max_seq_len": "16"}))


def test_presets_parse():
    cfg = parse_args(TrainConfig, ["--preset", "smoke", "--rollout.precision", "bf16", "--run.dir", "/tmp/x"],
                     presets=PRESETS)
    assert cfg.preset == "smoke" and cfg.rollout.precision == "bf16" and cfg.run.dir == "/tmp/x"
    assert PRESETS["gsm-tiny"]().model.path == "base:medium"


# ---------------------------------------------------------------------- the TRL-shaped Python API

ADD = [{"prompt": f"{a}+{b}=", "answer": a + b, "level": "easy"} for a in range(5) for b in range(5)]


def _hf_llama(vocab: int):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg)


def test_hf_model_tokenizer_reward_function_and_dataset_train():
    from tether.lm.model.tokenizer import CharTokenizer, to_hf_tokenizer

    tok = to_hf_tokenizer(CharTokenizer())
    model = _hf_llama(len(tok))
    seen = {}

    def exact(prompts, completions, answer, **kw):   # TRL's reward-function signature
        seen.update(kw, prompts=prompts, answer=answer)
        return [float(c.strip() == str(x)) for c, x in zip(completions, answer, strict=True)]

    cfg = tiny_train_config(**{"rollout.max_new_tokens": "4"})
    tr = GRPOTrainer(cfg, model=model, tokenizer=tok, reward_funcs=[exact, "test_length"], train_dataset=ADD,
                     verifier=lambda c, x: c.strip() == str(x))
    before = [p.detach().clone() for p in model.parameters()]
    m = tr.step()
    assert "reward/mean" in m and math.isfinite(m["reward/mean"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # the HF model trained
    assert all(p in ADD_PROMPTS for p in seen["prompts"]) and seen["level"] == ["easy"] * len(seen["prompts"])
    assert len(seen["completion_ids"]) == len(seen["prompts"]) and tr.eval_sets() == {}


ADD_PROMPTS = {r["prompt"] for r in ADD}


def test_replacing_the_policy_trains_the_new_one():
    tr = GRPOTrainer(tiny_train_config())
    other = GRPOTrainer(tiny_train_config(**{"run.seed": "1"})).policy
    tr.policy = other
    assert {id(p) for g in tr.opt.param_groups for p in g["params"]} == {id(p) for p in other.module.parameters()}
    before = [p.detach().clone() for p in other.module.parameters()]
    tr.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, other.module.parameters(), strict=True))


def test_a_verifier_decides_accuracy_the_correct_reward_and_evaluation():
    rows = [{"prompt": "1+1=", "answer": "two"}, {"prompt": "2+2=", "answer": "four"}]
    always = lambda completion, answer: isinstance(answer, str)   # a verifier for non-integer answers
    tr = GRPOTrainer(tiny_train_config(), reward_funcs=["correct"], train_dataset=rows, eval_dataset=rows,
                     verifier=always)
    m = tr.step()
    assert m["reward/accuracy"] == 1.0 and m["reward/mean"] == 1.0
    res = tr.evaluate()
    assert res["eval/eval/greedy_acc"] == 1.0 and "eval/eval/maj@2" not in res   # maj@k needs the #int parser


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(reward_funcs=[42]), TypeError, "reward_funcs: got int"),
    (dict(reward_funcs=["nope"]), ValueError, "unknown reward 'nope'"),
    (dict(train_dataset=[{"text": "x"}]), ValueError, r"train_dataset\[0\].*'prompt' string"),
    (dict(train_dataset=[]), ValueError, "empty dataset"),
    (dict(model="gpt2"), TypeError, "model: got str"),
    (dict(tokenizer=3), TypeError, "tokenizer: got int"),
])
def test_bad_api_arguments_fail_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        GRPOTrainer(tiny_train_config(), **kwargs)


def test_a_model_passed_as_the_run_is_a_clear_error():
    with pytest.raises(TypeError, match="expected a tether RunDir"):
        GRPOTrainer(tiny_train_config(), GRPOTrainer(tiny_train_config()).policy)


def test_a_reward_function_with_the_wrong_output_is_named():
    tr = GRPOTrainer(tiny_train_config(), reward_funcs=[lambda prompts, completions, **kw: [1.0]])
    with pytest.raises(ValueError, match="returned 1 values for 16 completions"):
        tr.step()
