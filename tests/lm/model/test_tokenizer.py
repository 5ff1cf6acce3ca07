import pytest

from tether.lm.model.tokenizer import CHARS, CharTokenizer, HFTokenizer, pad_left, to_hf_tokenizer


def test_roundtrip_and_specials():
    tok = CharTokenizer()
    text = "S3,5,2?3+5=8;8+2=10#10"
    ids = tok.encode(text)
    assert ids[0] == tok.bos_id and tok.decode(ids) == text
    assert tok.decode(tok.encode("12", bos=False) + [tok.eos_id] + tok.encode("99", bos=False)) == "12"
    assert tok.vocab_size == 4 + len(CHARS)


def test_duplicate_chars_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        CharTokenizer("aab")


def test_hf_adapter_has_identical_ids():
    tok = CharTokenizer()
    hf = HFTokenizer(to_hf_tokenizer(tok))
    for text in ["S1,2,3?", "A472+389?2+9=11#861", "E3x+4=19?"]:
        assert hf.encode(text) == tok.encode(text)
        assert hf.decode(tok.encode(text, bos=False)) == text
    assert (hf.pad_id, hf.eos_id, hf.bos_id) == (tok.pad_id, tok.eos_id, tok.bos_id)


def test_pad_left():
    ids, mask = pad_left([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[True, True, True], [False, False, True]]
    with pytest.raises(ValueError, match="empty"):
        pad_left([[1], []], 0)


def test_hf_tokenizer_renders_prompts_through_the_chat_template():
    pytest.importorskip("transformers")
    from tether.lm.model.tokenizer import CharTokenizer, HFTokenizer, to_hf_tokenizer

    hf = to_hf_tokenizer(CharTokenizer())
    hf.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}={% endif %}"
    chat, plain = HFTokenizer(hf, chat=True), HFTokenizer(hf)
    assert chat.encode("1+2") == plain.encode("1+2=", bos=False)
