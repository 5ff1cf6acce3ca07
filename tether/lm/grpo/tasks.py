"""Synthetic reasoning tasks with a chain of thought and an exactly checkable `#answer`.

Each task draws a problem for a split (`train`, `heldout`, `ood`), writes the reference trace
(`step;step;...#answer`) and can corrupt it for pretraining corpora: an arithmetic slip at one step that
propagates to the answer (the "error rate" knob of the logical prior), and an *alignment*
transform of erroneous traces: `aligned` (longer, noisier: a repeated step), `neutral` (unchanged) or
`anti` (terse and confident: intermediate steps dropped).

Splits: `heldout` is in-distribution but disjoint from `train` (a problem belongs to it iff a CRC of its
prompt is 0 mod 8); `ood` uses longer chains / more digits / larger coefficients than training.
Checking is exact: a completion must be `...#<integer>` with nothing after the integer; anything else is
unparsable and scores 0. The exception is `word_problems`, English arithmetic stories for chat models
(`word_problems.py`), whose `parse` reads the final number from free text. Not owned here: tokenization and
rewards beyond correctness.
"""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

from tether.core.registry import Registry
from tether.lm.grpo.word_problems import Story, draw_story, parse_final_number, story_steps, story_text

Split = Literal["train", "heldout", "ood"]
Alignment = Literal["aligned", "neutral", "anti"]
SPLITS: tuple[str, ...] = Split.__args__
ALIGNMENTS: tuple[str, ...] = Alignment.__args__
_ANSWER = re.compile(r"#(-?\d{1,12})$")


@dataclass(frozen=True)
class Problem:
    prompt: str
    """Prompt text, e.g. `S3,5,2,7?`."""
    answer: Any
    """The exact answer: an integer for the shipped tasks; anything a verifier understands for user datasets."""
    steps: tuple[str, ...]
    """Reference chain-of-thought steps (joined by `;`); empty for user datasets."""
    columns: dict[str, Any] = field(default_factory=dict, compare=False)
    """A user dataset row's other columns (passed to TRL-style reward functions by name)."""

    @property
    def completion(self) -> str:
        return render(self.steps, self.answer)


def render(steps: tuple[str, ...] | list[str], answer: int) -> str:
    return ";".join(steps) + f"#{answer}"


def parse_answer(completion: str) -> int | None:
    """The integer after the final `#`, or None when the completion is malformed."""
    m = _ANSWER.search(completion)
    return int(m.group(1)) if m else None


def is_heldout(prompt: str) -> bool:
    return zlib.crc32(prompt.encode()) % 8 == 0


