import pytest
import torch

from tether.lm.grpo.config import RolloutSpec
from tether.lm.grpo.trainer import GRPOTrainer
from tether.lm.model.hf import HFPolicy, tiny_hf_model
from tether.lm.model.policy import TinyPolicy
from tether.lm.model.tinylm import KVCache, ModelConfig, TinyLM
from tether.lm.model.tokenizer import pad_left
from tether.lm.rollout.compiled import CompiledStepper, decode_step
from tether.lm.rollout.engine import RolloutEngine
from tether.testing.lm import EOS, PAD, ragged_prompts, tiny_policy, tiny_train_config


def _eager_generate(policy, ids, mask, seed, **kw):
    """Reference: the eager engine (itself checked against a no-cache full recompute in test_sampler.py)."""
    eng = RolloutEngine(logprobs="sampler")
    eng.sync_from(policy)
    return eng.generate(ids, mask, max_new_tokens=20, eos_id=EOS, pad_id=PAD,
                        generator=torch.Generator().manual_seed(seed), **kw)


@pytest.mark.parametrize("n_kv", [4, 2, 1])
def test_fixed_shape_step_matches_the_eager_cached_step(n_kv):
    """decode_step (run eagerly here) gives the eager engine's logits at every position, left padding included."""
    model = tiny_policy(n_kv=n_kv).module.eval()
    ids, mask = ragged_prompts()
    B, P, T = ids.shape[0], ids.shape[1], 6
    toks = torch.randint(2, 12, (B, T), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eager = KVCache.empty(model.cfg, B, P + T, torch.float32)
        static = CompiledStepper(decode_step, model, ids, mask, T, torch.float32)
        torch.testing.assert_close(static.first_logits, model.prefill(ids, mask, eager), atol=0, rtol=0)
        pos = mask.sum(-1)
        for t in range(T):
            want = model.decode(toks[:, t], pos + t, eager, P + t)
            torch.testing.assert_close(static(toks[:, t], t), want, atol=2e-6, rtol=0)


@pytest.fixture(scope="module")
def compiled_engine():
    """One compiled engine for the module: every call below uses the same shapes, so it compiles once."""
    policy = tiny_policy(n_kv=2)
    eng = RolloutEngine(logprobs="sampler", compile=True)
    eng.sync_from(policy)
    return policy, eng


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9)])
def test_compiled_engine_matches_the_eager_engine(compiled_engine, temperature, top_p):
    policy, eng = compiled_engine
    ids, mask = ragged_prompts()
    out = eng.generate(ids, mask, max_new_tokens=20, eos_id=EOS, pad_id=PAD, temperature=temperature, top_p=top_p,
                       generator=torch.Generator().manual_seed(3))
    ref = _eager_generate(policy, ids, mask, 3, temperature=temperature, top_p=top_p)
    # generated code sums in another order than eager kernels: same tokens, log-probs equal to fp32 rounding
    assert torch.equal(out.tokens, ref.tokens) and torch.equal(out.mask, ref.mask)
    assert int(out.mask.sum()) > 20 and bool((out.tokens == EOS).any())       # long rows and EOS both exercised
    torch.testing.assert_close(out.logp, ref.logp, atol=1e-5, rtol=0)


def test_compiled_engine_follows_sync(compiled_engine):
    """New weights through sync_from reach the compiled step (weights are graph inputs, not baked constants)."""
    policy, eng = compiled_engine
    ids, mask = ragged_prompts()
    before = eng.generate(ids, mask, max_new_tokens=20, eos_id=EOS, pad_id=PAD,
                          generator=torch.Generator().manual_seed(5))
    other = tiny_policy(seed=9, n_kv=2)
    eng.sync_from(other)
    after = eng.generate(ids, mask, max_new_tokens=20, eos_id=EOS, pad_id=PAD,
                         generator=torch.Generator().manual_seed(5))
    eng.sync_from(policy)
    assert torch.equal(after.tokens, _eager_generate(other, ids, mask, 5).tokens)
    assert not torch.equal(after.tokens, before.tokens)


