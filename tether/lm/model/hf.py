"""Hugging Face causal LMs behind the `Policy` protocol, optional LoRA, and tiny offline test models.

`HFPolicy` wraps any `AutoModelForCausalLM` (or a peft-wrapped one) so the GRPO trainer drives it exactly
as it drives `TinyLM`. For Llama/Qwen2/Mistral-layout models, `export_native` converts the weights (LoRA
adapters merged in) to `TinyLM` layout (q/k/v and gate/up concatenated) so the rollout engine runs its fast
native path on them; anything else falls back to the engine's `hf` backend.

`tiny_hf_model` builds a randomly initialised Qwen2 or Llama from a config: no download, works under
`HF_HUB_OFFLINE=1`. Not owned here: training and sampling.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from tether.lm.model.policy import score_hidden, score_tokens
from tether.lm.model.tinylm import ModelConfig, distinct_prompts, positions_from_mask

_NATIVE_TYPES = ("llama", "qwen2", "mistral")


def tiny_hf_model(arch: Literal["qwen2", "llama"], *, vocab_size: int, hidden: int = 64, layers: int = 2,
                  heads: int = 4, kv_heads: int | None = None, intermediate: int = 256, max_positions: int = 128,
                  seed: int = 0) -> nn.Module:
    """A random-init tied-embedding Qwen2/Llama causal LM (SDPA attention), built offline from a config."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    cfg_cls, model_cls = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}[arch]
    cfg = cfg_cls(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  num_key_value_heads=kv_heads or heads, intermediate_size=intermediate,
                  max_position_embeddings=max_positions, tie_word_embeddings=True, rms_norm_eps=1e-6,
                  bos_token_id=2, eos_token_id=1, pad_token_id=0)
    torch.manual_seed(seed)
    return model_cls._from_config(cfg, attn_implementation="sdpa")


def add_lora(model: nn.Module, *, r: int = 8, alpha: int = 16, targets: tuple[str, ...] = ("q_proj", "v_proj")):
    """Wrap `model` with peft LoRA adapters (only the adapters train)."""
    from peft import LoraConfig, get_peft_model
    return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0))


class HFPolicy:
    """`Policy` over a `transformers` causal LM (plain or peft-wrapped)."""

    def __init__(self, model: nn.Module) -> None:
        self.module = model
        self.max_seq_len = int(getattr(model.config, "max_position_embeddings", 1 << 30))
        self.share_prompts = True   # turned off for good once the model's cache turns out not to support it

    def token_stats(self, ids: Tensor, mask: Tensor, *, start: int, temperature: float = 1.0,
                    stats: tuple[str, ...] = ()) -> dict[str, Tensor]:
        if start < 1:
            raise ValueError(f"start={start}: the first scored token needs at least one token of context")
        split = self._backbone_and_head()
        model = self.module if split is None else split[0]
        out = self._shared_prompt_outputs(model, ids, mask, start)
        if out is None:
            kw = {"logits_to_keep": ids.shape[1] - start + 1} if split is None else {}
            out = _last(model(input_ids=ids, attention_mask=mask.long(), position_ids=positions_from_mask(mask),
                              use_cache=False, **kw))[:, -(ids.shape[1] - start) - 1:-1]       # (B, L - start, X)
        if split is None:
            return score_tokens(out, ids[:, start:], temperature=temperature, stats=stats)
        return score_hidden(out, split[1], ids[:, start:], temperature=temperature, stats=stats)

    def _backbone_and_head(self) -> tuple[nn.Module, nn.Module] | None:
        """(the transformer under the LM head, the head) for the layouts whose logits are exactly head(hidden), so
        the head can run a block of rows at a time (`score_hidden`); None for others (logit soft-capping or scaling,
        remote code), which score the model's own logits."""
        hf = self.module.get_base_model() if hasattr(self.module, "get_base_model") else self.module
        c = hf.config
        if c.model_type not in _NATIVE_TYPES or not type(hf).__module__.startswith("transformers"):
            return None
        if getattr(c, "final_logit_softcapping", None) or getattr(c, "logit_scale", None) not in (None, 1.0):
            return None
        return getattr(hf, hf.base_model_prefix), hf.get_output_embeddings()

    def _shared_prompt_outputs(self, model: nn.Module, ids: Tensor, mask: Tensor, start: int) -> Tensor | None:
        """`model`'s outputs (B, L - start, X) at the positions that predict ids[:, start:] (logits of the whole
        model, or hidden states of its backbone), with each distinct prompt run once (as
        `TinyLM.continuation_logits`): the prompts' key/value cache, gathered per row, is the past of the
        continuations, with gradient through it. None when more than half the rows have distinct prompts, under
        gradient checkpointing (which turns the cache off), or when the model's cache is not a plain `DynamicCache`
        (sliding-window, linear-attention, quantised layers)."""
        p_ids, p_mask, rows = distinct_prompts(ids[:, :start], mask[:, :start], max_frac=0.5)
        if rows is None or start == ids.shape[1] or not self.share_prompts:
            return None
        if any(getattr(m, "gradient_checkpointing", False) is True for m in self.module.modules()):
            return None
        from transformers.cache_utils import DynamicLayer
        kw = {"logits_to_keep": 1} if model is self.module else {}
        pre = model(input_ids=p_ids, attention_mask=p_mask.long(), position_ids=positions_from_mask(p_mask),
                    use_cache=True, **kw)
        cache = pre.past_key_values
        if not all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None])):
            self.share_prompts = False
            return None
        cache.reorder_cache(rows)                                         # (U, ...) -> (B, ...), differentiable
        out = model(input_ids=ids[:, start:], attention_mask=mask.long(),
                    position_ids=positions_from_mask(mask)[:, start:], past_key_values=cache, use_cache=True)
        return torch.cat([_last(pre)[rows, -1:], _last(out)[:, :-1]], 1)

    def export_native(self) -> tuple[ModelConfig, dict[str, Tensor]] | None:
        return hf_to_native(self.module)


