import pytest
import torch

from tether.lm.model.policy import LOGIT_STATS, TinyPolicy, score_hidden, score_tokens
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


def test_score_hidden_in_blocks_equals_one_call_with_the_same_gradient():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 11, bias=False)
    hidden = torch.randn(5, 3, 8, requires_grad=True)
    targets = torch.randint(0, 11, (5, 3))
    out = {}
    for max_logits in (1 << 20, 40):   # one block; blocks of one row (3 x 11 = 33 <= 40 < 66)
        hidden.grad = None
        o = score_hidden(hidden, head, targets, temperature=0.7, stats=("entropy", "collision"), max_logits=max_logits)
        o["logp"].sum().backward()
        out[max_logits] = ({k: v.detach() for k, v in o.items()}, hidden.grad.clone())
    ref = score_tokens(head(hidden), targets, temperature=0.7, stats=("entropy", "collision"))
    for k in ref:
        torch.testing.assert_close(out[40][0][k], ref[k].detach(), atol=1e-6, rtol=0)
        torch.testing.assert_close(out[40][0][k], out[1 << 20][0][k], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[40][1], out[1 << 20][1], atol=1e-6, rtol=0)
    assert not o["entropy"].requires_grad and o["logp"].requires_grad   # statistics carry no graph
