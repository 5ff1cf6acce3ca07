"""The DCMDP testbed grid of docs/results/dcmdp.md: resumable, one JSON line per finished run.

usage:
  python experiments/dcmdp_grid.py calibrate [--base B]  noise scales giving step-0 delta-bar = c and 4c (per base)
  python experiments/dcmdp_grid.py probe --step 0|100 [--base dense4k]   `tether lm grad-bias`, int4 and noisy
  python experiments/dcmdp_grid.py cells [--limit N] [--only A,B]   the training cells in the issue's order
  python experiments/dcmdp_grid.py list                  the cells, in order, with their state
  python experiments/dcmdp_grid.py curves                curve lines of finished cells that have none (from runs/)
  python experiments/dcmdp_grid.py plot [--base B]       accuracy and delta-bar vs step, 1 minibatch, from the lines

Every heavy job runs as `flock /tmp/tether-heavy.lock timeout 1140 ...` (<= 20 min, so other jobs get the CPU;
TETHER_HEAVY_LOCK=FILE takes another lock, e.g. to run next to the intrinsic grid on the other core);
a training cell that is cut by the timeout saves at the next step boundary (SIGTERM) and the next call resumes it
with --run.resume. A cell whose line is already in docs/results/data/dcmdp_runs.jsonl is skipped.

Cells: bases dense (long), MoE (long-moe, top-1 of 4 experts), then dense4k (long4k: the dense base pretrained
4000 steps instead of 1000, which solves more of its problems); engines fp32 (control, `none` only), int4,
logit noise at c and at 4c (c = 0.0037, the DCMDP tolerance); minibatches 1 then 4; arms none, tis_token (C = 2),
mis_seq, icepop [0.5, 5], dcmdp token_immediate and differentiable at lambda_max 1, 3, 10 (normalised dual step);
seed 0 of every cell first, then seeds 1 and 2 (seeds are cut before arms). 400 steps of 16 prompts x 8, lr 3e-5,
clip-higher 0.28, dual-clip 3; evaluation every 50 steps on 128 held-out problems x 8 samples with seed-dependent
evaluation noise (eval.seed = 1234 + seed), then the final weights again with the fp32 engine.

Collapse rule (stated in docs/results/dcmdp.md): a run collapsed if its final deployed held-out sampled accuracy is
below half its step-0 value, or it stopped on non-finite weights.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
from dcmdp_eval import evaluate_run  # noqa: E402

LOCK = os.environ.get("TETHER_HEAVY_LOCK", "/tmp/tether-heavy.lock")
"""Set TETHER_HEAVY_LOCK to another file to run this next to a heavy job (two cores, no timing taken)."""
JOB_SECONDS = 1140
TETHER = str(ROOT / ".venv" / "bin" / "tether")
DATA = ROOT / "docs" / "results" / "data"
RUNS_JSONL = DATA / "dcmdp_runs.jsonl"
PROBE_JSONL = DATA / "dcmdp_probe.jsonl"
CALIBRATION = DATA / "dcmdp_calibration.json"
CURVES_JSONL = DATA / "dcmdp_curves.jsonl"
"""Per finished cell: held-out deployed accuracy at every evaluation and the trainer's delta-bar every 10 steps."""
FIGURES = ROOT / "docs" / "results" / "figures"
BASES = {"dense": "tether/lm/dcmdp/bases/long", "moe": "tether/lm/dcmdp/bases/long-moe",
         "dense4k": "tether/lm/dcmdp/bases/long4k"}
"""dense4k is the dense base pretrained 4x longer (4000 steps), one the fp32 control can improve on."""
C = 0.0037
STEPS = 400
TASK = ["--task.difficulty", "12", "--rollout.max-new-tokens", "128"]
ARMS = ([("none", None), ("tis_token", None), ("mis_seq", None), ("icepop", None)]
        + [(f"dcmdp_{v}", lm) for v in ("token_immediate", "differentiable") for lm in (1.0, 3.0, 10.0)])


@dataclass(frozen=True)
class Cell:
    base: str
    engine: str          # fp32 | int4 | noisy
    calibration: str     # "" | c | 4c
    arm: str
    lambda_max: float | None
    minibatches: int
    seed: int

    @property
    def name(self) -> str:
        eng = self.engine + (f"-{self.calibration}" if self.calibration else "")
        lam = f"-lmax{self.lambda_max:g}" if self.lambda_max is not None else ""
        return f"{self.base}/{eng}/mb{self.minibatches}/{self.arm}{lam}/s{self.seed}"


