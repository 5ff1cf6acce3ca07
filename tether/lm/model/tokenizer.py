"""Tokenizers for the LM family: a character-level one for the synthetic tasks, and an adapter for HF.

Both expose the same small surface (`encode`, `decode`, `pad_id`, `eos_id`, `bos_id`, `vocab_size`) so the
tasks, the rollout engine and the GRPO trainer never care which one they hold. Batching (left-padded
prompts) lives here too because it is the only place that knows the pad id.

Not owned here: models and sampling. `to_hf_tokenizer` builds a `PreTrainedTokenizerFast` with the same
ids, so a Hugging Face model, TRL and tether can be compared on identical token streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>")
# Every symbol any synthetic task emits; letters name the task (S running sum, A addition, M modular chain,
# E linear equation) or the unknown (x).
CHARS = "0123456789+-*/=#;,?:% SAMEx"


class Tokenizer(Protocol):
    """What tasks, the engine and the trainer need from a tokenizer."""

    pad_id: int
    eos_id: int
    bos_id: int
    vocab_size: int

    def encode(self, text: str, *, bos: bool = True) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class CharTokenizer:
    """One token per character of `chars`, after the four specials `<pad> <eos> <bos> <unk>` (ids 0-3)."""

    def __init__(self, chars: str = CHARS) -> None:
        if len(set(chars)) != len(chars):
            raise ValueError(f"chars={chars!r} has duplicate characters; each must appear once")
        self.chars = chars
        self.itos = list(SPECIALS) + list(chars)
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.pad_id, self.eos_id, self.bos_id, self.unk_id = 0, 1, 2, 3
        self.vocab_size = len(self.itos)

    def encode(self, text: str, *, bos: bool = True) -> list[int]:
        ids = [self.stoi.get(c, self.unk_id) for c in text]
        return [self.bos_id, *ids] if bos else ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text up to (not including) the first `<eos>`; pads and `<bos>` are dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i >= len(SPECIALS):
                out.append(self.itos[i])
            elif i == self.unk_id:
                out.append("?")
        return "".join(out)


class HFTokenizer:
    """Adapter giving a `transformers` tokenizer the `Tokenizer` surface.

    A tokenizer without a pad token uses its EOS id for padding (padding is always masked out). With `chat`,
    `encode` renders its text through the tokenizer's chat template as one user turn (prompts only).
    """

    def __init__(self, tok, *, chat: bool = False) -> None:
        self.tok, self.chat = tok, chat
        self.eos_id = int(tok.eos_token_id)
        self.pad_id = int(tok.pad_token_id) if tok.pad_token_id is not None else self.eos_id
        self.bos_id = int(tok.bos_token_id) if tok.bos_token_id is not None else -1
        self.vocab_size = len(tok)

    def encode(self, text: str, *, bos: bool = True) -> list[int]:
        """Ids of `text`; with `chat`, `text` is a prompt, rendered as one user turn by the chat template (which
        places its own special tokens, so no BOS is added)."""
        if self.chat:
            rendered = self.tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                    add_generation_prompt=True)
            return list(self.tok(rendered, add_special_tokens=False)["input_ids"])
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        return [self.bos_id, *ids] if bos and self.bos_id >= 0 else list(ids)

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tok.decode(ids, skip_special_tokens=True)


def to_hf_tokenizer(tok: CharTokenizer):
    """A `PreTrainedTokenizerFast` with exactly `tok`'s ids (left padding, `<bos>` prepended)."""
    from tokenizers import Regex, decoders, models, pre_tokenizers, processors
    from tokenizers import Tokenizer as RawTokenizer
    from transformers import PreTrainedTokenizerFast

    raw = RawTokenizer(models.WordLevel(vocab=dict(tok.stoi), unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    raw.decoder = decoders.Fuse()
    raw.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", tok.bos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>",
        padding_side="left",
    )


def pad_left(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into `(ids (N, P) long, mask (N, P) bool)`; P is the longest sequence."""
    if not seqs:
        raise ValueError("pad_left got no sequences")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        if len(s) == 0:
            raise ValueError(f"sequence {i} is empty; every prompt needs at least one token")
        ids[i, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
        mask[i, width - len(s):] = True
    return ids, mask
