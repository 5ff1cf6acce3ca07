"""Evaluate the final checkpoint of DCMDP experiment runs with an engine of a chosen precision (default fp32).

The trainer's eval.jsonl evaluates with the run's own rollout engine (the policy *as deployed*). This script
re-evaluates the same final weights with another engine, by default the fp32 one (the trainer's own policy),
on exactly the trainer's evaluation problems and sampling seed, so the two numbers differ only by the engine.

usage: python experiments/dcmdp_eval.py RUN_DIR [RUN_DIR ...] [--precision fp32]
Writes RUN_DIR/eval_<precision>.json ({"step": N, "eval/heldout/...": ..}); skips runs that already have it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from tether.lm.dcmdp.mismatch import load_policy
from tether.lm.grpo.evaluate import eval_problems, evaluate_split
from tether.lm.grpo.tasks import make_task
from tether.lm.model.tokenizer import CharTokenizer
from tether.lm.rollout.engine import RolloutEngine


def final_checkpoint(run_dir: Path) -> Path | None:
    """The highest-step checkpoints/step_N directory of a run (None if the run saved none)."""
    ckpts = sorted((run_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    return ckpts[-1] if ckpts else None


def evaluate_run(run_dir: Path, precision: str = "fp32") -> dict[str, float]:
    """Eval metrics of the run's final weights under `precision`, with the run's own eval settings."""
    cfg = json.loads((run_dir / "config.json").read_text())
    ckpt = final_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoints/step_N")
    tok = CharTokenizer()
    policy = load_policy(str(ckpt), tok)
    engine = RolloutEngine(precision=precision)
    engine.sync_from(policy)
    task = make_task(cfg["task"]["name"], cfg["task"]["difficulty"])
    e = cfg["eval"]
    out: dict[str, float] = {"step": int(ckpt.name.split("_")[1])}
    for split in e["splits"]:
        problems = eval_problems(task, split, e["n_prompts"], seed=e["seed"])
        res = evaluate_split(engine, tok, problems, k=e["k"], temperature=e["temperature"],
                             max_new_tokens=cfg["rollout"]["max_new_tokens"], seed=e["seed"])
        out.update({f"eval/{split}/{k}": v for k, v in res.items()})
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    for run in args.runs:
        dest = run / f"eval_{args.precision}.json"
        if dest.exists() or final_checkpoint(run) is None:
            continue
        res = evaluate_run(run, args.precision)
        dest.write_text(json.dumps(res, indent=1))
        print(f"{run}: heldout sample_acc {res['eval/heldout/sample_acc']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
