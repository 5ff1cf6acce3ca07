"""Collapse and hacking detectors for label-free RL (arXiv:2603.16578 and its anchors; signals in docs/metrics.md).

Each detector is a pure function of the run's history of flushed metrics (one dict per step, newest last)
and returns a `Signal`: a value logged under `diag/<name>` (once there is enough history) and whether the
signature fired.
`DetectorBank` is the stateful trainer callback: it keeps the history, requires `patience` consecutive
firings, and sets `stop_reason` (naming the signature and the step) when `stop` is set; the trainer logs
the step, saves a checkpoint and stops.

Signatures (thresholds are ours; the papers describe the shapes, not numbers):
  entropy_collapse  mean token entropy < floor AND fraction of zero-std reward groups > zero_std_max
                    (Entropy Mechanism, arXiv:2505.22617: the GRPO gradient vanishes)
  reward_hacking    training reward up by > `hack_sigma` sd of its first window while the labelled canary
                    accuracy is down by > `hack_drop` (SRT arXiv:2505.21444 "rise-then-fall"), or the
                    within-batch reward/correctness Spearman correlation < `spearman_floor` for a window
  verbosity         > `pin_frac` of completions truncated at the length cap (CP reward, INTUITOR's frozen scorer)
  truncation        mean length <= `floor_len` tokens (answers without derivation; length penalties)
  format            unparsable fraction up by > `format_rise` over its first window
Label-free: entropy_collapse, verbosity, truncation, format. reward_hacking needs labels (canary or batch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tether.core.config import check
from tether.core.registry import Registry

__all__ = ["DETECTORS", "DetectorConfig", "DetectorBank", "Signal", "spearman"]

ENTROPY, ZERO_STD = "rollout/entropy", "rollout/zero_std_frac"
REWARD, SPEARMAN = "reward/mean", "diag/reward_acc_spearman"
TRUNCATED, LENGTH, UNPARSABLE = "rollout/truncated_frac", "rollout/len_mean", "reward/unparsable_frac"


@dataclass(frozen=True)
class Signal:
    value: float
    """Logged under diag/<detector>: the detector's statistic (NaN until it has enough history)."""
    fired: bool
    """True when the signature is present at this step."""
    reason: str = ""
    """Human-readable evidence when fired."""


@dataclass(frozen=True)
class DetectorConfig:
    names: tuple[str, ...] = ("entropy_collapse", "reward_hacking", "verbosity", "truncation", "format")
    """Active detectors (comma-separated; empty = none)."""
    stop: bool = False
    """Stop the run when a detector has fired `patience` steps in a row."""
    patience: int = 3
    """Consecutive firing steps before a detector counts as triggered."""
    window: int = 10
    """Steps of the reference window (the run's first steps) and of trend windows."""
    entropy_floor: float = 0.05
    """entropy_collapse: mean token entropy (nats) below this ..."""
    zero_std_max: float = 0.9
    """... and more than this fraction of groups with all-equal rewards."""
    hack_sigma: float = 2.0
    """reward_hacking: reward rise, in sd of its first window, that counts as 'up'."""
    hack_drop: float = 0.1
    """reward_hacking: canary accuracy drop (absolute) that counts as 'down'."""
    canary: str = "eval/heldout/sample_acc"
    """reward_hacking: the labelled canary metric (an evaluation key fed to the bank after each evaluation)."""
    spearman_floor: float = 0.0
    """reward_hacking: mean within-batch reward/correctness Spearman below this over a window fires."""
    pin_frac: float = 0.5
    """verbosity: fraction of completions truncated at the cap that fires."""
    floor_len: float = 2.0
    """truncation: mean completion length (tokens, EOS included) at or below this fires."""
    format_rise: float = 0.2
    """format: rise of the unparsable fraction over its first window that fires."""

    def __post_init__(self) -> None:
        for n in self.names:
            check(n in DETECTORS, "detect.names", self.names, f"names from {DETECTORS.names()}")
        check(self.patience >= 1 and self.window >= 2, "detect.window", self.window, "window >= 2, patience >= 1")


DETECTORS: Registry[Callable[[list[dict[str, float]], DetectorConfig], Signal]] = Registry("detector")


def _series(history: list[dict[str, float]], key: str) -> np.ndarray:
    return np.array([h[key] for h in history if key in h and np.isfinite(h[key])], dtype=float)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation with average ranks for ties; NaN if either side is constant."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