def cells() -> list[Cell]:
    """Every cell in the issue's order, seed 0 of everything before seeds 1 and 2."""
    out = []
    for seed in (0, 1, 2):
        for base in ("dense", "moe", "dense4k"):
            for mb in (1, 4):
                out.append(Cell(base, "fp32", "", "none", None, mb, seed))
                for engine, cal in (("int4", ""), ("noisy", "c"), ("noisy", "4c")):
                    out += [Cell(base, engine, cal, arm, lam, mb, seed) for arm, lam in ARMS]
    return out


def calibration() -> dict:
    return json.loads(CALIBRATION.read_text()) if CALIBRATION.exists() else {}


def calibrate(bases: list[str]) -> dict:
    """Noise scales whose step-0 delta-bar is c and 4c on each base (held-out prompts of the training setting)."""
    from tether.lm.dcmdp.mismatch import MismatchConfig, calibrate_logit_noise, load_policy
    from tether.lm.grpo.config import TaskSpec
    from tether.lm.model.tokenizer import CharTokenizer

    torch.set_num_threads(1)
    out = calibration()
    tok = CharTokenizer()
    for base in bases:
        policy = load_policy(BASES[base], tok)
        cfg = MismatchConfig(task=TaskSpec(difficulty=12), n_prompts=64, samples=4, max_new_tokens=128, vocab=False)
        for label, target in (("c", C), ("4c", 4 * C)):
            if f"{base}/{label}" in out:
                continue
            scale, delta = calibrate_logit_noise(policy, tok, target, cfg)
            out[f"{base}/{label}"] = {"logit_noise": scale, "delta_mean": delta, "target": target}
            print(f"{base} {label}: logit_noise {scale:.4g} -> delta-bar {delta:.4g} (target {target:.4g})", flush=True)
            CALIBRATION.write_text(json.dumps(out, indent=1) + "\n")
    return out


def train_args(cell: Cell, run_dir: Path) -> list[str]:
    args = ["lm", "train", "--preset", "gsm-tiny", "--model.path", BASES[cell.base], *TASK, "--steps", str(STEPS),
            "--optim.lr", "3e-5", "--optim.minibatches", str(cell.minibatches), "--algo.dual-clip", "3",
            "--eval.every", "50", "--eval.n-prompts", "128", "--eval.k", "8", "--eval.splits", "heldout",
            "--eval.seed", str(1234 + cell.seed), "--samples-every", "0", "--run.save-every", "50",
            "--run.seed", str(cell.seed), "--run.dir", str(run_dir)]
    if cell.engine == "noisy":
        args += ["--rollout.logit-noise", f"{calibration()[f'{cell.base}/{cell.calibration}']['logit_noise']:.6g}"]
    else:
        args += ["--rollout.precision", cell.engine]
    if cell.arm.startswith("dcmdp"):
        args += ["--correction.name", "dcmdp", "--correction.variant", cell.arm.split("_", 1)[1],
                 "--correction.lambda-max", f"{cell.lambda_max:g}", "--correction.normalized"]
    else:
        args += ["--correction.name", cell.arm]
    return args