def test_compile_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="backend='hf'"):
        RolloutEngine(backend="hf", compile=True)
    gelu = tiny_hf_model("qwen2", vocab_size=12, hidden=16, layers=1, heads=2, intermediate=32)
    gelu.config.hidden_act = "gelu"             # an MLP the native TinyLM does not have: no export
    with pytest.raises(ValueError, match="no TinyLM export"):
        RolloutEngine(compile=True).sync_from(HFPolicy(gelu))
    with pytest.raises(ValueError, match="rollout.compile"):
        RolloutSpec(compile=True, backend="hf")
    moe = TinyPolicy(TinyLM(ModelConfig(vocab_size=12, d_model=16, n_heads=2, n_kv_heads=2, d_ff=16, n_experts=4)))
    eng = RolloutEngine(compile=True)
    eng.sync_from(moe)
    ids, mask = pad_left([[2, 5, 6]], pad_id=PAD)
    with pytest.raises(ValueError, match="mixture-of-experts"):
        eng.generate(ids, mask, max_new_tokens=3, eos_id=EOS, pad_id=PAD)


def test_trainer_with_compiled_rollouts_and_blocks_matches_eager():
    """rollout.compile and optim.compile change speed only: same completions, metrics and update as eager."""
    eager = GRPOTrainer(tiny_train_config(steps="1"))
    compiled = GRPOTrainer(tiny_train_config(steps="1", **{"rollout.compile": "true", "optim.compile": "true"}))
    assert compiled.engine.compile and compiled.policy.module._compiled_blocks is not None
    m_eager, m_compiled = eager.step(), compiled.step()
    assert m_eager.keys() == m_compiled.keys() and m_eager["reward/mean"] > 0
    for k in m_eager:
        if not k.startswith(("time/", "perf/")):  # speeds differ, by design
            torch.testing.assert_close(m_compiled[k], m_eager[k], atol=1e-5, rtol=1e-4, msg=k)
    for a, b in zip(compiled.policy.module.parameters(), eager.policy.module.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_compiled_blocks_match_eager_forward_and_gradients():
    torch.manual_seed(0)
    model = TinyLM(ModelConfig(vocab_size=12, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64))
    ids, mask = pad_left([[2, 5, 6, 7, 3, 3], [2, 8, 4], [2, 9, 9, 1]], pad_id=PAD)
    grads = []
    for compiled in (False, True):
        if compiled:
            model.compile_blocks()
        model.zero_grad()
        logits = model(ids, mask)
        logits.logsumexp(-1)[mask].sum().backward()
        grads.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=1e-5, rtol=1e-5)
    for a, b in zip(grads[1][1], grads[0][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_compiled_shared_prompt_forward_matches_eager():
    torch.manual_seed(0)
    model = TinyLM(ModelConfig(vocab_size=12, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64))
    prompts, pmask = pad_left([[2, 5, 6], [2, 8]], pad_id=PAD)
    ids = torch.cat([prompts.repeat_interleave(3, 0), torch.randint(2, 12, (6, 4))], 1)
    mask = torch.cat([pmask.repeat_interleave(3, 0), torch.ones(6, 4, dtype=torch.bool)], 1)
    grads = []
    for compiled in (False, True):
        if compiled:
            model.compile_blocks()
        model.zero_grad()
        logits = model.continuation_logits(ids, mask, prompts.shape[1])
        logits.logsumexp(-1).sum().backward()
        grads.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=1e-5, rtol=1e-5)
    for a, b in zip(grads[1][1], grads[0][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_optim_compile_refuses_hf_policies():
    with pytest.raises(ValueError, match="optim.compile"):
        GRPOTrainer(tiny_train_config(**{"model.arch": "qwen2", "optim.compile": "true"}))


def test_a_copy_of_a_compiled_model_runs_its_own_weights():
    import copy
    torch.manual_seed(0)
    model = TinyLM(ModelConfig(vocab_size=12, d_model=32, n_layers=1, n_heads=4, d_ff=64))
    model.compile_blocks()
    twin = copy.deepcopy(model)
    ids = torch.tensor([[2, 5, 6, 7]])
    with torch.no_grad():
        twin.blocks[0].o.weight.mul_(-1.0)
        compiled = twin(ids)
        twin._compiled_blocks = None                        # the twin's own eager forward
        torch.testing.assert_close(compiled, twin(ids), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(compiled, model(ids))