@DETECTORS.register("entropy_collapse")
def entropy_collapse(history: list[dict[str, float]], cfg: DetectorConfig) -> Signal:
    ent, zs = _series(history, ENTROPY), _series(history, ZERO_STD)
    if not len(ent) or not len(zs):
        return Signal(float("nan"), False)
    fired = ent[-1] < cfg.entropy_floor and zs[-1] > cfg.zero_std_max
    return Signal(float(ent[-1]), bool(fired), f"entropy {ent[-1]:.3g} < {cfg.entropy_floor} and "
                                               f"{zs[-1]:.0%} zero-std groups > {cfg.zero_std_max:.0%}")


@DETECTORS.register("reward_hacking")
def reward_hacking(history: list[dict[str, float]], cfg: DetectorConfig) -> Signal:
    rho = _series(history, SPEARMAN)
    if len(rho) >= cfg.window and np.mean(rho[-cfg.window:]) < cfg.spearman_floor:
        m = float(np.mean(rho[-cfg.window:]))
        return Signal(m, True, f"within-batch reward/correctness Spearman {m:.2f} < {cfg.spearman_floor} "
                               f"over the last {cfg.window} steps")
    rew, acc = _series(history, REWARD), _series(history, cfg.canary)
    if len(rew) < 2 * cfg.window or len(acc) < 2:
        return Signal(float("nan"), False)
    base = rew[: cfg.window]
    rise = (rew[-cfg.window:].mean() - base.mean()) / max(base.std(), 1e-8)
    drop = acc.max() - acc[-1]
    fired = rise > cfg.hack_sigma and drop > cfg.hack_drop
    return Signal(float(rise), bool(fired), f"reward up {rise:.1f} sd while canary accuracy fell "
                                           f"{drop:.2f} from its best ({acc.max():.2f} -> {acc[-1]:.2f})")


@DETECTORS.register("verbosity")
def verbosity(history: list[dict[str, float]], cfg: DetectorConfig) -> Signal:
    tr = _series(history, TRUNCATED)
    if not len(tr):
        return Signal(float("nan"), False)
    return Signal(float(tr[-1]), bool(tr[-1] > cfg.pin_frac),
                  f"{tr[-1]:.0%} of completions hit the length cap (> {cfg.pin_frac:.0%})")


@DETECTORS.register("truncation")
def truncation(history: list[dict[str, float]], cfg: DetectorConfig) -> Signal:
    ln = _series(history, LENGTH)
    if not len(ln):
        return Signal(float("nan"), False)
    return Signal(float(ln[-1]), bool(ln[-1] <= cfg.floor_len),
                  f"mean completion length {ln[-1]:.1f} <= {cfg.floor_len} tokens")


@DETECTORS.register("format")
def format_breakage(history: list[dict[str, float]], cfg: DetectorConfig) -> Signal:
    un = _series(history, UNPARSABLE)
    if len(un) < cfg.window + 1:
        return Signal(float("nan"), False)
    rise = float(un[-cfg.window:].mean() - un[: cfg.window].mean())
    return Signal(rise, rise > cfg.format_rise, f"unparsable fraction rose by {rise:.2f} (> {cfg.format_rise})")


class DetectorBank:
    """Trainer callback: `update(step, metrics) -> {diag/...: value}`; sets `stop_reason` when configured."""

    def __init__(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.history: list[dict[str, float]] = []
        self.streak = {n: 0 for n in cfg.names}
        self.triggered: dict[str, int] = {}
        self.stop_reason: str | None = None

    def update(self, step: int, metrics: dict[str, float]) -> dict[str, float]:
        self.history.append(metrics)
        out: dict[str, float] = {}
        for name in self.cfg.names:
            sig = DETECTORS.get(name)(self.history, self.cfg)
            self.streak[name] = self.streak[name] + 1 if sig.fired else 0
            if np.isfinite(sig.value):  # no statistic yet (too little history): log nothing rather than NaN
                out[f"diag/{name}"] = sig.value
            out[f"diag/{name}_fired"] = float(self.streak[name] >= self.cfg.patience)
            if self.streak[name] >= self.cfg.patience and name not in self.triggered:
                self.triggered[name] = step
                if self.cfg.stop and self.stop_reason is None:
                    self.stop_reason = (f"detector {name!r} fired at step {step} ({self.cfg.patience} steps in a "
                                        f"row): {sig.reason}")
        return out

    def state_dict(self) -> dict:
        return {"history": self.history, "streak": self.streak, "triggered": self.triggered,
                "stop_reason": self.stop_reason}

    def load_state_dict(self, d: dict) -> None:
        self.history, self.streak, self.triggered = list(d["history"]), dict(d["streak"]), dict(d["triggered"])
        self.stop_reason = d["stop_reason"]
