"""tether's collapse/hacking detectors and manifold-envelope lens as TRL `TrainerCallback`s.

Both read TRL's logged training metrics in `on_log`, translate TRL's names into tether's (`TRL_KEYS`), and write
their `diag/` or `lens/` values back into the same `logs` dict and the newest `state.log_history` row, so callbacks
after them (reporting integrations) and the run's history see them. `TetherGRPOTrainer` checkpoints their state
(`state_dict` / `load_state_dict`) with the dual state. Not owned here: the detector and lens formulas
(`tether.lm.grpo.detectors`, `tether.lm.intrinsic.lens`).

Caveats: TRL's `entropy` is the token entropy of the loss forward (= theta_old's on the first iteration of a batch);
with `logging_steps > 1` each row is a mean over the logged steps, so detector windows count log rows, not steps.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import QhullError
from transformers import TrainerCallback

from tether.lm.grpo.detectors import DetectorBank, DetectorConfig
from tether.lm.intrinsic.lens import PHASE_KEYS, Envelope, envelope_metrics, phase_trajectory

__all__ = ["TRL_KEYS", "TetherCallback", "DetectorCallback", "EnvelopeCallback", "tether_row"]

TRL_KEYS = {
    "entropy": "rollout/entropy",
    "frac_reward_zero_std": "rollout/zero_std_frac",
    "reward": "reward/mean",
    "completions/clipped_ratio": "rollout/truncated_frac",
    "completions/mean_length": "rollout/len_mean",
}
"""TRL 1.16 training-log names -> the tether keys the detectors and the lens read."""


def tether_row(logs: dict) -> dict[str, float]:
    """tether-keyed metrics of one TRL log row: translated TRL names plus keys already in tether's form."""
    row = {TRL_KEYS[k]: float(v) for k, v in logs.items() if k in TRL_KEYS and v is not None}
    row.update({k: float(v) for k, v in logs.items() if "/" in k and k not in TRL_KEYS and isinstance(v, float | int)})
    return row


def _publish(state, logs: dict, out: dict[str, float]) -> None:
    logs.update(out)
    if state.log_history and state.log_history[-1].get("step") == state.global_step:
        state.log_history[-1].update(out)


class TetherCallback(TrainerCallback):
    """A callback whose state `TetherGRPOTrainer` saves in `tether_state.pt` of each checkpoint."""

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError


class DetectorCallback(TetherCallback):
    """`tether.lm.grpo.detectors.DetectorBank` on TRL's training logs: logs `diag/*`; with `cfg.stop`, a detector that
    fires `patience` log rows in a row stops training (a checkpoint is saved) and the reason is printed."""

    def __init__(self, cfg: DetectorConfig | None = None) -> None:
        self.bank = DetectorBank(cfg or DetectorConfig())

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "reward" not in logs:  # evaluation rows and the end-of-training summary
            return
        out = self.bank.update(state.global_step, tether_row(logs))
        _publish(state, logs, out)
        if self.bank.stop_reason:
            print(f"stopped early: {self.bank.stop_reason}", flush=True)
            control.should_training_stop = control.should_save = True

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        """Feed the labelled canary (`cfg.canary`, e.g. 'eval_rewards/correct/mean') to the reward-hacking detector."""
        canary = self.bank.cfg.canary
        if metrics and canary in metrics and self.bank.history:
            self.bank.history[-1][canary] = float(metrics[canary])

    def state_dict(self) -> dict:
        return self.bank.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.bank.load_state_dict(state)


class EnvelopeCallback(TetherCallback):
    """The manifold-envelope lens (`tether.lm.intrinsic.lens`, our operationalisation, not the paper's) per log row.

    Phase point z = (entropy, log length, reward) standardised by the first `w0` rows; the envelope is the convex
    hull of `reference` (a pooled, already standardised (N, 3) cloud of reference runs, e.g. from
    `tether.lm.intrinsic.lens_report.load_run`) or of the run's own first `w0` points. Logs `lens/z_*` from row
    `w0` on and `lens/inside_frac`, `lens/hull_volume`, `lens/escape` over the last `window` points.
    """

    def __init__(self, reference: np.ndarray | None = None, w0: int = 10, window: int = 10) -> None:
        if w0 < 5 or window < 2:
            raise ValueError(f"w0={w0}, window={window}: need w0 >= 5 (a 3-D hull and its triangulation) "
                             "and window >= 2")
        self.reference, self.w0, self.window = reference, w0, window
        self.rows: list[dict[str, float]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        row = tether_row(logs or {})
        if "reward" not in (logs or {}) or not all(k in row for k in PHASE_KEYS):
            return
        self.rows.append({k: row[k] for k in PHASE_KEYS})
        if len(self.rows) < self.w0:
            return
        z = phase_trajectory(self.rows, w0=self.w0)                                 # (t, 3)
        out = {f"lens/{n}": float(v) for n, v in zip(("z_entropy", "z_log_len", "z_reward"), z[-1], strict=True)}
        try:
            env = Envelope(self.reference if self.reference is not None else z[: self.w0])
        except QhullError:  # the reference points span no 3-D simplex (too few distinct vertices): z only
            env = None
        if env is not None:
            out.update({f"lens/{n}": float(v[-1]) for n, v in envelope_metrics(z, env, window=self.window).items()})
        _publish(state, logs, out)

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state["rows"])