class Task:
    """Base class: subclasses draw parameters and solve them (optionally with a slip at one step)."""

    name = "task"

    def __init__(self, difficulty: int) -> None:
        if difficulty < 1:
            raise ValueError(f"task difficulty must be >= 1, got {difficulty}")
        self.difficulty = difficulty

    def draw(self, rng: random.Random, ood: bool) -> tuple:
        raise NotImplementedError

    def parse(self, completion: str) -> Any:
        """The final answer a completion states (None: none found); the shipped tasks read `...#<integer>`."""
        return parse_answer(completion)

    def verify(self, completion: str, answer: Any) -> bool:
        """Whether `completion` states `answer` (the trainer's default verifier)."""
        parsed = self.parse(completion)
        return parsed is not None and parsed == answer

    def prompt(self, params: tuple) -> str:
        raise NotImplementedError

    def solve(self, params: tuple, slip_at: int | None = None) -> tuple[list[str], int]:
        """Steps and answer; `slip_at=i` adds +-1 to the result of step i and carries it forward."""
        raise NotImplementedError

    def sample(self, rng: random.Random, split: Split) -> Problem:
        """Rejection-sample a problem of `split` (train and heldout partition the in-distribution space)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        for _ in range(10_000):
            params = self.draw(rng, ood=split == "ood")
            text = self.prompt(params)
            if split == "ood" or is_heldout(text) == (split == "heldout"):
                steps, answer = self.solve(params)
                return Problem(text, answer, tuple(steps))
        raise RuntimeError(f"task {self.name!r} could not draw a {split} problem in 10000 tries")

    def corpus_trace(self, rng: random.Random, *, error_rate: float, alignment: Alignment,
                     check_rate: float = 0.0) -> tuple[str, str, bool]:
        """One pretraining example `(prompt, completion, correct)` from the train split.

        `check_rate` > 0: each step of a correct trace is followed, with that probability, by a redundant check
        step (`check_step`), so correct traces vary in length and a length penalty has something legitimate to
        cut. 0 draws nothing extra from `rng` (corpora without checks are unchanged)."""
        problem = self.sample(rng, "train")
        params = self._params_of(problem.prompt)  # parsing back keeps `sample` the single source of splits
        if rng.random() >= error_rate:
            if check_rate <= 0:
                return problem.prompt, problem.completion, True
            steps = [s for step in problem.steps
                     for s in ((step, self.check_step(step)) if rng.random() < check_rate else (step,))]
            return problem.prompt, render(steps, problem.answer), True
        n_steps = len(problem.steps)
        steps, answer = self.solve(params, slip_at=rng.randrange(n_steps))
        if answer == problem.answer:  # a slip cancelled out (e.g. by a modulus); force a wrong answer
            answer += 1
        return problem.prompt, render(_align(steps, alignment, rng), answer), False

    def _params_of(self, prompt: str) -> tuple:
        raise NotImplementedError

    def check_step(self, step: str) -> str:
        """A redundant verification of `step` (changes no result); by default the step restated."""
        return step


def _align(steps: list[str], alignment: Alignment, rng: random.Random) -> list[str]:
    if alignment == "aligned":   # wrong traces look worse: a step repeated once or twice
        out = list(steps)
        for _ in range(rng.randint(1, 2)):
            i = rng.randrange(len(out))
            out.insert(i, out[i])
        return out
    if alignment == "anti":      # wrong traces look confident: jump to the answer
        return steps[-1:]
    return steps


def _slip(value: int, i: int, slip_at: int | None) -> int:
    """Deterministic +-1 slip: +1 on even steps, -1 on odd ones (so corpora are reproducible)."""
    if slip_at is None or i != slip_at:
        return value
    return value + (1 if i % 2 == 0 else -1)


TASKS: Registry[type[Task]] = Registry("task")


@TASKS.register("running_sum")
class RunningSum(Task):
    """`S3,5,2,7?` -> `3+5=8;8+2=10;10+7=17#17`. Difficulty d: 3..d+2 numbers (OOD: d+3..d+4), digits 0-9."""

    name = "running_sum"

    def draw(self, rng, ood):
        lo, hi = (self.difficulty + 3, self.difficulty + 4) if ood else (3, self.difficulty + 2)
        return tuple(rng.randint(0, 9) for _ in range(rng.randint(lo, hi)))

    def prompt(self, params):
        return "S" + ",".join(map(str, params)) + "?"

    def _params_of(self, prompt):
        return tuple(int(x) for x in prompt[1:-1].split(","))

    def check_step(self, step):
        """`8+2=10` -> `10-2=8`: the sum undone."""
        lhs, total = step.split("=")
        a, b = lhs.split("+")
        return f"{total}-{b}={a}"

    def solve(self, params, slip_at=None):
        acc, steps = params[0], []
        for i, x in enumerate(params[1:]):
            new = _slip(acc + x, i, slip_at)
            steps.append(f"{acc}+{x}={new}")
            acc = new
        return steps, acc


@TASKS.register("addition")
class Addition(Task):
    """`A472+389?` -> `2+9=11;7+8+1=16;4+3+1=8#861`: column sums, carry added explicitly.

    Difficulty d: operands of 2..d+1 digits (OOD: d+2..d+3).
    """

    name = "addition"

    def draw(self, rng, ood):
        lo, hi = (self.difficulty + 2, self.difficulty + 3) if ood else (2, self.difficulty + 1)
        n = rng.randint(lo, hi)
        return rng.randint(10 ** (n - 1), 10 ** n - 1), rng.randint(10 ** (n - 1), 10 ** n - 1)

    def prompt(self, params):
        return f"A{params[0]}+{params[1]}?"

    def _params_of(self, prompt):
        a, b = prompt[1:-1].split("+")
        return int(a), int(b)

    def solve(self, params, slip_at=None):
        a, b = (str(p)[::-1] for p in params)
        n = max(len(a), len(b))
        a, b = a.ljust(n, "0"), b.ljust(n, "0")
        carry, digits, steps = 0, [], []
        for i in range(n):
            s = _slip(int(a[i]) + int(b[i]) + carry, i, slip_at)
            steps.append(f"{a[i]}+{b[i]}" + (f"+{carry}" if carry else "") + f"={s}")
            digits.append(s % 10)
            carry = s // 10
        value = int("".join(map(str, reversed(digits)))) + carry * 10 ** n
        return steps, value


@TASKS.register("modular_chain")
class ModularChain(Task):
    """`M7:3*4+5?` -> `3*4=12%7=5;5+5=10%7=3#3`: left-to-right ops mod m.

    Difficulty d: 2..d+1 operations (OOD: d+2..d+3), modulus in 5..13, operands 0-9, ops `+` and `*`.
    """

    name = "modular_chain"

    def draw(self, rng, ood):
        lo, hi = (self.difficulty + 2, self.difficulty + 3) if ood else (2, self.difficulty + 1)
        n_ops = rng.randint(lo, hi)
        m = rng.randint(5, 13)
        xs = tuple(rng.randint(0, 9) for _ in range(n_ops + 1))
        ops = tuple(rng.choice("+*") for _ in range(n_ops))
        return m, xs, ops

    def prompt(self, params):
        m, xs, ops = params
        return f"M{m}:" + str(xs[0]) + "".join(f"{o}{x}" for o, x in zip(ops, xs[1:], strict=True)) + "?"

    def _params_of(self, prompt):
        m, expr = prompt[1:-1].split(":")
        xs = tuple(int(x) for x in re.split(r"[+*]", expr))
        ops = tuple(re.findall(r"[+*]", expr))
        return int(m), xs, ops

    def solve(self, params, slip_at=None):
        m, xs, ops = params
        acc, steps = xs[0], []
        for i, (o, x) in enumerate(zip(ops, xs[1:], strict=True)):
            raw = acc + x if o == "+" else acc * x
            new = _slip(raw % m, i, slip_at)
            steps.append(f"{acc}{o}{x}={raw}%{m}={new}")
            acc = new
        return steps, acc


@TASKS.register("linear_equation")
class LinearEquation(Task):
    """`E3x+4=19?` -> `19-4=15;15/3=5#5`: solve a*x+b=c for integer x.

    Difficulty d: a in 2..d+2, x and b in 0..9 (OOD: a in d+3..d+6, x in 10..29).
    """

    name = "linear_equation"

    def draw(self, rng, ood):
        a = rng.randint(self.difficulty + 3, self.difficulty + 6) if ood else rng.randint(2, self.difficulty + 2)
        x = rng.randint(10, 29) if ood else rng.randint(0, 9)
        b = rng.randint(0, 9)
        return a, b, a * x + b

    def prompt(self, params):
        a, b, c = params
        return f"E{a}x+{b}={c}?"

    def _params_of(self, prompt):
        m = re.fullmatch(r"E(\d+)x\+(\d+)=(\d+)\?", prompt)
        return int(m.group(1)), int(m.group(2)), int(m.group(3))

    def solve(self, params, slip_at=None):
        a, b, c = params
        rest = _slip(c - b, 0, slip_at)
        x = _slip(rest // a, 1, slip_at)
        return [f"{c}-{b}={rest}", f"{rest}/{a}={x}"], x


@TASKS.register("word_problems")
class WordProblems(Task):
    """English arithmetic stories for chat models (`word_problems.py`): "Ava has 10 marbles. She finds 8 more
    marbles. How many marbles does Ava have now? ..." -> 18, checked on the final number of free text.

    Difficulty d: 1..d operations (+, -, x2/x3, exact /) on a start of 2..20 with operands 2..9 (OOD: d+1..d+2
    operations, start 20..60, operands 5..20). Prompts are plain text: a chat tokenizer renders them as a user turn.
    """

    name = "word_problems"

    def __init__(self, difficulty: int) -> None:
        super().__init__(difficulty)
        self._stories: dict[str, tuple[Story]] = {}   # prompt -> story of the problems drawn last

    def draw(self, rng, ood):
        lo, hi = (self.difficulty + 1, self.difficulty + 2) if ood else (1, self.difficulty)
        start, operand = (range(20, 61), range(5, 21)) if ood else (range(2, 21), range(2, 10))
        return (draw_story(rng, rng.randint(lo, hi), start, operand),)

    def prompt(self, params: tuple[Story]):
        text = story_text(params[0])
        if len(self._stories) >= 4096:
            self._stories.clear()
        self._stories[text] = params
        return text

    def _params_of(self, prompt):
        return self._stories[prompt]   # English does not parse back: `corpus_trace` reads the story just drawn

    def solve(self, params: tuple[Story], slip_at=None):
        return story_steps(params[0], lambda value, i: _slip(value, i, slip_at))

    def parse(self, completion: str) -> int | float | None:
        return parse_final_number(completion)


def make_task(name: str, difficulty: int) -> Task:
    """Instantiate a registered task (unknown names raise, listing the valid ones)."""
    return TASKS.get(name.replace("-", "_"))(difficulty)
