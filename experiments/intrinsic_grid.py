"""The intrinsic-reward grid of docs/results/intrinsic.md as resumable batches (issue 20).

    .venv/bin/python experiments/intrinsic_grid.py run BATCH[,BATCH] [--max-minutes M]   # run unfinished cells
    .venv/bin/python experiments/intrinsic_grid.py list BATCH                    # its cells and which are done
    .venv/bin/python experiments/intrinsic_grid.py lines                         # rewrite the JSON lines only
    .venv/bin/python experiments/intrinsic_grid.py table                         # markdown tables from the lines
    .venv/bin/python experiments/intrinsic_grid.py lens                          # envelope AUROC from the lines
    .venv/bin/python experiments/intrinsic_grid.py recipe                        # the recipe lr from the sweep

A cell is (base, reward, KL beta, advantage, lr, seed); it runs `tether lm train` (GRPO, 16 prompts x G=8 per step,
clip 0.2 / 0.28, held-out evaluation every 10 steps on 128 fixed problems, k=4 samples at the base's temperature)
in runs/intrinsic/grid/<base>/<reward>/kl<beta>-<advantage>-lr<lr>/s<seed>. Finished cells (final evaluation
logged) are skipped, so a batch resumes where it stopped; several copies may run side by side (a cell is held by
an flock on <dir>.lock, released when its process dies). Runs hold the machine-wide heavy-job lock
/tmp/tether-heavy.lock, at most --hold-minutes (15) at a stretch, and each run has a 20-minute timeout.

After each run the lines are rewritten from every finished run: docs/results/data/intrinsic_runs.jsonl for the
grid (the issue's keys, the envelope flags computed by `envelope_test` over all finished grid runs, so they are
as of the runs that exist) and docs/results/data/intrinsic_lr_sweep.jsonl for the learning-rate sweep.

The recipe learning rate is not typed in: `recipe_lr()` reads the sweep's lines and takes the highest lr at which
every random-reward seed stays within +-BAND held-out sampled accuracy of step 0 at every evaluation.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "intrinsic"
DATA = ROOT / "docs" / "results" / "data"
GRID_LINES = DATA / "intrinsic_runs.jsonl"
SWEEP_LINES = DATA / "intrinsic_lr_sweep.jsonl"
CURVES = DATA / "intrinsic_curves.jsonl"
IDENTITY = ("base", "temperature", "corpus", "reward", "kl_beta", "advantage", "lr", "seed")
"""The keys of a line that name its cell: a committed line stands for a cell whose run directory is not here."""
BAND = 0.02
HEAVY_LOCK = os.environ.get("TETHER_HEAVY_LOCK", "/tmp/tether-heavy.lock")
"""Set TETHER_HEAVY_LOCK to another file to run this next to a heavy job (two cores, no timing taken)."""
STEPS = 200
SWEEP_LRS = (1e-6, 3e-6, 5e-6, 1e-5, 3e-5)
KEYS = ("base", "temperature", "corpus", "reward", "kl_beta", "advantage", "lr", "seed", "steps", "acc_step0",
        "acc_final", "greedy_final", "len_step0", "len_final", "trunc_final", "collapsed", "enveloped_step10",
        "enveloped_step20", "enveloped_step30")

# name -> (base, model path, sampling temperature, corpus, completion cap). The check corpus and its cap of 36
# tokens (20 % of the traces with a check step longer than that, none without) come from
# experiments/intrinsic_bases.sh.
BASES = {
    "strong-T1.5": ("strong", "base:strong", 1.5, "plain", 40),
    "strong-T2.0": ("strong", "base:strong", 2.0, "plain", 40),
    "medium": ("medium", "base:medium", 1.0, "plain", 40),
    "weak": ("weak", "base:weak", 1.0, "plain", 40),
    "anti": ("anti", "base:anti", 1.0, "plain", 40),
    "medium-check": ("medium", str(RUNS / "bases" / "medium-check"), 1.0, "check", 36),
}
# the paper's suite, the label-free anchors, the controls (ground truth = `correct`)
REWARDS = ("lp", "ent", "avg_ent", "renyi", "cp", "em_seq", "majority", "random", "format", "correct")
# run order inside a batch, so a batch cut short still has the references: ground truth, random, the two anchors
PRIORITY = ("correct", "random", "em_seq", "majority", "ent", "avg_ent", "lp", "cp", "renyi", "format")
KL = (0.0, 0.005)
ADVANTAGES = ("group_zscore", "group_mean")
SEEDS = (0, 1, 2)


def cell(base: str, reward: str, kl: float, adv: str, lr: float, seed: int, steps: int = STEPS) -> dict:
    return {"key": base, "reward": reward, "kl_beta": kl, "advantage": adv, "lr": lr, "seed": seed, "steps": steps}


def cell_dir(c: dict) -> Path:
    if c["key"] == "sweep":
        return RUNS / "lr_sweep" / f"medium-random-lr{c['lr']:g}-s{c['seed']}"
    return RUNS / "grid" / c["key"] / c["reward"] / f"kl{c['kl_beta']:g}-{c['advantage']}-lr{c['lr']:g}" / \
        f"s{c['seed']}"


def train_args(c: dict) -> list[str]:
    if c["key"] == "sweep":
        path, temp, cap, reward = "base:medium", 1.0, 40, "random"
    else:
        _, path, temp, _, cap = BASES[c["key"]]
        reward = c["reward"]
    return ["lm", "train", "--preset", "gsm-tiny", "--steps", str(c["steps"]), "--model.path", path,
            "--algo.reward", reward, "--algo.kl-coef", f"{c['kl_beta']:g}", "--algo.advantage", c["advantage"],
            "--optim.lr", f"{c['lr']:g}", "--rollout.temperature", f"{temp:g}", "--eval.temperature", f"{temp:g}",
            "--rollout.max-new-tokens", str(cap), "--eval.every", "10", "--eval.n-prompts", "128", "--eval.k", "4",
            "--eval.splits", "heldout", "--samples-every", "0", "--run.dir", str(cell_dir(c)),
            "--run.seed", str(c["seed"])]


def identity(c: dict) -> tuple:
    """The cell as its line names it (IDENTITY)."""
    if c["key"] == "sweep":
        base, temp, corpus = "medium", 1.0, "plain"
    else:
        base, _, temp, corpus, _ = BASES[c["key"]]
    return base, float(temp), corpus, c["reward"], float(c["kl_beta"]), c["advantage"], float(c["lr"]), c["seed"]


def committed(path: Path) -> dict[tuple, dict]:
    """The lines of `path` by cell identity (the results of earlier sessions, whose run directories may be gone)."""
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return {tuple(float(r[k]) if k in ("temperature", "kl_beta", "lr") else r[k] for k in IDENTITY): r for r in rows}


def finished(c: dict) -> bool:
    """The cell's run is finished here, or an earlier session's line for it is committed (never run twice)."""
    return ran_here(c) or identity(c) in committed(SWEEP_LINES if c["key"] == "sweep" else GRID_LINES)


def ran_here(c: dict) -> bool:
    ev = cell_dir(c) / "eval.jsonl"
    if not ev.exists():
        return False
    lines = ev.read_text().splitlines()
    return bool(lines) and json.loads(lines[-1]).get("step") == c["steps"]


# ---------------------------------------------------------------- the learning-rate recipe

def sweep_cells() -> list[dict]:
    """Seed 0 at every lr, then seed 1 at the lrs whose seed 0 stayed within the band (only those can be the
    recipe; a failed seed already rules an lr out)."""
    first = [cell("sweep", "random", 0.0, "group_zscore", lr, 0) for lr in SWEEP_LRS]
    return first + [cell("sweep", "random", 0.0, "group_zscore", c["lr"], 1) for c in first
                    if not finished(c) or _max_dev(c) <= BAND + 1e-9]


def _max_dev(c: dict) -> float:
    from tether.core.rundir import read_jsonl
    from tether.lm.intrinsic.lens_report import ACC

    if not ran_here(c):
        return committed(SWEEP_LINES)[identity(c)]["max_abs_dev"]
    accs = [e[ACC] for e in read_jsonl(cell_dir(c) / "eval.jsonl") if ACC in e]
    return max(abs(a - accs[0]) for a in accs)


def sweep_rows() -> list[dict]:
    from tether.core.rundir import read_jsonl
    from tether.lm.intrinsic.lens_report import ACC, run_outcome

    rows = committed(SWEEP_LINES)     # earlier sessions' lines, replaced by the runs that are here
    for c in sweep_cells():
        if not ran_here(c):
            continue
        accs = [e[ACC] for e in read_jsonl(cell_dir(c) / "eval.jsonl") if ACC in e]
        dev = max(abs(a - accs[0]) for a in accs)
        o = run_outcome(cell_dir(c))
        rows[identity(c)] = {"base": "medium", "temperature": 1.0, "corpus": "plain", "reward": "random",
                             "kl_beta": 0.0, "advantage": "group_zscore", "lr": c["lr"], "seed": c["seed"],
                             **{k: o[k] for k in KEYS[8:16]}, "max_abs_dev": round(dev, 4),
                             "within_band": bool(dev <= BAND + 1e-9)}
    return sorted(rows.values(), key=lambda r: (r["seed"], r["lr"]))


def recipe_lr() -> float:
    """The highest swept lr whose every finished random-reward seed (>= 2) stays within +-BAND."""
    rows = sweep_rows()
    ok = [lr for lr in SWEEP_LRS
          if len(rs := [r for r in rows if r["lr"] == lr]) >= 2 and all(r["within_band"] for r in rs)]
    if not ok:
        raise SystemExit("no recipe lr yet: run `intrinsic_grid.py run lr-sweep` first (needs 2 seeds per lr)")
    return max(ok)


# ---------------------------------------------------------------- batches (priority order)

def batches() -> dict[str, list[dict]]:
    out = {"lr-sweep": sweep_cells()}
    try:
        lr = recipe_lr()
    except SystemExit:
        return out
    # the lens needs the same reward on both sides of the stability limit: recipe / 3, recipe, recipe x 3
    lrs = tuple(float(f"{x:.3g}") for x in (lr / 3, lr, lr * 3))
    z = "group_zscore"
    out["core"] = [cell(b, r, 0.0, z, lr, 0) for r in PRIORITY for b in ("strong-T1.5", "medium")]
    out["lens-lr"] = [cell(b, r, 0.0, z, x, 0) for x in (lrs[2], lrs[0]) for r in PRIORITY
                      for b in ("strong-T1.5", "medium")]
    out["bases"] = [cell(b, r, 0.0, z, lr, 0) for b in ("weak", "medium-check", "strong-T2.0", "anti")
                    for r in REWARDS]
    # the lens on every base: the high lr on the bases of the `bases` batch, for more successes and failures
    out["lens-lr-bases"] = [cell(b, r, 0.0, z, lrs[2], 0) for b in ("strong-T2.0", "anti", "medium-check", "weak")
                            for r in PRIORITY]
    out["seeds"] = [cell(b, r, 0.0, z, lr, s) for s in (1, 2) for b in ("strong-T1.5", "medium", "weak",
                                                                          "medium-check", "strong-T2.0", "anti")
                    for r in REWARDS]
    out["kl-adv"] = [cell(b, r, kl, a, lr, s) for s in SEEDS for b in BASES for r in REWARDS
                     for kl in KL for a in ADVANTAGES if (kl, a) != (0.0, z)]
    out["full"] = [c for name in ("core", "lens-lr", "bases", "lens-lr-bases", "seeds", "kl-adv") for c in out[name]]
    return out


def grid_cells() -> list[dict]:
    seen, cells = set(), []
    for c in batches().get("full", []):
        if (k := json.dumps(c, sort_keys=True)) not in seen:
            seen.add(k)
            cells.append(c)
    return cells


# ---------------------------------------------------------------- lines

def grid_rows() -> tuple[list[dict], list[dict]]:
    """(lines, curves) of every grid cell that ran here or in an earlier session.

    A run here gives its line and its envelope curve (`lens_report.envelope_curve`, kept in CURVES so the envelope
    can be recomputed after its directory is gone). The envelope flags are recomputed over every run that has a
    curve; a committed line without a curve (runs before the curves were kept) keeps the flags it was written with."""
    from tether.lm.intrinsic.lens_report import envelope_curve, envelope_test, run_outcome

    lines, curves = committed(GRID_LINES), committed(CURVES)
    for c in grid_cells():
        if not ran_here(c):
            continue
        base, _, temp, corpus, _ = BASES[c["key"]]
        o = run_outcome(cell_dir(c))
        row = {"base": base, "temperature": temp, "corpus": corpus, "reward": c["reward"], "kl_beta": c["kl_beta"],
               "advantage": c["advantage"], "lr": c["lr"], "seed": c["seed"], **{k: o[k] for k in KEYS[8:16]},
               **{f"enveloped_step{t}": None for t in (10, 20, 30)}}
        steps, axes = envelope_curve(cell_dir(c))
        lines[identity(c)] = row
        curves[identity(c)] = {**{k: row[k] for k in IDENTITY}, "success": o["success"], "steps": steps.tolist(),
                               "axes": np.round(axes, 6).tolist()}
    pool = [k for k in lines if k in curves]
    if len(pool) >= 3 and any(curves[k]["success"] for k in pool):
        flags, _ = envelope_test([], (10, 20, 30), success=[curves[k]["success"] for k in pool], n_boot=10,
                                 curves=[(np.array(curves[k]["steps"]), np.array(curves[k]["axes"])) for k in pool])
        for k, f in zip(pool, flags, strict=True):
            lines[k].update({f"enveloped_step{t}": None if v != v else bool(v) for t, v in zip((10, 20, 30), f,
                                                                                                strict=True)})
    order = {identity(c): i for i, c in enumerate(grid_cells())}
    keys = sorted(lines, key=lambda k: order.get(k, len(order)))
    return [lines[k] for k in keys], [curves[k] for k in keys if k in curves]


def write_lines(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def lines() -> None:
    write_lines(SWEEP_LINES, sweep_rows())
    if "full" in batches():
        rows, curves = grid_rows()
        write_lines(GRID_LINES, rows)
        write_lines(CURVES, curves)


# ---------------------------------------------------------------- running

class HeavyLock:
    """The machine-wide heavy-job lock, held across consecutive cells for at most `hold_minutes` (one job of
    several ~1-minute runs instead of one lock round per run), then released so others get the CPU."""

    def __init__(self, hold_minutes: float, path: str = HEAVY_LOCK) -> None:
        self.hold, self.path, self.f, self.since = 60 * hold_minutes, path, None, 0.0

    def acquire(self) -> None:
        if self.f is not None and time.time() - self.since > self.hold:
            self.release()
        if self.f is None:
            self.f = open(self.path, "a")
            fcntl.flock(self.f, fcntl.LOCK_EX)     # blocks while another heavy job runs
            self.since = time.time()

    def release(self) -> None:
        if self.f is not None:
            self.f.close()                          # closing drops the flock
            self.f = None


def _cells_of(names: str) -> list[dict]:
    """The cells of one batch or of a comma-separated list of batches, in that order."""
    avail = batches()
    bad = [n for n in names.split(",") if n not in avail]
    if bad:
        raise SystemExit(f"batch(es) {bad} unknown or not available yet; available: {sorted(avail)}")
    return [c for n in names.split(",") for c in avail[n]]


def run_batch(name: str, max_minutes: float, hold_minutes: float) -> int:
    _cells_of(name)   # fail before any work on an unknown batch
    t_end = time.time() + 60 * max_minutes
    tether = str(ROOT / ".venv" / "bin" / "tether")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    heavy = HeavyLock(hold_minutes)
    tried: set[Path] = set()
    try:
        while True:   # the batch is re-read after every run: the sweep's second seeds depend on the first
            todo = [c for c in _cells_of(name) if cell_dir(c) not in tried and not finished(c)]
            if not todo:
                break
            if time.time() > t_end:
                print(f"stopping: --max-minutes {max_minutes} reached", flush=True)
                break
            c = todo[0]
            tried.add(cell_dir(c))
            d = cell_dir(c)
            d.parent.mkdir(parents=True, exist_ok=True)
            with open(f"{d}.lock", "w") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue   # another copy runs this cell
                heavy.acquire()
                if finished(c):
                    continue
                t0 = time.time()
                with open(f"{d}.log", "w") as log:
                    rc = subprocess.call(["timeout", "1200", tether, *train_args(c)], stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=ROOT)
                print(f"{time.strftime('%H:%M:%S')} {'done' if rc == 0 else f'FAILED rc={rc}'} "
                      f"{d.relative_to(ROOT)} ({time.time() - t0:.0f} s)", flush=True)
            lines()
    finally:
        heavy.release()
    return 0


def list_batch(name: str) -> None:
    for c in batches().get(name, []):
        state = "done " if ran_here(c) else "line " if finished(c) else "todo "   # line: an earlier session's
        print(state + str(cell_dir(c).relative_to(ROOT)))


# ---------------------------------------------------------------- tables

def table() -> None:
    rows = [json.loads(x) for x in GRID_LINES.read_text().splitlines()] if GRID_LINES.exists() else []
    print("| base | T | corpus | lr | KL | advantage | reward | seeds | acc step 0 | Δ sampled acc | "
          "Δ − Δ(GT) | greedy final | len 0 → final | trunc final | collapsed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["base"], r["temperature"], r["corpus"], r["lr"], r["kl_beta"], r["advantage"]),
                          []).append(r)
    for key, rs in groups.items():
        gt = [r["acc_final"] - r["acc_step0"] for r in rs if r["reward"] == "correct"]
        for reward in REWARDS:
            cs = [r for r in rs if r["reward"] == reward]
            if not cs:
                continue
            d = np.array([r["acc_final"] - r["acc_step0"] for r in cs])
            sd = f" ± {d.std():.3f}" if len(d) > 1 else ""
            vs = f"{d.mean() - np.mean(gt):+.3f}" if gt else "n/a"
            print(f"| {key[0]} | {key[1]:g} | {key[2]} | {key[3]:g} | {key[4]:g} | {key[5]} | {reward} | {len(cs)} | "
                  f"{np.mean([r['acc_step0'] for r in cs]):.3f} | {d.mean():+.3f}{sd} | {vs} | "
                  f"{np.mean([r['greedy_final'] for r in cs]):.3f} | "
                  f"{np.mean([r['len_step0'] for r in cs]):.1f} → {np.mean([r['len_final'] for r in cs]):.1f} | "
                  f"{np.mean([r['trunc_final'] for r in cs]):.3f} | {sum(r['collapsed'] for r in cs)}/{len(cs)} |")


def lens_summary() -> None:
    """AUROC (bootstrap 95 %) of the committed lines' envelope flags for success, per step: over the runs whose
    curves are kept (one leave-one-out pool, flags recomputed over all of them), then over every line (runs from
    before the curves were kept carry flags from their own, smaller pool)."""
    lines, curves = committed(GRID_LINES), committed(CURVES)
    for name, keys in (("runs with kept curves (one pool)", [k for k in lines if k in curves]),
                       ("every line (mixed pools)", list(lines))):
        print(name)
        _lens_summary([lines[k] for k in keys])


def _lens_summary(rows: list[dict]) -> None:
    from tether.lm.intrinsic.lens import bootstrap_auroc
    from tether.lm.intrinsic.lens_report import SUCCESS_GAIN

    y = np.array([r["acc_final"] - r["acc_step0"] >= SUCCESS_GAIN for r in rows])
    print(f"runs {len(rows)}, succeeded {int(y.sum())} (gain >= {SUCCESS_GAIN}), failed {int((~y).sum())}")
    for t in (10, 20, 30):
        f = np.array([np.nan if r[f"enveloped_step{t}"] is None else float(r[f"enveloped_step{t}"]) for r in rows])
        a, lo, hi, n = bootstrap_auroc(f, y, n_boot=2000)
        print(f"enveloped at step {t}: AUROC {a:.3f} [{lo:.3f}, {hi:.3f}] over {n} scored runs "
              f"({int(np.nansum(f))} enveloped)")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("run", "list", "lines", "table", "lens", "recipe"))
    ap.add_argument("batch", nargs="?", default="")
    ap.add_argument("--max-minutes", type=float, default=1e9, help="start no new cell after this many minutes")
    ap.add_argument("--hold-minutes", type=float, default=15.0,
                    help="release the machine-wide heavy-job lock after this many minutes (then wait for it again)")
    a = ap.parse_args(argv)
    if a.command == "run":
        return run_batch(a.batch, a.max_minutes, a.hold_minutes)
    if a.command == "list":
        list_batch(a.batch)
    elif a.command == "lines":
        lines()
    elif a.command == "table":
        table()
    elif a.command == "lens":
        lens_summary()
    else:
        print(f"{recipe_lr():g}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
