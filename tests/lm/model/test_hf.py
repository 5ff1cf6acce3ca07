"""The Hugging Face path: tiny Qwen2/Llama built offline, native export, and GRPO through the same trainer."""

import math

import pytest
import torch

from tether.lm.grpo.trainer import GRPOTrainer
from tether.lm.model.hf import HFPolicy, add_lora, hf_to_native, tiny_hf_model
from tether.lm.model.policy import TinyPolicy
from tether.lm.model.tinylm import TinyLM
from tether.lm.model.tokenizer import CharTokenizer, pad_left
from tether.lm.rollout.engine import RolloutEngine
from tether.testing.lm import grouped_batch, tiny_train_config

TOK = CharTokenizer()


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_native_export_matches_hf_forward_and_sampling(arch):
    hf = tiny_hf_model(arch, vocab_size=TOK.vocab_size, hidden=32, heads=4, kv_heads=2, intermediate=64)
    cfg, sd = hf_to_native(hf)
    native = TinyLM(cfg)
    native.load_state_dict(sd)
    ids, mask = pad_left([TOK.encode("S1,2,3?1+2=3"), TOK.encode("S4,5?")], TOK.pad_id)
    a = HFPolicy(hf).token_stats(ids, mask, start=3, stats=("entropy",))
    b = TinyPolicy(native).token_stats(ids, mask, start=3, stats=("entropy",))
    m = mask[:, 3:]
    torch.testing.assert_close(a["logp"][m], b["logp"][m], atol=1e-5, rtol=0)
    torch.testing.assert_close(a["entropy"][m], b["entropy"][m], atol=1e-5, rtol=0)
    outs = []
    for backend in ("native", "hf"):
        eng = RolloutEngine(backend=backend)
        eng.sync_from(HFPolicy(hf))
        outs.append(eng.generate(ids, mask, max_new_tokens=12, eos_id=TOK.eos_id, pad_id=TOK.pad_id,
                                 generator=torch.Generator().manual_seed(0)))
    assert torch.equal(outs[0].tokens, outs[1].tokens)
    torch.testing.assert_close(outs[0].logp, outs[1].logp, atol=1e-5, rtol=0)


def _hf_cfg(**over):
    return tiny_train_config(**{"model.arch": "qwen2", "model.n_kv_heads": "2", "rollout.max_new_tokens": "10",
                                "samples_every": "3", **over})


@pytest.mark.parametrize("over", [{}, {"model.arch": "llama", "optim.ppo_epochs": "2", "algo.kl_coef": "0.05"}])
def test_grpo_steps_on_hf_model_through_the_same_trainer(over):
    tr = GRPOTrainer(_hf_cfg(**over))
    assert isinstance(tr.policy, HFPolicy)
    before = [p.detach().clone() for p in tr.params]
    for _ in range(2):
        m = tr.step()
        assert all(math.isfinite(v) for v in m.values())
    assert tr.engine.kind == "native"
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.params, strict=True))