def heavy(argv: list[str]) -> int:
    """One heavy job: under the machine-wide lock, at most JOB_SECONDS (then SIGTERM: the trainer saves and stops)."""
    # inside a job that already holds the lock (`TETHER_HEAVY_LOCK_HELD=1`), a second flock would wait on itself
    held = os.environ.get("TETHER_HEAVY_LOCK_HELD") == "1"
    cmd = ([] if held else ["flock", LOCK]) + ["timeout", "-k", "60", str(JOB_SECONDS), *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def finished() -> set[str]:
    """Names of the cells that have a line in RUNS_JSONL (read once per command, not once per cell)."""
    return {r.get("cell") for r in _rows(RUNS_JSONL)}


def run_dir_of(cell: Cell, root: Path) -> Path:
    return root / cell.name


def run_cell(cell: Cell, root: Path, max_jobs: int = 4) -> bool:
    """Train (resuming across <= 20-min jobs), evaluate in fp32, append the line. True when the line was written."""
    run = run_dir_of(cell, root)
    for _ in range(max_jobs):
        evals = _rows(run / "eval.jsonl")
        if evals and evals[-1]["step"] >= STEPS and (run / "checkpoints" / f"step_{STEPS:07d}").exists():
            break
        resume = ["--run.resume"] if list((run / "checkpoints").glob("step_*")) else []
        heavy([TETHER, *train_args(cell, run), *resume])
    else:
        evals = _rows(run / "eval.jsonl")
        if not (evals and evals[-1]["step"] >= STEPS):
            print(f"{cell.name}: not finished after {max_jobs} jobs", flush=True)
            return False
    torch.set_num_threads(1)
    fp32 = evaluate_run(run, "fp32")
    (run / "eval_fp32.json").write_text(json.dumps(fp32, indent=1))
    line = summarise(cell, run, fp32)
    with open(RUNS_JSONL, "a") as f:
        f.write(json.dumps(line) + "\n")
    with open(CURVES_JSONL, "a") as f:
        f.write(json.dumps(curve(cell, run)) + "\n")
    print(json.dumps(line), flush=True)
    return True


def curve(cell: Cell, run: Path) -> dict:
    evals, metrics = _rows(run / "eval.jsonl"), _rows(run / "metrics.jsonl")
    return {"cell": cell.name, "eval_steps": [int(r["step"]) for r in evals],
            "acc_deployed": [r["eval/heldout/sample_acc"] for r in evals],
            "steps": [int(r["step"]) for r in metrics[::10]],
            "delta_mean": [r.get("mismatch/delta_mean") for r in metrics[::10]]}


def backfill_curves(root: Path) -> None:
    have, done = {r["cell"] for r in _rows(CURVES_JSONL)}, finished()
    for c in cells():
        run = run_dir_of(c, root)
        if c.name in done and c.name not in have and (run / "eval.jsonl").exists():
            with open(CURVES_JSONL, "a") as f:
                f.write(json.dumps(curve(c, run)) + "\n")
            print(f"curve of {c.name}", flush=True)


def plot(base: str) -> None:
    """Deployed held-out accuracy and delta-bar vs step of every 1-minibatch seed-0 cell of `base` (from the lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in _rows(CURVES_JSONL) if r["cell"].startswith(f"{base}/") and "/mb1/" in r["cell"]
            and r["cell"].endswith("/s0")]
    if not rows:
        raise SystemExit(f"{CURVES_JSONL}: no seed-0, 1-minibatch curves of base {base!r}")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in sorted(rows, key=lambda r: r["cell"]):
        label = r["cell"][len(base) + 1:].replace("/mb1/", " ").removesuffix("/s0")
        style = "-" if "/none" in r["cell"] or "dcmdp" not in r["cell"] else "--"
        ax1.plot(r["eval_steps"], r["acc_deployed"], style, marker="o", ms=3, label=label)
        pts = [(t, d) for t, d in zip(r["steps"], r["delta_mean"], strict=True) if d is not None]
        if pts and "fp32" not in r["cell"]:
            ax2.plot(*zip(*pts, strict=True), style, label=label)
    ax1.set(xlabel="GRPO step", ylabel="held-out sampled accuracy (deployed engine)",
            title=f"{base}, 1 minibatch, seed 0")
    ax2.set(xlabel="GRPO step", ylabel="mean |p_train - p_infer| on sampled tokens (delta-bar)", yscale="log")
    ax2.axhline(C, color="k", lw=0.8, ls=":", label="c = 0.0037")
    ax1.legend(fontsize=6)
    ax2.legend(fontsize=6)
    fig.tight_layout()
    out = FIGURES / f"dcmdp_{base}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}", file=sys.stderr)


def summarise(cell: Cell, run: Path, fp32: dict) -> dict:
    """The issue's keys (+ a few diagnostics) of one finished run."""
    evals, metrics = _rows(run / "eval.jsonl"), _rows(run / "metrics.jsonl")
    acc0, acc = evals[0]["eval/heldout/sample_acc"], evals[-1]["eval/heldout/sample_acc"]
    last = metrics[-20:]
    mean = lambda key, rows: sum(r[key] for r in rows if key in r) / max(1, sum(key in r for r in rows))  # noqa: E731
    nonfinite = any(r.get("grad/skipped_steps", 0) > 0 for r in metrics[-1:])
    noise = calibration().get(f"{cell.base}/{cell.calibration}", {}).get("logit_noise") if cell.calibration else None
    return {
        "cell": cell.name, "base": cell.base, "engine": cell.engine, "calibration": cell.calibration or None,
        "logit_noise": noise, "correction": cell.arm, "lambda_max": cell.lambda_max,
        "minibatches": cell.minibatches, "seed": cell.seed, "steps": int(evals[-1]["step"]),
        "acc_deployed": acc, "acc_fp32": fp32["eval/heldout/sample_acc"], "acc_deployed_step0": acc0,
        "greedy_deployed": evals[-1]["eval/heldout/greedy_acc"], "greedy_fp32": fp32["eval/heldout/greedy_acc"],
        "collapsed": bool(acc < 0.5 * acc0 or nonfinite),
        "delta_mean_last": mean("mismatch/delta_mean", last), "delta_mean_first": mean("mismatch/delta_mean",
                                                                                       metrics[:20]),
        "kl_k3_last": mean("mismatch/kl_k3", last), "abs_dlogp_max_last": mean("mismatch/abs_log_ratio_max", last),
        "grad_norm_max": max(r.get("grad/norm", 0.0) for r in metrics),
        "ppl_train_last": mean("mismatch/ppl_train", last),
        "route_flip_last": mean("mismatch/route_flip_frac", last) if cell.base == "moe" else None,
        "lambda_last": metrics[-1].get("dual/dcmdp/lambda"), "skipped_steps": metrics[-1].get("grad/skipped_steps"),
        "run_dir": str(run),
    }


def probe(step: int, root: Path, base: str = "dense") -> None:
    """grad-bias for none/TIS/IcePop/DCMDP on a dense base with int4 and noisy engines, at step 0 or a run's step."""
    cal = calibration()
    done = {(r["tag"], r["correction"]) for r in _rows(PROBE_JSONL)}
    jobs = []
    for engine, label in (("int4", ""), ("noisy", "c"), ("noisy", "4c")):
        tag = f"{base}/{engine}{'-' + label if label else ''}/step{step}"
        if any(t == tag for t, _ in done):
            continue
        if step == 0:
            ckpt = BASES[base]
        else:  # the uncorrected run's own weights at that step
            run = run_dir_of(Cell(base, engine, label, "none", None, 1, 0), root)
            ckpt = str(run / "checkpoints" / f"step_{step:07d}")
            if not Path(ckpt).exists():
                print(f"{tag}: {ckpt} does not exist yet (run that cell first)", flush=True)
                continue
        eng = (["--precision", "fp32", "--logit-noise", f"{cal[f'{base}/{label}']['logit_noise']:.6g}"]
               if engine == "noisy" else ["--precision", engine])
        jobs.append([TETHER, "lm", "grad-bias", "--checkpoint", ckpt, *eng, "--corrections",
                     "none,tis_token,icepop,dcmdp", *TASK[:2], "--max-new-tokens", "128", "--n-prompts", "64",
                     "--group-size", "8", "--json", "--out", str(PROBE_JSONL), "--tag", tag])
    if jobs:  # one heavy job for all engines (each probe is well under a minute)
        heavy(["bash", "-c", " && ".join(shlex.join(j) for j in jobs)])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["calibrate", "probe", "cells", "list", "curves", "plot"])
    ap.add_argument("--step", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="run at most this many unfinished cells (0 = all)")
    ap.add_argument("--only", default="", help="run only cells whose name contains one of these comma-separated "
                    "strings (in the grid's order)")
    ap.add_argument("--base", default="", help="calibrate / probe: this base only (default: calibrate all, "
                    "probe dense)")
    ap.add_argument("--root", type=Path, default=ROOT / "runs" / "dcmdp2")
    a = ap.parse_args(argv)
    if a.base and a.base not in BASES:
        raise SystemExit(f"--base {a.base!r}: expected one of {sorted(BASES)}")
    if a.what == "calibrate":
        calibrate([a.base] if a.base else list(BASES))
    elif a.what == "probe":
        probe(a.step, a.root, a.base or "dense")
    elif a.what == "curves":
        backfill_curves(a.root)
    elif a.what == "plot":
        plot(a.base or "dense4k")
    elif a.what == "list":
        done = finished()
        for c in cells():
            print(("done " if c.name in done else "     ") + c.name)
    else:
        if not calibration():
            raise SystemExit("run `python experiments/dcmdp_grid.py calibrate` first (the noisy cells need it)")
        only, done = a.only.split(","), finished()
        todo = [c for c in cells() if c.name not in done and any(o in c.name for o in only)]
        for c in todo[: a.limit or None]:
            run_cell(c, a.root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
