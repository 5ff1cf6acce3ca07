import pytest
import torch

from tether.lm.model.tinylm import Block
from tether.lm.model.tokenizer import pad_left
from tether.lm.rollout.engine import RolloutEngine, _top_p_filter, sample_next
from tether.lm.rollout.precision import PRECISIONS
from tether.testing.lm import EOS, PAD, ragged_prompts, tiny_policy


def naive_generate(model, ids, mask, *, T, temperature, top_p, gen):
    """Reference: recompute the full forward over the whole prefix at every step (no cache)."""
    B = ids.shape[0]
    seq, smask = ids.clone(), mask.clone()
    done = torch.zeros(B, dtype=torch.bool)
    toks, lps, valid = [], [], []
    for _ in range(T):
        logits = model(seq, smask)[:, -1].float()
        u = torch.rand((B, 1), generator=gen) if temperature > 0 else None
        tok, lp, _ = sample_next(logits, u, temperature=temperature, top_p=top_p)
        tok = tok.masked_fill(done, PAD)
        toks.append(tok), lps.append(lp.masked_fill(done, 0.0)), valid.append(~done)
        done = done | (tok == EOS)
        seq, smask = torch.cat([seq, tok[:, None]], 1), torch.cat([smask, torch.ones(B, 1, dtype=torch.bool)], 1)
        if done.all():
            break
    return torch.stack(toks, 1), torch.stack(lps, 1), torch.stack(valid, 1)


