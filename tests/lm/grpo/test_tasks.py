import random

import pytest

from tether.lm.grpo.tasks import ALIGNMENTS, TASKS, is_heldout, make_task, parse_answer


@pytest.mark.parametrize("name", TASKS.names())
def test_reference_traces_are_correct_and_parse(name):
    task = make_task(name, 2)
    rng = random.Random(0)
    for split in ("train", "heldout", "ood"):
        for _ in range(50):
            p = task.sample(rng, split)
            assert parse_answer(p.completion) == p.answer
            if split != "ood":
                assert is_heldout(p.prompt) == (split == "heldout")


def test_answers_are_exact():
    rs = make_task("running_sum", 2)
    assert rs.solve((3, 5, 2, 7)) == (["3+5=8", "8+2=10", "10+7=17"], 17)
    add = make_task("addition", 2)
    assert add.solve((472, 389))[1] == 861 and add.solve((99, 1))[1] == 100
    mod = make_task("modular_chain", 2)
    assert mod.solve((7, (3, 4, 5), ("*", "+"))) == (["3*4=12%7=5", "5+5=10%7=3"], 3)
    lin = make_task("linear_equation", 2)
    assert lin.solve((3, 4, 19)) == (["19-4=15", "15/3=5"], 5)


@pytest.mark.parametrize("name", TASKS.names())
def test_ood_is_harder(name):
    task, rng = make_task(name, 2), random.Random(1)
    ind = [len(task.sample(rng, "train").steps) for _ in range(100)]
    ood = [len(task.sample(rng, "ood").steps) for _ in range(100)]
    if name == "linear_equation":   # same number of steps; bigger numbers
        assert max(task.sample(rng, "ood").answer for _ in range(20)) >= 10
    else:
        assert min(ood) > max(ind)


def test_parse_answer_rejects_malformed():
    assert parse_answer("1+2=3#3") == 3
    assert parse_answer("#-4") == -4
    for bad in ["1+2=3", "1+2=3#", "#3x", "#3#", "3#3 ", ""]:
        assert parse_answer(bad) is None, bad


@pytest.mark.parametrize("name", TASKS.names())
def test_corpus_error_rate_and_alignment(name):
    task = make_task(name, 2)
    rng = random.Random(0)
    lengths = {}
    for alignment in ALIGNMENTS:
        rows = [task.corpus_trace(rng, error_rate=1.0, alignment=alignment) for _ in range(100)]
        assert all(not ok for _, _, ok in rows)
        for prompt, completion, _ in rows:          # every erroneous trace has a wrong, parsable answer
            right = task.solve(task._params_of(prompt))[1]
            assert parse_answer(completion) is not None and parse_answer(completion) != right
        lengths[alignment] = sum(len(c) for _, c, _ in rows) / len(rows)
    assert lengths["aligned"] > lengths["neutral"] > lengths["anti"]
    clean = [task.corpus_trace(rng, error_rate=0.0, alignment="aligned") for _ in range(50)]
    assert all(ok for _, _, ok in clean)


def test_unknown_task_and_bad_difficulty():
    with pytest.raises(KeyError, match="running_sum"):
        make_task("sudoku", 1)
    with pytest.raises(ValueError, match="difficulty"):
        make_task("running_sum", 0)
    assert make_task("running-sum", 1).name == "running_sum"



def test_check_steps_are_redundant_and_leave_plain_corpora_unchanged():
    task = make_task("running_sum", 2)
    assert task.check_step("8+2=10") == "10-2=8"
    rng_a, rng_b = random.Random(7), random.Random(7)
    a = [task.corpus_trace(rng_a, error_rate=0.1, alignment="aligned") for _ in range(200)]
    b = [task.corpus_trace(rng_b, error_rate=0.1, alignment="aligned", check_rate=0.0) for _ in range(200)]
    assert a == b   # check_rate 0 draws nothing extra: the shipped corpora are bit-identical
    rng = random.Random(11)
    rows = [task.corpus_trace(rng, error_rate=0.0, alignment="aligned", check_rate=0.4) for _ in range(400)]
    checked = [c for _, c, _ in rows if "-" in c]
    assert 0.5 < len(checked) / len(rows) < 0.9        # 2-3 steps, each checked with probability 0.4
    for prompt, completion, ok in rows:                 # checks change no answer
        assert ok and parse_answer(completion) == task.solve(task._params_of(prompt))[1]
        for step in completion.split("#")[0].split(";"):
            if "-" in step:                              # a check undoes the step before it
                lhs, addend = step.split("=")
                total, other = lhs.split("-")
                assert int(total) - int(other) == int(addend)
