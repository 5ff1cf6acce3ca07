"""`tether lm ...` commands and the LM section of `tether demo`.

`train`, `pretrain` and `eval` are here (parse -> config -> run; the work lives in `grpo/trainer.py`,
`pretrain.py` and `grpo/evaluate.py`); `mismatch` comes from `dcmdp/cli.py`, `prior-check` and `lens` from
`intrinsic/cli.py`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import tether.lm.builtins  # noqa: F401  (registers the intrinsic rewards and the mismatch corrections)
from tether.core.cli import Command
from tether.core.config import check
from tether.core.plots import plot_curves
from tether.core.progress import print_summary, progress
from tether.core.rundir import RunConfig, RunDir, read_jsonl
from tether.core.seeding import one_thread
from tether.lm.dcmdp.cli import DCMDP_COMMANDS, dcmdp_demo_section
from tether.lm.grpo.config import PRESETS, AlgoSpec, EvalSpec, OptimSpec, RolloutSpec, TaskSpec, TrainConfig
from tether.lm.grpo.evaluate import eval_problems, evaluate_split
from tether.lm.grpo.inputs import as_tokenizer
from tether.lm.grpo.tasks import make_task
from tether.lm.grpo.trainer import GRPOTrainer
from tether.lm.intrinsic.cli import INTRINSIC_COMMANDS, intrinsic_demo_section
from tether.lm.model.build import ModelSpec, build_policy, model_tokenizer, resolve_path
from tether.lm.pretrain import PretrainConfig
from tether.lm.pretrain import run as run_pretrain
from tether.lm.rollout.engine import RolloutEngine
from tether.lm.rollout.precision import PRECISIONS


@dataclass(frozen=True)
class EvalConfig:
    model: ModelSpec = field(default_factory=lambda: ModelSpec(path="base:medium"))
    """The model to evaluate (default: the shipped medium base)."""
    task: TaskSpec = field(default_factory=TaskSpec)
    """The task and difficulty."""
    n_prompts: int = 256
    """Problems per split."""
    k: int = 8
    """Samples per problem for pass@k / maj@k."""
    temperature: float = 1.0
    """Temperature of the k samples (greedy accuracy uses 0)."""
    max_new_tokens: int = 40
    """Completion cap."""
    splits: tuple[str, ...] = ("heldout", "ood")
    """Splits to evaluate."""
    precision: str = "fp32"
    """Rollout engine precision (tether.lm.rollout.precision.PRECISIONS)."""
    seed: int = 1234
    """Seed of the problems and of the sampling noise."""

    def __post_init__(self) -> None:
        check(self.precision in PRECISIONS, "precision", self.precision, f"one of {PRECISIONS.names()}")


def run_eval(cfg: EvalConfig) -> int:
    one_thread()
    tok = as_tokenizer(model_tokenizer(cfg.model))   # a pretrained model's own (chat) tokenizer, else the char one
    task = make_task(cfg.task.name, cfg.task.difficulty)
    policy = build_policy(cfg.model, tok, seed=cfg.seed)
    engine = RolloutEngine(precision=cfg.precision)
    engine.sync_from(policy)
    out = {}
    with progress(len(cfg.splits), "lm eval") as bar:  # stderr: stdout stays one JSON object
        for split in cfg.splits:
            res = evaluate_split(engine, tok, eval_problems(task, split, cfg.n_prompts, seed=cfg.seed), k=cfg.k,
                                 temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                                 parse=task.parse)
            out.update({f"{split}/{k}": round(v, 4) for k, v in res.items()})
            bar.update(1, split=split)
    print(json.dumps(out))
    return 0


def train(cfg: TrainConfig) -> int:
    """`tether lm train`: build the run directory and the trainer, then fit; close with a short summary."""
    one_thread()
    if not cfg.model.path:  # no base given: a bare `tether lm train` would otherwise look like a broken library
        name = "TinyLM" if cfg.model.arch == "tiny" else f"{cfg.model.arch} model"
        print(f"warning: no --model.path: training a randomly initialised {name}, which cannot solve the task "
              "(accuracy and reward stay near 0); start from a base with --preset gsm-tiny or --model.path "
              "base:medium", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    # the checks that need the model (context length) run before any file is written
    trainer = GRPOTrainer(cfg)
    run = RunDir.from_config(cfg.run, cfg, default_dir=f"runs/lm/train-{time.strftime('%Y%m%d-%H%M%S')}")
    print(f"run dir: {run.path}", flush=True)
    trainer.run = run
    if cfg.run.resume:
        trainer.resume()
    final = trainer.fit()
    run.close()
    rewards = [r["reward/mean"] for r in read_jsonl(run.path / "metrics.jsonl") if "reward/mean" in r]
    # held-out accuracy is the headline; another split only when held-out is not evaluated
    split = next((s for s in ("heldout", *cfg.eval.splits) if f"eval/{s}/greedy_acc" in final), "heldout")
    print_summary(f"lm train done ({trainer.step_count} steps, {time.perf_counter() - t0:.0f} s)", run.path,
                  {f"{split} greedy acc": final.get(f"eval/{split}/greedy_acc"),
                   f"{split} sampled acc": final.get(f"eval/{split}/sample_acc"),
                   "reward/mean (last step)": rewards[-1] if rewards else None}, tensorboard=cfg.run.tensorboard)
    return 0


COMMANDS = [
    Command("train", TrainConfig, train, "GRPO on a synthetic reasoning task (TinyLM or a Hugging Face model)",
            presets=PRESETS),
    Command("pretrain", PretrainConfig, run_pretrain,
            "supervised base model with a controllable logical prior (steps, error rate, alignment)"),
    Command("eval", EvalConfig, run_eval, "greedy accuracy, pass@k and maj@k of a model on held-out and OOD splits"),
    *DCMDP_COMMANDS,
    *INTRINSIC_COMMANDS,
]


def demo_section(out_dir: Path) -> str:
    """~60 s on one core: GT-reward GRPO of the shipped medium base (the gsm-tiny recipe, 60 steps)."""
    out_dir = Path(out_dir)
    try:
        resolve_path("base:medium")
    except FileNotFoundError as e:
        return f"## Language-model RL (tether lm)\n\nSkipped: {e}\n"
    run_dir = out_dir / "lm_grpo"
    cfg = TrainConfig(preset="demo", steps=60, samples_every=20, model=ModelSpec(path="base:medium"),
                      rollout=RolloutSpec(prompts_per_step=16, group_size=8, max_new_tokens=32),
                      algo=AlgoSpec(clip_high=0.28), optim=OptimSpec(lr=3e-5),
                      eval=EvalSpec(every=20, n_prompts=128, k=4, splits=("heldout",)),
                      run=RunConfig(dir=str(run_dir)), task=TaskSpec())
    t0 = time.perf_counter()
    run = RunDir.create(run_dir, cfg, seed=0, overwrite=True)
    trainer = GRPOTrainer(cfg, run)
    last = trainer.fit()
    first = json.loads((run_dir / "eval.jsonl").read_text().splitlines()[0])
    wall = time.perf_counter() - t0
    plot_curves([run_dir], ["eval/heldout/greedy_acc", "eval/heldout/sample_acc"], out_dir / "lm_grpo_eval.png",
                file="eval.jsonl")
    plot_curves([run_dir], ["reward/mean", "rollout/len_mean"], out_dir / "lm_grpo_train.png")
    return (
        "## Language-model RL (tether lm)\n\n"
        f"GRPO with the ground-truth reward on the shipped medium running-sum base (0.1M-parameter TinyLM), "
        f"{cfg.steps} steps of {cfg.rollout.prompts_per_step} prompts x G={cfg.rollout.group_size}, one seed, "
        f"{wall:.0f} s wall. Held-out greedy accuracy {first['eval/heldout/greedy_acc']:.2f} -> "
        f"{last['eval/heldout/greedy_acc']:.2f}, sampled accuracy {first['eval/heldout/sample_acc']:.2f} -> "
        f"{last['eval/heldout/sample_acc']:.2f} ({cfg.eval.n_prompts} held-out problems; 3-seed, 100-step numbers in "
        "docs/results/lm-engine.md).\n\n"
        "![held-out accuracy](lm_grpo_eval.png)\n\n![reward and length](lm_grpo_train.png)\n\n"
        + dcmdp_demo_section(out_dir) + "\n" + intrinsic_demo_section(out_dir)
    )
