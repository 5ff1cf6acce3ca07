"""Evaluation of a policy on a task split: greedy accuracy, pass@k, maj@k, length and parse failures.

Uses the rollout engine (so evaluation runs at the engine's precision: the DCMDP "deployment" metric) on
a fixed problem set. Not owned here: when to evaluate and where to log (the trainer's job).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

from tether.lm.grpo.tasks import Problem, Task, parse_answer
from tether.lm.model.tokenizer import Tokenizer, pad_left
from tether.lm.rollout.engine import RolloutEngine


def eval_problems(task: Task, split: str, n: int, seed: int = 1234) -> list[Problem]:
    """A fixed list of `n` problems of `split` (the same for every run that uses the same seed)."""
    rng = random.Random(f"eval:{task.name}:{task.difficulty}:{split}:{seed}")
    return [task.sample(rng, split) for _ in range(n)]


def sample_completions(engine: RolloutEngine, tok: Tokenizer, problems: list[Problem], *, k: int,
                       temperature: float, max_new_tokens: int, generator: torch.Generator | None, top_p: float = 1.0
                       ) -> tuple[list[list[str]], torch.Tensor]:
    """k completions per problem -> their texts [n][k] and completion lengths (n*k,)."""
    ids, mask = pad_left([tok.encode(p.prompt) for p in problems for _ in range(k)], tok.pad_id)
    out = engine.generate(ids, mask, max_new_tokens=max_new_tokens, eos_id=tok.eos_id, pad_id=tok.pad_id,
                          temperature=temperature, top_p=top_p, generator=generator)
    texts = [tok.decode(row) for row in out.tokens.tolist()]
    return [texts[i * k:(i + 1) * k] for i in range(len(problems))], out.lengths


def sample_answers(engine: RolloutEngine, tok: Tokenizer, problems: list[Problem], *, k: int, temperature: float,
                   max_new_tokens: int, generator: torch.Generator | None, top_p: float = 1.0,
                   parse: Callable[[str], Any] = parse_answer) -> tuple[list[list[Any]], torch.Tensor]:
    """k completions per problem -> answers [n][k] parsed by `parse` (a task's `Task.parse`) and completion
    lengths (n*k,)."""
    texts, lengths = sample_completions(engine, tok, problems, k=k, temperature=temperature,
                                        max_new_tokens=max_new_tokens, generator=generator, top_p=top_p)
    return [[parse(t) for t in row] for row in texts], lengths


def majority(answers: list[int | None]) -> int | None:
    """Most frequent parsable answer (ties: the one seen first); None if none parses."""
    votes = [a for a in answers if a is not None]
    return Counter(votes).most_common(1)[0][0] if votes else None


def evaluate_split(engine: RolloutEngine, tok: Tokenizer, problems: list[Problem], *, k: int, temperature: float,
                   max_new_tokens: int, seed: int, verifier: Callable[[str, Any], bool] | None = None,
                   parse: Callable[[str], Any] = parse_answer) -> dict[str, float]:
    """Metrics (unprefixed): greedy_acc, sample_acc (pass@1 at `temperature`), pass@k, maj@k, len_mean,
    unparsable_frac (of the sampled completions).

    Answers are read by `parse` (the task's `Task.parse`; default the `#<integer>` parser). `verifier(completion,
    answer)` decides correctness instead; maj@k and unparsable_frac need parsed answers, so a custom verifier
    reports neither."""
    greedy, _ = sample_completions(engine, tok, problems, k=1, temperature=0.0, max_new_tokens=max_new_tokens,
                                   generator=None)
    g = torch.Generator().manual_seed(seed)
    sampled, lengths = sample_completions(engine, tok, problems, k=k, temperature=temperature,
                                          max_new_tokens=max_new_tokens, generator=g)
    ok = verifier or (lambda text, answer: parse(text) == answer)
    n = len(problems)
    right = [[ok(t, p.answer) for t in row] for p, row in zip(problems, sampled, strict=True)]   # [n][k]
    out = {
        "greedy_acc": sum(ok(row[0], p.answer) for p, row in zip(problems, greedy, strict=True)) / n,
        "sample_acc": sum(map(sum, right)) / (n * k),
        f"pass@{k}": sum(any(row) for row in right) / n,
        "len_mean": float(lengths.float().mean()),
    }
    if verifier is None:
        parsed = [[parse(t) for t in row] for row in sampled]
        out[f"maj@{k}"] = sum(majority(row) == p.answer for p, row in zip(problems, parsed, strict=True)) / n
        out["unparsable_frac"] = sum(a is None for row in parsed for a in row) / (n * k)
    return out
