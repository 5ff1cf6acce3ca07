import pytest
import torch

from tether.lm.model.policy import LOGIT_STATS, TinyPolicy, score_tokens
from tether.lm.model.tinylm import ModelConfig, TinyLM
from tether.lm.model.tokenizer import pad_left


def test_score_tokens_formulas():
    logits = torch.randn(2, 3, 5)
    targets = torch.randint(0, 5, (2, 3))
    out = score_tokens(logits, targets, temperature=0.5, stats=("entropy", "collision", "self_certainty"))
    p = torch.softmax(logits / 0.5, -1)
    torch.testing.assert_close(out["logp"], p.gather(-1, targets[..., None])[..., 0].log())
    torch.testing.assert_close(out["entropy"], -(p * p.log()).sum(-1))
    torch.testing.assert_close(out["collision"], (p * p).sum(-1))
    z = logits / 0.5
    torch.testing.assert_close(out["self_certainty"], torch.logsumexp(z, -1) - z.mean(-1))
    with pytest.raises(KeyError, match="entropy"):
        score_tokens(logits, targets, stats=("perplexity",))
    assert set(LOGIT_STATS.names()) >= {"entropy", "collision", "self_certainty"}


def test_token_stats_ignores_padding_and_matches_manual():
    torch.manual_seed(0)
    pol = TinyPolicy(TinyLM(ModelConfig(vocab_size=12, d_model=32, n_layers=1, n_heads=4, d_ff=64, max_seq_len=20)))
    prompt, comp = [2, 5, 6], [7, 8, 1]
    alone = pol.token_stats(torch.tensor([prompt + comp]), torch.ones(1, 6, dtype=torch.bool), start=3)["logp"]
    ids, mask = pad_left([prompt, [2, 3, 3, 3, 3]], 0)
    ids = torch.cat([ids, torch.tensor([comp, [9, 0, 0]])], 1)
    mask = torch.cat([mask, torch.tensor([[True] * 3, [True, False, False]])], 1)
    out = pol.token_stats(ids, mask, start=5, stats=("entropy",))
    torch.testing.assert_close(out["logp"][0], alone[0], atol=1e-5, rtol=0)
    full = torch.log_softmax(pol.module(torch.tensor([prompt + comp])), -1)[0]
    torch.testing.assert_close(alone[0], full[2:5].gather(-1, torch.tensor(comp)[:, None])[:, 0], atol=1e-6, rtol=0)
    assert out["entropy"].shape == (2, 3)
    with pytest.raises(ValueError, match="start"):
        pol.token_stats(ids, mask, start=0)
