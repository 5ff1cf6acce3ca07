"""`tether report RUN_DIR...`: PNG learning curves and a Markdown summary (final metrics, config diff).

The default panels are the headline metrics each family logs (docs/metrics.md), not the first keys of a row,
which are lengths and `mismatch/*` diagnostics for a GRPO run; a run that logs none of them gets its first keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from tether.core.plots import differing_fields, plot_curves, run_config
from tether.core.rundir import read_jsonl

__all__ = ["ReportConfig", "HEADLINE", "EVAL_HEADLINE", "matching", "default_keys", "write_report", "run_report"]

HEADLINE = (
    "reward/mean", "reward/accuracy",                                # lm: the reward and whether answers are right
    "rollout/return", "rollout/success",                             # flow, online phase: the same two questions
    "kl/ref", "mismatch/delta_mean", "kl/path", "dual/*/lambda",     # the KL or mismatch each method holds
    "rollout/len_mean",                                              # lm: the length any reward can game
    "loss/critic", "q/mean",                                         # flow: critic fit and value
)
"""Patterns (fnmatch) of the metrics.jsonl keys plotted by default, in panel order."""
EVAL_HEADLINE = ("eval/*acc*", "eval/success", "eval/return")
"""The same for eval.jsonl: accuracies of every split (greedy, sampled), flow success and return."""


@dataclass(frozen=True)
class ReportConfig:
    runs: tuple[str, ...] = ()
    """Run directories to summarise (positional)."""
    out: str = ""
    """Output directory for report.md and the PNGs (default: the first run directory)."""
    keys: tuple[str, ...] = ()
    """Metric keys or fnmatch patterns ('mismatch/*') to plot, from metrics.jsonl or eval.jsonl (default: the
    headline metrics logged: reward/mean, reward/accuracy, kl/ref, mismatch/delta_mean, kl/path, dual/*/lambda,
    rollout/len_mean, eval accuracies; a run logging none of them gets its first 12 keys)."""


def matching(logged: list[str], patterns: tuple[str, ...] | list[str]) -> list[str]:
    """The logged keys matching any pattern (fnmatch), in pattern order, then logging order."""
    return list(dict.fromkeys(k for p in patterns for k in logged if fnmatchcase(k, p)))


def default_keys(logged: list[str], patterns: tuple[str, ...], limit: int) -> list[str]:
    """The logged keys matching the headline patterns, or else the first `limit` logged keys that are not timings."""
    return matching(logged, patterns)[:limit] or [k for k in logged if not k.startswith("time/")][:limit]


def _final(run: Path, file: str) -> dict[str, float]:
    rows = read_jsonl(run / file)
    out: dict[str, float] = {}
    for row in rows:  # last value of each key
        out.update({k: v for k, v in row.items() if k != "step"})
    if rows:
        out["step"] = rows[-1]["step"]
    return out


def _logged(finals: list[dict[str, float]]) -> list[str]:
    return list(dict.fromkeys(k for f in finals for k in f if k != "step"))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _config_diff(runs: list[Path]) -> list[str]:
    """Fields that differ and matter (bookkeeping left out; seeds shown: the columns are single runs)."""
    if len(runs) < 2:
        return ["(one run: nothing to compare)"]
    cfgs = {r: run_config(r) for r in runs}
    diff = differing_fields(list(cfgs.values()), seeds=True)
    if not diff:
        return ["(identical configs)"]
    return _table(["field"] + [r.name for r in runs], [[k] + [_fmt(cfgs[r].get(k, "-")) for r in runs] for k in diff])


def write_report(runs: list[Path], out: Path, keys: list[str] | None = None) -> Path:
    missing = [str(r) for r in runs if not (r / "metrics.jsonl").exists() and not (r / "config.json").exists()]
    if missing:
        raise FileNotFoundError(f"not run directories (no metrics.jsonl or config.json): {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    finals = {r: _final(r, "metrics.jsonl") for r in runs}
    eval_finals = {r: _final(r, "eval.jsonl") for r in runs}
    logged, evals = _logged(list(finals.values())), _logged(list(eval_finals.values()))
    if keys:  # any key (or pattern) the user names, in whichever file logs it; no eval key: the default eval panels
        train_keys = matching(logged, keys)
        eval_keys = matching(evals, keys) or default_keys(evals, EVAL_HEADLINE, 9)
    else:
        train_keys, eval_keys = default_keys(logged, HEADLINE, 12), default_keys(evals, EVAL_HEADLINE, 9)
    lines = [f"# tether report: {len(runs)} run(s)", ""]
    if plot_curves(runs, train_keys, out / "curves.png") is not None:
        lines += ["![learning curves](curves.png)", ""]
    if eval_keys and plot_curves(runs, eval_keys, out / "eval_curves.png", file="eval.jsonl") is not None:
        lines += ["![evaluation curves](eval_curves.png)", ""]
    columns = train_keys + [k for k in eval_keys if k not in train_keys]
    merged = {r: {**eval_finals[r], **finals[r]} for r in runs}  # the training step wins over the eval step
    lines += ["## Final metrics", ""]
    lines += _table(["run", "step"] + columns, [[r.name, _fmt(merged[r].get("step", "-"))] +
                                                [_fmt(merged[r].get(k, "-")) for k in columns] for r in runs])
    lines += ["", "## Config differences", ""] + _config_diff(runs)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_report(cfg: ReportConfig) -> int:
    if not cfg.runs:
        raise ValueError("tether report needs at least one RUN_DIR")
    runs = [Path(r) for r in cfg.runs]
    out = Path(cfg.out) if cfg.out else runs[0]
    path = write_report(runs, out, list(cfg.keys) or None)
    print(f"wrote {path}")
    return 0