@pytest.mark.parametrize("temperature,top_p,n_kv", [(1.0, 1.0, 4), (0.7, 0.9, 2), (0.0, 1.0, 1)])
def test_engine_matches_full_recompute_reference(temperature, top_p, n_kv):
    policy = tiny_policy(n_kv=n_kv)
    ids, mask = ragged_prompts()
    eng = RolloutEngine()
    eng.sync_from(policy)
    out = eng.generate(ids, mask, max_new_tokens=20, eos_id=EOS, pad_id=PAD, temperature=temperature, top_p=top_p,
                       generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        toks, lps, valid = naive_generate(policy.module.eval(), ids, mask, T=20, temperature=temperature,
                                          top_p=top_p, gen=torch.Generator().manual_seed(3))
    assert torch.equal(out.tokens, toks) and torch.equal(out.mask, valid)
    torch.testing.assert_close(out.logp, lps, atol=2e-6, rtol=0)


def test_engine_logp_matches_policy_scoring():
    policy = tiny_policy()
    ids, mask = ragged_prompts()
    eng = RolloutEngine()
    eng.sync_from(policy)
    out = eng.generate(ids, mask, max_new_tokens=15, eos_id=EOS, pad_id=PAD, temperature=0.8,
                       generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        scored = policy.token_stats(torch.cat([ids, out.tokens], 1), torch.cat([mask, out.mask], 1),
                                    start=ids.shape[1], temperature=0.8)["logp"]
    torch.testing.assert_close(scored[out.mask], out.logp[out.mask], atol=1e-5, rtol=0)


def test_deterministic_under_seed_and_eos_handling():
    policy = tiny_policy(seed=1)
    ids, mask = ragged_prompts()
    eng = RolloutEngine()
    eng.sync_from(policy)
    a = eng.generate(ids, mask, max_new_tokens=30, eos_id=EOS, pad_id=PAD, generator=torch.Generator().manual_seed(7))
    b = eng.generate(ids, mask, max_new_tokens=30, eos_id=EOS, pad_id=PAD, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logp, b.logp)
    for row, m in zip(a.tokens.tolist(), a.mask.tolist(), strict=True):
        n = sum(m)
        assert m == [True] * n + [False] * (len(m) - n)          # valid tokens form a prefix
        assert all(t == PAD for t in row[n:])
        if EOS in row:
            assert row.index(EOS) == n - 1                       # EOS is the last valid token
    assert (a.logp[~a.mask] == 0).all() and (a.logp[a.mask] <= 0).all()


def test_sync_from_copies_weights_and_engine_is_separate():
    policy = tiny_policy()
    eng = RolloutEngine()
    eng.sync_from(policy)
    assert eng.model is not policy.module
    with torch.no_grad():
        for p in policy.module.parameters():
            p.add_(0.5)
    assert not torch.equal(eng.model.embed.weight, policy.module.embed.weight)
    eng.sync_from(policy)
    assert torch.equal(eng.model.embed.weight, policy.module.embed.weight)


def test_bf16_engine_is_close_but_separate_precision():
    policy = tiny_policy()
    ids, mask = ragged_prompts()
    eng = RolloutEngine(precision="bf16")
    eng.sync_from(policy)
    assert eng.model.embed.weight.dtype == torch.bfloat16
    assert policy.module.embed.weight.dtype == torch.float32
    out = eng.generate(ids, mask, max_new_tokens=10, eos_id=EOS, pad_id=PAD, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        scored = policy.token_stats(torch.cat([ids, out.tokens], 1), torch.cat([mask, out.mask], 1), start=ids.shape[1])
    gap = (scored["logp"] - out.logp)[out.mask].abs()
    assert 0 < gap.max() < 0.1
    assert "fp32" in PRECISIONS and "bf16" in PRECISIONS


def test_top_p_filter_keeps_smallest_nucleus():
    z = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = _top_p_filter(z, 0.7).isfinite()
    assert kept.tolist() == [[True, True, False, False]]
    assert _top_p_filter(z, 0.01).isfinite().tolist() == [[True, False, False, False]]


def test_entropy_and_errors():
    policy = tiny_policy()
    ids, mask = ragged_prompts()
    eng = RolloutEngine()
    with pytest.raises(RuntimeError, match="sync_from"):
        eng.generate(ids, mask, max_new_tokens=4, eos_id=EOS, pad_id=PAD)
    eng.sync_from(policy)
    out = eng.generate(ids, mask, max_new_tokens=5, eos_id=EOS, pad_id=PAD, entropy=True,
                       generator=torch.Generator().manual_seed(0))
    assert (out.entropy[out.mask] > 0).all() and (out.entropy[out.mask] <= torch.log(torch.tensor(12.0)) + 1e-5).all()
    with pytest.raises(ValueError, match="context"):
        eng.generate(ids, mask, max_new_tokens=40, eos_id=EOS, pad_id=PAD)
    with pytest.raises(KeyError, match="fp32"):
        RolloutEngine(precision="fp7")


@pytest.mark.parametrize("backend", ["native", "hf"])
def test_dropping_finished_rows_keeps_results_identical(monkeypatch, backend):
    import tether.lm.rollout.engine as sampler
    calls = []
    for cls in (sampler._NativeStepper, sampler._HFStepper):
        orig = cls.compact
        monkeypatch.setattr(cls, "compact", lambda self, keep, _o=orig: calls.append(len(keep)) or _o(self, keep))
    if backend == "hf":
        from tether.lm.model.hf import HFPolicy, tiny_hf_model
        policy = HFPolicy(tiny_hf_model("llama", vocab_size=12, hidden=32, intermediate=64, max_positions=40))
        model = policy.module
    else:
        policy = tiny_policy(seed=2)
        model = policy.module
    with torch.no_grad():   # make EOS likely so that rows finish at different steps
        (model.embed.weight if backend == "native" else model.model.embed_tokens.weight)[EOS] *= 3
    ids, mask = pad_left([[2, 5 + i % 6, 3 + i % 4] for i in range(16)], pad_id=PAD)
    eng = RolloutEngine(backend=backend)
    eng.sync_from(policy)
    out = eng.generate(ids, mask, max_new_tokens=25, eos_id=EOS, pad_id=PAD, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        fwd = (lambda s, m: model(s, m)) if backend == "native" else \
            (lambda s, m: model(input_ids=s, attention_mask=m.long(),
                                position_ids=sampler.positions_from_mask(m)).logits)

        class Wrap(torch.nn.Module):
            def forward(self, s, m):
                return fwd(s, m)
        toks, lps, valid = naive_generate(Wrap(), ids, mask, T=25, temperature=1.0, top_p=1.0,
                                          gen=torch.Generator().manual_seed(5))
    assert calls, "no row was dropped; the test does not exercise compaction"
    assert (torch.equal(out.tokens, toks[:, : out.tokens.shape[1]])
            and torch.equal(out.mask, valid[:, : out.mask.shape[1]]))
    torch.testing.assert_close(out.logp, lps[:, : out.logp.shape[1]], atol=1e-5, rtol=0)


def test_shared_prompts_are_prefilled_once_with_identical_results(monkeypatch):
    """G rows per prompt (as in GRPO): each distinct prompt is run once, and sampling matches the no-cache reference."""
    policy = tiny_policy(n_kv=2)
    ids, mask = ragged_prompts()
    order = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 2, 2, 0])                   # interleaved, uneven group sizes
    ids, mask = ids[order], mask[order]
    eng = RolloutEngine(logprobs="sampler")
    eng.sync_from(policy)
    seen, block_prefill = [], Block.prefill

    def counting_prefill(self, x, *args):
        seen.append(len(x))
        return block_prefill(self, x, *args)

    monkeypatch.setattr(Block, "prefill", counting_prefill)
    out = eng.generate(ids, mask, max_new_tokens=15, eos_id=EOS, pad_id=PAD, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        toks, lps, valid = naive_generate(policy.module.eval(), ids, mask, T=15, temperature=1.0, top_p=1.0,
                                          gen=torch.Generator().manual_seed(4))
    assert seen == [4, 4]                                 # 4 distinct prompts through each of the 2 blocks
    assert torch.equal(out.tokens, toks) and torch.equal(out.mask, valid)
    torch.testing.assert_close(out.logp, lps, atol=2e-6, rtol=0)


def test_importing_the_engine_loads_neither_grpo_nor_a_paper():
    import json
    import subprocess
    import sys

    code = "import tether.lm.rollout.engine, sys, json; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    assert not [m for m in loaded if m.startswith(("tether.lm.grpo", "tether.lm.dcmdp", "tether.lm.intrinsic"))]


def _noisy_rollout(ids, mask, scale=0.05, seed=3, policy=None):
    policy = policy or tiny_policy()
    eng = RolloutEngine(logit_noise=scale)
    eng.sync_from(policy)
    return policy, eng.generate(ids, mask, max_new_tokens=12, eos_id=EOS, pad_id=PAD,
                                generator=torch.Generator().manual_seed(seed))


def test_logit_noise_is_reproducible_from_its_key_and_differs_from_fp32():
    from tether.lm.rollout.engine import noisy_logits

    ids, mask = ragged_prompts()
    policy, out = _noisy_rollout(ids, mask)
    assert out.noise_key is not None
    full, full_mask = torch.cat([ids, out.tokens], 1), torch.cat([mask, out.mask], 1)
    with torch.no_grad():
        logits = policy.module.continuation_logits(full, full_mask, ids.shape[1])       # (B, T, V)
        clean = torch.log_softmax(logits, -1).gather(-1, out.tokens[..., None])[..., 0]
        noisy = torch.log_softmax(noisy_logits(logits, out.noise_key, 0.05), -1).gather(-1, out.tokens[..., None])
    m = out.mask
    torch.testing.assert_close(noisy[..., 0][m], out.logp[m], atol=1e-4, rtol=0)      # the engine's own noise
    assert (clean[m] - out.logp[m]).abs().max() > 1e-3                                 # which the trainer lacks
    _, again = _noisy_rollout(ids, mask, policy=policy)
    assert torch.equal(again.tokens, out.tokens) and again.noise_key == out.noise_key  # same generator, same batch


def test_logit_noise_depends_on_batch_composition():
    from tether.lm.rollout.engine import noise_key

    ids, mask = ragged_prompts()
    gen = lambda: torch.Generator().manual_seed(3)
    assert noise_key(ids, gen()) == noise_key(ids.clone(), gen())
    assert noise_key(ids, gen()) != noise_key(ids[:-1], gen())            # one row fewer
    other = ids.clone()
    other[-1, -1] = (other[-1, -1] + 1) % 20
    assert noise_key(ids, gen()) != noise_key(other, gen())               # another prompt in the batch


def test_logit_noise_errors():
    with pytest.raises(ValueError, match="logit_noise"):
        RolloutEngine(logit_noise=-0.1)
    with pytest.raises(ValueError, match="recompute"):
        RolloutEngine(logit_noise=0.1, logprobs="recompute")
    assert not RolloutEngine(logit_noise=0.1).recompute and RolloutEngine().recompute
