"""Arithmetic word problems for instruct models, and a verifier that reads the final number from free text.

A story is a start quantity and a chain of operations on it (buy/find more: +, give/eat/lose: -, "twice/three
times as many": *, "share equally, keep one share": / with an exact quotient), told in English with a name and
an item: "Mia has 12 apples. She buys 5 more. Then she gives 3 to Leo. How many apples does Mia have now?".
The answer is always a non-negative integer. `tasks.py` registers the `word_problems` task on top of these
functions (splits, difficulty); this module owns only the stories and the answer parser.

The parser is for completions of real chat models, which answer in prose ("17 + 25 = 42.", "The answer is
**42**.", "\\boxed{1,234}"): a `\\boxed{}` value first, else the number after the last "answer is"/"answer:",
else the last number in the text; thousands separators are dropped and an integral decimal ("42.0") is an int.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Story", "OPS", "draw_story", "story_text", "story_steps", "parse_final_number"]

# (name, she): the pronoun follows the name
NAMES = (("Mia", True), ("Leo", False), ("Ava", True), ("Noah", False), ("Zoe", True), ("Omar", False),
         ("Lina", True), ("Ravi", False), ("Emma", True), ("Sam", False), ("Yuki", True), ("Tom", False))
# (singular, plural): problems only ever use the plural, the singular keeps the table readable
ITEMS = (("apple", "apples"), ("marble", "marbles"), ("book", "books"), ("stamp", "stamps"), ("shell", "shells"),
         ("coin", "coins"), ("card", "cards"), ("pencil", "pencils"), ("cookie", "cookies"), ("sticker", "stickers"))


@dataclass(frozen=True)
class Op:
    symbol: str
    """Arithmetic symbol of the reference step (`12+5=17`)."""
    apply: Callable[[int, int], int]
    """(current quantity, operand) -> new quantity."""
    sentences: tuple[str, ...]
    """Templates with {Pron}/{pron}/{pron_obj} (She/she/her), {k} (operand), {times}, {items}, {friend}."""
    operands: Callable[[int, range], list[int]]
    """The operands allowed at the current quantity (an empty list: the op cannot follow it)."""


OPS: dict[str, Op] = {
    "add": Op("+", lambda x, k: x + k,
              ("{Pron} buys {k} more {items}.", "{Pron} finds {k} more {items}.", "{friend} gives {pron_obj} {k} "
               "more {items}."),
              lambda x, r: list(r)),
    "sub": Op("-", lambda x, k: x - k,
              ("{Pron} gives {k} {items} to {friend}.", "{Pron} loses {k} {items}.", "{Pron} sells {k} {items}."),
              lambda x, r: [k for k in r if k <= x]),        # never below zero
    "mul": Op("*", lambda x, k: x * k,
              ("Then {pron} ends up with {times} as many {items} as before.",),
              lambda x, r: [2, 3] if x <= 50 else []),       # keeps answers small enough for a 135M model
    "div": Op("/", lambda x, k: x // k,
              ("{Pron} splits the {items} into {k} equal piles and keeps one pile.",),
              lambda x, r: [k for k in (2, 3, 4, 5) if x % k == 0 and x > k]),   # exact quotients only
}
_TIMES = {2: "twice", 3: "three times"}


@dataclass(frozen=True)
class Story:
    name: str
    """Who holds the items."""
    friend: str
    """The other person a sentence may mention."""
    item: str
    """Plural item noun."""
    start: int
    """Quantity at the start."""
    ops: tuple[tuple[str, int, int], ...]
    """(op name in OPS, operand, sentence template index) per step."""
    she: bool
    """Pronoun of `name`: she (True) or he."""


def draw_story(rng: random.Random, n_ops: int, start: range, operand: range) -> Story:
    """A story of `n_ops` operations, the start quantity drawn from `start`, +/- operands from `operand`."""
    (name, she), (friend, _) = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)[1]
    x0 = x = rng.choice(start)
    ops = []
    for _ in range(n_ops):
        choices = [(n, ks) for n, op in OPS.items() if (ks := op.operands(x, operand))]   # "add" always fits
        n, ks = rng.choice(choices)
        k = rng.choice(ks)
        ops.append((n, k, rng.randrange(len(OPS[n].sentences))))
        x = OPS[n].apply(x, k)
    return Story(name, friend, item, x0, tuple(ops), she)


def story_text(story: Story) -> str:
    """The problem statement, ending with the question and an instruction on the answer's form."""
    pron, obj = ("she", "her") if story.she else ("he", "him")
    out = [f"{story.name} has {story.start} {story.item}."]
    for i, (n, k, t) in enumerate(story.ops):
        s = OPS[n].sentences[t].format(Pron=pron.capitalize(), pron=pron, pron_obj=obj, k=k,
                                       items=story.item, friend=story.friend, times=_TIMES.get(k, f"{k} times"))
        if i and not s.startswith("Then"):   # "Then she ...", "Then Leo ..."
            s = "Then " + (s if s.startswith(story.friend) else s[0].lower() + s[1:])
        out.append(s)
    out.append(f"How many {story.item} does {story.name} have now? Give the final answer as a number.")
    return " ".join(out)


def story_steps(story: Story, slip: Callable[[int, int], int] = lambda value, i: value) -> tuple[list[str], int]:
    """Reference steps (`12+5=17`) and the answer; `slip(value, i)` may perturb step i's result (carried on)."""
    x, steps = story.start, []
    for i, (n, k, _) in enumerate(story.ops):
        new = slip(OPS[n].apply(x, k), i)
        steps.append(f"{x}{OPS[n].symbol}{k}={new}")
        x = new
    return steps, x


_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"   # 1,234 and 1234 and 12.5; "3, 5" is two numbers
_BOXED = re.compile(r"\\boxed\{\s*\$?\s*(" + _NUMBER + r")")
_STATED = re.compile(r"answer\s*(?:is|:|=)?\s*[:=]?\s*\**\s*\$?\s*(" + _NUMBER + r")", re.IGNORECASE)
_ANY = re.compile(_NUMBER)


def parse_final_number(text: str) -> int | float | None:
    """The final answer stated in free text: a `\\boxed{}` value, else the one after the last "answer is", else
    the last number; None when the text has no number. Integral values come back as int (`42.0` -> 42)."""
    for pattern in (_BOXED, _STATED):
        found = pattern.findall(text)
        if found:
            return _number(found[-1])
    found = _ANY.findall(text)
    return _number(found[-1]) if found else None


def _number(s: str) -> int | float:
    value = float(s.replace(",", ""))
    return int(value) if value.is_integer() and abs(value) < 2**53 else value
