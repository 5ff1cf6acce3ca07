import pytest
import torch

from tether.core.config import ConfigError
from tether.lm.model.tinylm import Block, KVCache, ModelConfig, TinyLM, distinct_prompts, positions_from_mask
from tether.lm.model.tokenizer import pad_left
from tether.testing.lm import grouped_batch


def _model(**kw):
    torch.manual_seed(0)
    return TinyLM(ModelConfig(vocab_size=20, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=32, **kw)).eval()


@pytest.mark.parametrize("kv_heads,bias", [(4, False), (2, True), (1, False)])
def test_cached_decode_matches_full_forward(kv_heads, bias):
    m = _model(n_kv_heads=kv_heads, qkv_bias=bias)
    ids, mask = pad_left([[2, 5, 6, 7, 8], [2, 9], [2, 4, 4]], pad_id=0)       # (3, 5) left-padded
    new = torch.tensor([[11, 12, 13], [14, 15, 16], [17, 18, 19]])
    with torch.no_grad():
        full = m(torch.cat([ids, new], 1), torch.cat([mask, torch.ones_like(new, dtype=torch.bool)], 1))
        cache = KVCache.empty(m.cfg, 3, 8, torch.float32)
        step_logits = [m.prefill(ids, mask, cache)]
        pos = mask.sum(-1)
        for t in range(2):
            step_logits.append(m.decode(new[:, t], pos + t, cache, 5 + t))
    for t, lg in enumerate(step_logits):
        torch.testing.assert_close(lg, full[:, 4 + t], atol=1e-5, rtol=1e-5)


def test_left_padding_does_not_change_logits():
    m = _model()
    seq = [2, 5, 6, 7]
    with torch.no_grad():
        alone = m(torch.tensor([seq]))
        ids, mask = pad_left([seq, [2, 1, 1, 1, 1, 1, 1]], pad_id=0)
        padded = m(ids, mask)
    torch.testing.assert_close(padded[0, -4:], alone[0], atol=1e-5, rtol=1e-5)


def test_save_load_roundtrip(tmp_path):
    m = _model()
    m.save(tmp_path / "m")
    m2 = TinyLM.load(tmp_path / "m")
    x = torch.tensor([[2, 3, 4]])
    assert m2.cfg == m.cfg and torch.equal(m(x), m2(x))
    with pytest.raises(FileNotFoundError, match="config.json"):
        TinyLM.load(tmp_path / "missing")


def test_positions_and_config_errors():
    assert positions_from_mask(torch.tensor([[False, True, True]])).tolist() == [[0, 0, 1]]
    with pytest.raises(ConfigError, match="n_kv_heads"):
        ModelConfig(n_heads=4, n_kv_heads=3)
    with pytest.raises(ConfigError, match="d_model"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="max_seq_len"):
        _model()(torch.zeros((1, 40), dtype=torch.long))


def test_distinct_prompts_maps_every_row_to_its_prompt():
    ids, mask = pad_left([[2, 5], [2, 5, 6], [2, 5], [7], [2, 5, 6]], pad_id=0)
    u_ids, u_mask, rows = distinct_prompts(ids, mask)
    assert len(u_ids) == 3
    assert torch.equal(u_ids[rows], ids) and torch.equal(u_mask[rows], mask)
    assert distinct_prompts(ids, mask, max_frac=0.5)[2] is None      # 3 distinct of 5: too few repeats to share
    ids2, mask2, rows2 = distinct_prompts(ids[:2], mask[:2])
    assert rows2 is None and torch.equal(ids2, ids[:2]) and torch.equal(mask2, mask[:2])


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_continuation_logits_run_each_shared_prompt_once_with_the_full_forward_values(kv_heads, monkeypatch):
    m = _model(n_kv_heads=kv_heads)
    ids, mask, start = grouped_batch()
    rows_seen = []
    extend = Block.extend
    monkeypatch.setattr(Block, "extend", lambda self, x, *a: rows_seen.append(len(x)) or extend(self, x, *a))
    grads = []
    for shared in (False, True):
        m.zero_grad()
        logits = m.continuation_logits(ids, mask, start) if shared else m(ids, mask, logits_from=start - 1)[:, :-1]
        logits.logsumexp(-1)[mask[:, start:]].sum().backward()
        grads.append((logits.detach()[mask[:, start:]], [p.grad.clone() for p in m.parameters()]))
    assert rows_seen == [9, 9]          # the shared path ran: 2 layers of continuations over 3 prompts
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=1e-5, rtol=1e-5)
    for a, b in zip(grads[1][1], grads[0][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_continuation_logits_without_shared_prompts_and_bad_start():
    m = _model()
    ids, mask, start = grouped_batch(G=1)
    with torch.no_grad():
        torch.testing.assert_close(m.continuation_logits(ids, mask, start), m(ids, mask, logits_from=start - 1)[:, :-1])
        assert m.continuation_logits(ids, mask, ids.shape[1]).shape == (3, 0, 20)
    for bad in (0, ids.shape[1] + 1):
        with pytest.raises(ValueError, match=f"start={bad}"):
            m.continuation_logits(ids, mask, bad)
