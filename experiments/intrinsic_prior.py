"""Prior check of every base of the intrinsic grid (issue 20): pass@1, maj@8, greedy accuracy and, per label-free
score, the global and within-group AUROC for correctness, at the base's sampling temperature and completion cap.

    .venv/bin/python experiments/intrinsic_prior.py [BASE ...]    # default: every base of intrinsic_grid.BASES
    .venv/bin/python experiments/intrinsic_prior.py --table       # the markdown table of the committed lines

128 held-out running-sum prompts x 8 samples (`tether lm prior-check`'s code), greedy accuracy on the same 128
prompts (`evaluate_split`). Writes one JSON line per (base, score) to docs/results/data/intrinsic_prior.jsonl
(lines of other bases are kept). ~15 s per base on one core.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "data" / "intrinsic_prior.jsonl"


def check_base(name: str) -> list[dict]:
    from intrinsic_grid import BASES

    from tether.lm.grpo.evaluate import eval_problems, evaluate_split
    from tether.lm.grpo.tasks import make_task
    from tether.lm.intrinsic.prior_check import PriorCheckConfig, prior_check
    from tether.lm.model.build import ModelSpec, build_policy
    from tether.lm.model.tokenizer import CharTokenizer
    from tether.lm.rollout.engine import RolloutEngine

    base, path, temp, corpus, cap = BASES[name]
    cfg = PriorCheckConfig(model=path, temperature=temp, max_new_tokens=cap, samples=8, n_prompts=128)
    rows, summary = prior_check(cfg)
    tok = CharTokenizer()
    policy = build_policy(ModelSpec(path=path), tok, seed=cfg.seed)
    policy.module.eval()
    engine = RolloutEngine()
    engine.sync_from(policy)
    problems = eval_problems(make_task(cfg.task, cfg.difficulty), cfg.split, cfg.n_prompts, seed=cfg.seed)
    greedy = evaluate_split(engine, tok, problems, k=1, temperature=temp, max_new_tokens=cap,
                            seed=cfg.seed)["greedy_acc"]
    head = {"base": base, "temperature": temp, "corpus": corpus, "pass@1": summary["pass@1"],
            "maj@8": summary["maj@8"], "greedy": round(greedy, 4), "diversity": summary["diversity"],
            "len_mean": summary["len_mean"], "unparsable_frac": summary["unparsable_frac"]}
    return [{**head, **r} for r in rows]


SCORES = ("lp", "ent", "avg_ent", "renyi", "cp", "self_certainty", "rent", "em_seq", "rlsc", "majority", "semantic",
          "random", "format")


def table() -> None:
    rows = [json.loads(x) for x in OUT.read_text().splitlines()]
    keys = list(dict.fromkeys((r["base"], r["temperature"], r["corpus"]) for r in rows))
    print("| base | T | corpus | pass@1 | maj@8 | greedy | len | " + " | ".join(SCORES) + " |")
    print("|---" * (7 + len(SCORES)) + "|")
    for k in keys:
        rs = {r["reward"]: r for r in rows if (r["base"], r["temperature"], r["corpus"]) == k}
        h = next(iter(rs.values()))
        print(f"| {k[0]} | {k[1]:g} | {k[2]} | {h['pass@1']:.2f} | {h['maj@8']:.2f} | {h['greedy']:.2f} | "
              f"{h['len_mean']:.1f} | " + " | ".join(f"{rs[n]['auroc_within']:.2f}" if n in rs else "-"
                                                     for n in SCORES) + " |")


def main(names: list[str]) -> int:
    from intrinsic_grid import BASES

    if names == ["--table"]:
        table()
        return 0

    from tether.core.seeding import one_thread

    one_thread()
    names = names or list(BASES)
    bad = [n for n in names if n not in BASES]
    if bad:
        raise SystemExit(f"unknown base(s) {bad}; expected names from {list(BASES)}")
    keep = []
    if OUT.exists():
        drop = {(BASES[n][0], BASES[n][2], BASES[n][3]) for n in names}
        keep = [r for r in map(json.loads, OUT.read_text().splitlines())
                if (r["base"], r["temperature"], r["corpus"]) not in drop]
    rows = keep + [r for n in names for r in check_base(n)]
    OUT.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for r in rows:
        if r["reward"] == "em_seq":
            print(f"{r['base']} T={r['temperature']:g} {r['corpus']}: pass@1 {r['pass@1']:.3f} maj@8 {r['maj@8']:.3f} "
                  f"greedy {r['greedy']:.3f} em_seq within-group AUROC {r['auroc_within']:.3f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "experiments"))
    sys.exit(main(sys.argv[1:]))