def test_lora_trains_only_adapters_and_samples_with_the_merged_native_engine():
    tr = GRPOTrainer(_hf_cfg(**{"model.lora_r": "4"}))
    names = [n for n, p in tr.policy.module.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    m = tr.step()
    assert all(math.isfinite(v) for v in m.values()) and tr.engine.kind == "native"


def test_lora_adapters_merge_into_the_native_export_without_touching_the_model():
    model = add_lora(tiny_hf_model("llama", vocab_size=TOK.vocab_size, hidden=32, intermediate=64), r=2)
    torch.manual_seed(0)
    for n, p in model.named_parameters():
        if "lora_B" in n:   # peft starts B at zero (a no-op adapter): make the merge matter
            p.data.normal_(0, 0.5)
    ids, mask = pad_left([TOK.encode("S1,2,3?1+2=3"), TOK.encode("S4,5?")], TOK.pad_id)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg, sd = hf_to_native(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())   # nothing merged in place
    native = TinyLM(cfg)
    native.load_state_dict(sd)
    a = HFPolicy(model).token_stats(ids, mask, start=3)["logp"]
    b = TinyPolicy(native).token_stats(ids, mask, start=3)["logp"]
    with model.disable_adapter():
        plain = HFPolicy(model).token_stats(ids, mask, start=3)["logp"]
    m = mask[:, 3:]
    torch.testing.assert_close(a[m], b[m], atol=1e-5, rtol=0)
    assert (a[m] - plain[m]).abs().max() > 1e-3   # the adapters change the model, and the export carries them


@pytest.mark.parametrize("arch,kv,lora", [("qwen2", 4, False), ("llama", 2, False), ("qwen2", 2, True)])
def test_shared_prompt_scoring_equals_the_full_forward(arch, kv, lora):
    """Each distinct prompt runs once and its cache is the past of the G continuations: same log-probs,
    entropies and gradients as one forward over the joined rows (plain and LoRA)."""
    model = tiny_hf_model(arch, vocab_size=20, hidden=32, intermediate=64, kv_heads=kv)
    policy = HFPolicy(add_lora(model, r=2) if lora else model)
    ids, mask, start = grouped_batch()
    assert policy._shared_prompt_outputs(policy.module, ids, mask, start) is not None   # the shared path is taken
    results = []
    for shared in (True, False):
        if not shared:
            policy._shared_prompt_outputs = lambda *a: None
        policy.module.zero_grad()
        out = policy.token_stats(ids, mask, start=start, stats=("entropy",))
        (out["logp"] * mask[:, start:]).sum().backward()
        grads = [p.grad.clone() for p in policy.module.parameters() if p.grad is not None]
        results.append(({k: v.detach()[mask[:, start:]] for k, v in out.items()}, grads))
    (a, ga), (b, gb) = results
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5, msg=k)
    assert len(ga) == len(gb) > 0
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)


def test_shared_prompt_scoring_steps_aside_under_gradient_checkpointing():
    model = tiny_hf_model("qwen2", vocab_size=20, hidden=32, intermediate=64)
    model.gradient_checkpointing_enable()
    ids, mask, start = grouped_batch()
    assert HFPolicy(model)._shared_prompt_outputs(model, ids, mask, start) is None


def test_shared_prompt_scoring_steps_aside_for_a_sliding_window_cache():
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(vocab_size=20, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      intermediate_size=64, max_position_embeddings=64, use_sliding_window=True, sliding_window=3,
                      max_window_layers=0)
    policy = HFPolicy(Qwen2ForCausalLM._from_config(cfg, attn_implementation="sdpa"))
    ids, mask, start = grouped_batch()
    assert policy._shared_prompt_outputs(policy.module, ids, mask, start) is None and not policy.share_prompts
    assert policy.token_stats(ids, mask, start=start)["logp"].shape == (9, 5)                    # plain forward


@pytest.mark.parametrize("lora", [False, True])
def test_the_head_run_block_by_block_on_the_backbone_equals_the_models_own_logits(lora):
    """The split path (backbone hidden states, then the LM head a few rows at a time) against scoring the model's
    own logits: log-probs, entropies and gradients, with and without prompt sharing."""
    model = tiny_hf_model("llama", vocab_size=20, hidden=32, heads=4, kv_heads=2, intermediate=64, seed=3)
    policy = HFPolicy(add_lora(model, r=2) if lora else model)
    assert policy._backbone_and_head() is not None
    ids, mask, start = grouped_batch()
    results = []
    for split, shared in ((True, True), (True, False), (False, True)):
        p = HFPolicy(policy.module)
        if not split:
            p._backbone_and_head = lambda: None
        if not shared:
            p.share_prompts = False
        p.module.zero_grad()
        out = p.token_stats(ids, mask, start=start, stats=("entropy", "self_certainty"))
        (out["logp"] * mask[:, start:]).sum().backward()
        grads = [q.grad.clone() for q in p.module.parameters() if q.grad is not None]
        results.append(({k: v.detach()[mask[:, start:]] for k, v in out.items()}, grads))
    ref, g_ref = results[-1]
    for got, g in results[:-1]:
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], atol=1e-5, rtol=1e-5, msg=k)
        assert len(g) == len(g_ref) > 0
        for x, y in zip(g, g_ref, strict=True):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)
