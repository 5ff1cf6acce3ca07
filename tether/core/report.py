"""`tether report RUN_DIR...`: PNG learning curves and a Markdown summary (final metrics, config diff)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tether.core.plots import is_noise_field, plot_curves, run_config
from tether.core.rundir import read_jsonl

__all__ = ["ReportConfig", "write_report", "run_report"]


@dataclass(frozen=True)
class ReportConfig:
    runs: tuple[str, ...] = ()
    """Run directories to summarise (positional)."""
    out: str = ""
    """Output directory for report.md and the PNGs (default: the first run directory)."""
    keys: tuple[str, ...] = ()
    """Metric keys to plot (default: every key logged by any run, up to 12)."""


def _final(run: Path, file: str) -> dict[str, float]:
    rows = read_jsonl(run / file)
    out: dict[str, float] = {}
    for row in rows:  # last value of each key
        out.update({k: v for k, v in row.items() if k != "step"})
    if rows:
        out["step"] = rows[-1]["step"]
    return out


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_report(runs: list[Path], out: Path, keys: list[str] | None = None) -> Path:
    missing = [str(r) for r in runs if not (r / "metrics.jsonl").exists() and not (r / "config.json").exists()]
    if missing:
        raise FileNotFoundError(f"not run directories (no metrics.jsonl or config.json): {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    finals = {r: _final(r, "metrics.jsonl") for r in runs}
    if not keys:
        seen: list[str] = []
        for f in finals.values():
            seen += [k for k in f if k != "step" and not k.startswith("time/") and k not in seen]
        keys = seen[:12]
    lines = [f"# tether report: {len(runs)} run(s)", ""]
    png = plot_curves(runs, keys, out / "curves.png")
    if png is not None:
        lines += ["![learning curves](curves.png)", ""]
    evals = [k for r in runs for k in _final(r, "eval.jsonl") if k != "step"]
    eval_png = plot_curves(runs, sorted(set(evals))[:9], out / "eval_curves.png", file="eval.jsonl") if evals else None
    if eval_png is not None:
        lines += ["![evaluation curves](eval_curves.png)", ""]
    lines += ["## Final metrics", ""]
    lines += _table(["run", "step"] + keys, [[r.name, _fmt(finals[r].get("step", "-"))] +
                                             [_fmt(finals[r].get(k, "-")) for k in keys] for r in runs])
    cfgs = {r: run_config(r) for r in runs}
    all_keys = sorted({k for c in cfgs.values() for k in c})
    diff = [k for k in all_keys if len({json.dumps(c.get(k), default=str) for c in cfgs.values()}) > 1]
    lines += ["", "## Config differences", ""]
    if len(runs) < 2:
        lines.append("(one run: nothing to compare)")
    elif not diff:
        lines.append("(identical configs)")
    else:
        lines += _table(["field"] + [r.name for r in runs],
                        [[k + (" (seed/name)" if is_noise_field(k) else "")] + [_fmt(cfgs[r].get(k, "-")) for r in runs]
                         for k in diff])
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
