"""DetectorCallback and EnvelopeCallback on synthetic TRL log rows (no trainer)."""

import pytest

pytest.importorskip("trl")

from transformers import TrainerControl, TrainerState, TrainingArguments  # noqa: E402

from tether.integrations.trl.callbacks import DetectorCallback, EnvelopeCallback, tether_row  # noqa: E402
from tether.lm.grpo.detectors import DetectorConfig  # noqa: E402


def _log(cb, state, step, **logs):
    state.global_step = step
    state.log_history.append({**logs, "step": step})
    cb.on_log(TrainingArguments(output_dir="unused", report_to="none"), state, control := TrainerControl(), logs=logs)
    return logs, control


def _row(length, reward=0.5, entropy=1.0):
    return {"reward": reward, "entropy": entropy, "completions/mean_length": length, "frac_reward_zero_std": 0.0,
            "completions/clipped_ratio": 0.0, "loss": 0.1}


def test_trl_names_map_to_tether_keys():
    row = tether_row({**_row(7.0), "mismatch/delta_mean": 0.01, "rewards/lp/mean": None})
    assert row == {"reward/mean": 0.5, "rollout/entropy": 1.0, "rollout/len_mean": 7.0, "rollout/zero_std_frac": 0.0,
                   "rollout/truncated_frac": 0.0, "mismatch/delta_mean": 0.01}


def test_detector_publishes_diag_keys_and_stops_after_patience():
    cb = DetectorCallback(DetectorConfig(names=("truncation",), floor_len=2.0, patience=2, stop=True))
    state = TrainerState()
    logs, control = _log(cb, state, 1, **_row(1.0))
    assert logs["diag/truncation"] == 1.0 and state.log_history[-1]["diag/truncation_fired"] == 0.0
    assert not control.should_training_stop
    logs, control = _log(cb, state, 2, **_row(1.5))
    assert logs["diag/truncation_fired"] == 1.0 and control.should_training_stop and control.should_save
    assert "truncation" in cb.bank.stop_reason and "step 2" in cb.bank.stop_reason
    fresh = DetectorCallback(cb.bank.cfg)
    fresh.load_state_dict(cb.state_dict())
    assert fresh.bank.triggered == {"truncation": 2} and len(fresh.bank.history) == 2


def test_detector_ignores_eval_rows_and_records_the_canary():
    cb, state = DetectorCallback(DetectorConfig(canary="eval_rewards/correct/mean")), TrainerState()
    _log(cb, state, 1, **_row(5.0))
    cb.on_log(None, state, TrainerControl(), logs={"eval_reward": 0.3})
    cb.on_evaluate(None, state, TrainerControl(), metrics={"eval_rewards/correct/mean": 0.4})
    assert len(cb.bank.history) == 1 and cb.bank.history[-1]["eval_rewards/correct/mean"] == 0.4


def test_envelope_logs_lens_keys_from_w0_and_detects_an_escape():
    cb, state = EnvelopeCallback(w0=6, window=3), TrainerState()
    wobble = [(1.0, 10.0, 0.1), (1.1, 11.0, 0.2), (0.9, 9.5, 0.15), (1.05, 10.5, 0.12), (0.95, 9.0, 0.18),
              (1.0, 10.2, 0.14)]
    for step, (e, n, r) in enumerate(wobble, 1):
        logs, _ = _log(cb, state, step, **_row(n, reward=r, entropy=e))
    assert logs["lens/escape"] < 1e-6  # the reference cloud contains the point (joggled hull: ~1e-10)
    logs, _ = _log(cb, state, 7, **_row(3.0, reward=0.9, entropy=0.1))   # collapse: short, certain, high reward
    assert logs["lens/escape"] > 1.0 and logs["lens/inside_frac"] == pytest.approx(2 / 3)
    assert logs["lens/z_entropy"] < -3 and state.log_history[-1]["lens/escape"] == logs["lens/escape"]
    with pytest.raises(ValueError, match="w0=3"):
        EnvelopeCallback(w0=3)
