import torch

from tether.lm.grpo.evaluate import eval_problems, evaluate_split, majority
from tether.lm.grpo.tasks import make_task


class ScriptedEngine:
    """Engine double that answers from a script: greedy -> the right answer; samples -> the given answers."""

    def __init__(self, tok, problems, sampled):
        self.tok, self.problems, self.sampled = tok, problems, sampled

    def generate(self, ids, mask, *, max_new_tokens, eos_id, pad_id, temperature=1.0, top_p=1.0, generator=None):
        from tether.lm.rollout.engine import Rollout
        k = ids.shape[0] // len(self.problems)
        texts = [f"#{p.answer}" if temperature == 0 else self.sampled[i][j]
                 for i, p in enumerate(self.problems) for j in range(k)]
        rows = [self.tok.encode(t, bos=False) + [eos_id] for t in texts]
        T = max(len(r) for r in rows)
        tokens = torch.tensor([r + [pad_id] * (T - len(r)) for r in rows])
        m = torch.tensor([[True] * len(r) + [False] * (T - len(r)) for r in rows])
        return Rollout(tokens, torch.zeros(tokens.shape), m)


def test_metrics_on_scripted_answers():
    from tether.lm.model.tokenizer import CharTokenizer
    tok = CharTokenizer()
    problems = eval_problems(make_task("running_sum", 2), "heldout", 2)
    a0, a1 = problems[0].answer, problems[1].answer
    sampled = [[f"#{a0}", f"#{a0 + 1}", "junk", f"#{a0}"],           # 2/4 right, majority right
               [f"#{a1 + 1}", f"#{a1 + 1}", f"#{a1}", "x#"]]          # 1/4 right, majority wrong
    res = evaluate_split(ScriptedEngine(tok, problems, sampled), tok, problems, k=4, temperature=1.0,
                         max_new_tokens=8, seed=0)
    assert res["greedy_acc"] == 1.0 and res["sample_acc"] == 3 / 8
    assert res["pass@4"] == 1.0 and res["maj@4"] == 0.5 and res["unparsable_frac"] == 2 / 8


def test_majority_and_fixed_problem_sets():
    assert majority([3, None, 4, 4]) == 4 and majority([None, None]) is None and majority([5, 6]) == 5
    task = make_task("addition", 2)
    assert eval_problems(task, "ood", 5) == eval_problems(task, "ood", 5)
    assert eval_problems(task, "ood", 5) != eval_problems(task, "ood", 5, seed=1)


def test_a_tasks_free_text_parser_scores_word_problems():
    from tether.lm.model.tokenizer import CharTokenizer
    tok = CharTokenizer()   # the char tokenizer keeps digits, '=' and '#' (letters become '?'), enough for the parser
    task = make_task("word_problems", 1)
    problems = eval_problems(task, "heldout", 2)
    a0, a1 = problems[0].answer, problems[1].answer
    sampled = [[f"1+2={a0}", f"{a0 + 1}", "none"], [f"{a1}#{a1 + 3}", f"{a1 - 1}={a1}", f"{a1}"]]
    res = evaluate_split(ScriptedEngine(tok, problems, sampled), tok, problems, k=3, temperature=1.0,
                         max_new_tokens=8, seed=0, parse=task.parse)
    assert res["sample_acc"] == 3 / 6 and res["maj@3"] == 1.0 and res["unparsable_frac"] == 1 / 6
    strict = evaluate_split(ScriptedEngine(tok, problems, sampled), tok, problems, k=3, temperature=1.0,
                            max_new_tokens=8, seed=0)
    assert strict["sample_acc"] == 0.0   # the `#<integer>` parser reads none of them as right