def _last(out) -> Tensor:
    """The (B, L, X) output of a causal LM (its logits) or of its backbone (its last hidden states)."""
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def merged_state_dict(model: nn.Module) -> tuple[nn.Module, dict[str, Tensor]] | None:
    """The plain HF model under `model` and its weights with every LoRA adapter merged in (W + B A * scale), without
    touching `model`; a model without adapters as it is. None for adapters that do not merge into one matrix
    (DoRA, other peft methods)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    sd = {k.replace(".base_layer.", "."): v for k, v in base.state_dict().items() if "lora_" not in k}
    for name, mod in base.named_modules():
        if not hasattr(mod, "base_layer"):
            continue
        if not hasattr(mod, "get_delta_weight") or any(getattr(mod, "use_dora", {}).values()):
            return None
        with torch.no_grad():
            delta = sum(mod.get_delta_weight(a) for a in mod.active_adapters if a in mod.lora_A)
            sd[name + ".weight"] = mod.base_layer.weight + delta
    return base, sd


def hf_to_native(model: nn.Module) -> tuple[ModelConfig, dict[str, Tensor]] | None:
    """`TinyLM` config + state dict for a Llama-layout HF model (LoRA adapters merged), or None when the layouts
    differ."""
    merged = merged_state_dict(model)
    if merged is None:
        return None
    model, sd = merged
    c = model.config
    rope = getattr(c, "rope_parameters", None) or {}
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    compatible = (
        c.model_type in _NATIVE_TYPES and type(model).__module__.startswith("transformers")
        and c.tie_word_embeddings and c.hidden_act == "silu" and rope.get("rope_type", "default") == "default"
        and head_dim * c.num_attention_heads == c.hidden_size and not getattr(c, "use_sliding_window", False)
        and not getattr(c, "mlp_bias", False)
    )
    if not compatible:
        return None
    qkv_bias = c.model_type == "qwen2" or bool(getattr(c, "attention_bias", False))
    cfg = ModelConfig(vocab_size=c.vocab_size, d_model=c.hidden_size, n_layers=c.num_hidden_layers,
                      n_heads=c.num_attention_heads, n_kv_heads=c.num_key_value_heads, d_ff=c.intermediate_size,
                      max_seq_len=c.max_position_embeddings, rope_theta=float(rope.get("rope_theta", 10000.0)),
                      norm_eps=c.rms_norm_eps, qkv_bias=qkv_bias)
    out = {"embed.weight": sd["model.embed_tokens.weight"], "norm": sd["model.norm.weight"]}
    for i in range(c.num_hidden_layers):
        p, a, m = f"model.layers.{i}.", f"model.layers.{i}.self_attn.", f"model.layers.{i}.mlp."
        b = f"blocks.{i}."
        out[b + "attn_norm"] = sd[p + "input_layernorm.weight"]
        out[b + "mlp_norm"] = sd[p + "post_attention_layernorm.weight"]
        out[b + "qkv.weight"] = torch.cat([sd[a + n + "_proj.weight"] for n in "qkv"])
        if qkv_bias:
            out[b + "qkv.bias"] = torch.cat([sd[a + n + "_proj.bias"] for n in "qkv"])
        out[b + "o.weight"] = sd[a + "o_proj.weight"]
        out[b + "gate_up.weight"] = torch.cat([sd[m + "gate_proj.weight"], sd[m + "up_proj.weight"]])
        out[b + "down.weight"] = sd[m + "down_proj.weight"]
    return cfg, out
