import random

import pytest

from tether.lm.grpo.tasks import is_heldout, make_task
from tether.lm.grpo.word_problems import OPS, draw_story, parse_final_number, story_steps, story_text


@pytest.mark.parametrize("text, value", [
    ("The answer is 42.", 42), ("17 + 25 = 42", 42), ("So she has 42 apples now.", 42),
    ("\\boxed{1,234}", 1234), ("The answer is **42**.", 42), ("Answer: 12.0 apples", 12),
    ("First 3 + 4 = 7, then 7 * 2 = 14. The answer is 14. Check: 14 / 2 = 7", 14),
    ("\\boxed{7} (since 3 + 4 = 7, not 8)", 7), ("She has 1,200 coins.", 1200), ("x = -3", -3),
    ("Half of 5 is 2.5", 2.5), ("3, 5, 7", 7),
])
def test_the_final_number_is_read_from_free_text(text, value):
    got = parse_final_number(text)
    assert got == value and type(got) is type(value)


def test_text_without_a_number_is_unparsable():
    assert parse_final_number("I don't know.") is None and parse_final_number("") is None


def test_stories_solve_exactly_and_never_go_negative_or_fractional():
    rng = random.Random(0)
    for _ in range(500):
        story = draw_story(rng, rng.randint(1, 4), range(2, 21), range(2, 10))
        steps, answer = story_steps(story)
        x = story.start
        for (name, k, _), step in zip(story.ops, steps, strict=True):
            x = {"add": x + k, "sub": x - k, "mul": x * k, "div": x / k}[name]   # independent reference
            assert x == int(x) >= 0 and step.endswith(f"={int(x)}")
        assert answer == x
        text = story_text(story)
        assert text.startswith(f"{story.name} has {story.start} {story.item}.") and text.endswith("as a number.")
        last, k, _ = story.ops[-1]
        assert "{" not in text and ({2: "twice", 3: "three times"}[k] if last == "mul" else f" {k} ") in text


def test_every_operation_occurs():
    rng = random.Random(1)
    seen = {n for _ in range(200) for n, _, _ in draw_story(rng, 3, range(2, 21), range(2, 10)).ops}
    assert seen == set(OPS)


def test_word_problem_task_splits_are_seeded_disjoint_and_verified_on_free_text():
    task = make_task("word_problems", 2)
    a = [task.sample(random.Random(3), "train").prompt for _ in range(3)]
    assert a == [task.sample(random.Random(3), "train").prompt for _ in range(3)]      # seeded
    rng = random.Random(4)
    for split in ("train", "heldout"):
        for _ in range(30):
            p = task.sample(rng, split)
            assert is_heldout(p.prompt) == (split == "heldout") and len(p.steps) in (1, 2)
            assert task.verify(f"Let me think. {p.steps[-1]}. The answer is {p.answer}.", p.answer)
            assert not task.verify(f"The answer is {p.answer + 1}.", p.answer)
    ood = [task.sample(rng, "ood") for _ in range(30)]
    assert min(len(p.steps) for p in ood) == 3 and all(p.prompt[:30] for p in ood)
    assert task.parse("no idea") is None and not task.verify("no idea", 3)
