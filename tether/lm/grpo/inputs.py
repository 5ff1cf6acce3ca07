"""What `GRPOTrainer` accepts from a user, TRL's way: any model, tokenizer, reward functions, dataset, verifier.

Each function turns one argument into what the trainer uses and fails at construction, naming the argument,
when it cannot (`GRPOTrainer`'s docstring lists the accepted forms). Not owned here: training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from tether.lm.grpo.rewards import REWARDS, RewardInput, reward_parts
from tether.lm.grpo.tasks import Problem, parse_answer
from tether.lm.model.tokenizer import CharTokenizer, HFTokenizer

__all__ = ["RewardFunc", "Verifier", "default_verifier", "as_tokenizer", "as_policy", "dataset_problems",
           "check_reward_funcs", "call_reward_func"]

RewardFunc = Callable[..., Sequence[float]]
"""A TRL-style reward function: `f(prompts, completions, **columns) -> one float per completion`."""
Verifier = Callable[[str, Any], bool]
"""`verifier(completion_text, answer) -> bool`: is the completion correct?"""


def default_verifier(completion: str, answer: Any) -> bool:
    """The shipped tasks' rule: the completion's final `#<integer>` equals the answer."""
    parsed = parse_answer(completion)
    return parsed is not None and parsed == answer


def as_tokenizer(tokenizer: Any):
    """A tether tokenizer for `tokenizer`: None -> CharTokenizer; a Hugging Face tokenizer -> HFTokenizer (with
    its chat template, when it has one); a tether tokenizer (encode/decode/pad_id/eos_id) as it is."""
    if tokenizer is None:
        return CharTokenizer()
    if all(hasattr(tokenizer, a) for a in ("encode", "decode", "pad_id", "eos_id")):
        return tokenizer
    if hasattr(tokenizer, "eos_token_id") and callable(tokenizer):
        if tokenizer.eos_token_id is None:
            raise ValueError("tokenizer: the Hugging Face tokenizer has no eos_token; set tokenizer.eos_token first")
        return HFTokenizer(tokenizer, chat=bool(getattr(tokenizer, "chat_template", None)))
    raise TypeError(f"tokenizer: got {type(tokenizer).__name__}; expected a Hugging Face tokenizer or a tether "
                    "tokenizer (encode, decode, pad_id, eos_id)")


def as_policy(model: Any):
    """A tether policy for `model`: a tether policy as it is, a Hugging Face causal LM wrapped in HFPolicy."""
    if hasattr(model, "token_stats") and hasattr(model, "module"):
        return model
    if isinstance(model, torch.nn.Module) and hasattr(model, "config"):
        from tether.lm.model.hf import HFPolicy

        return HFPolicy(model)
    raise TypeError(f"model: got {type(model).__name__}; expected a tether policy (TinyPolicy, HFPolicy) or a "
                    "Hugging Face causal LM")


def dataset_problems(rows: Iterable[Mapping] | None, name: str) -> list[Problem] | None:
    """The rows of a user dataset as `Problem`s (extra columns kept for the reward functions)."""
    if rows is None:
        return None
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or not isinstance(row.get("prompt"), str):
            raise ValueError(f"{name}[{i}]: got {row!r:.80}; expected a mapping with a 'prompt' string")
        extra = {k: v for k, v in row.items() if k not in ("prompt", "answer")}
        out.append(Problem(row["prompt"], row.get("answer"), (), columns=extra))
    if not out:
        raise ValueError(f"{name}: got an empty dataset; expected at least one row with a 'prompt'")
    return out


def check_reward_funcs(funcs: Sequence[RewardFunc | str] | None) -> list[RewardFunc | str] | None:
    """Validate `reward_funcs` at construction: registry names must exist, the rest must be callable."""
    if funcs is None:
        return None
    funcs = [funcs] if callable(funcs) or isinstance(funcs, str) else list(funcs)
    for f in funcs:
        if isinstance(f, str):
            for part in reward_parts(f):
                if part not in REWARDS:
                    raise ValueError(f"reward_funcs: unknown reward {part!r}; expected a callable or one of "
                                     f"{REWARDS.names()}")
        elif not callable(f):
            raise TypeError(f"reward_funcs: got {type(f).__name__}; expected a callable f(prompts, completions, "
                            "**kwargs) -> list[float] or a reward name")
    return funcs


def call_reward_func(f: RewardFunc, inp: RewardInput) -> Tensor:
    """Call a TRL-style reward function on a batch; its output must be one finite float per completion."""
    columns: dict[str, list] = {}
    for p in inp.problems:
        for k in p.columns:
            columns.setdefault(k, [])
    for k in columns:
        columns[k] = [p.columns.get(k) for p in inp.problems]
    ids = [row[m].tolist() for row, m in zip(inp.tokens, inp.mask, strict=True)]
    out = f(prompts=[p.prompt for p in inp.problems], completions=list(inp.completions),
            answer=[p.answer for p in inp.problems], completion_ids=ids, **columns)
    name = getattr(f, "__name__", type(f).__name__)
    values = torch.as_tensor([float("nan") if v is None else float(v) for v in out], dtype=torch.float32)
    if values.shape != (len(inp.completions),):
        raise ValueError(f"reward function {name}: returned {values.numel()} values for {len(inp.completions)} "
                         "completions; expected one float per completion")
    if not torch.isfinite(values).all():
        raise ValueError(f"reward function {name}: returned a non-finite or None value; expected finite floats")
    return values
