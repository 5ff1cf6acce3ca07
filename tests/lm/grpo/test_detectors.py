import math

import numpy as np
import pytest

from tether.core.config import ConfigError
from tether.lm.grpo.detectors import DetectorBank, DetectorConfig, spearman


def _steps(n, **series):
    return [{k: (v(i) if callable(v) else v) for k, v in series.items()} for i in range(n)]


def _run(cfg, rows):
    bank = DetectorBank(cfg)
    return bank, [bank.update(i + 1, r) for i, r in enumerate(rows)]


def test_entropy_collapse_fires_after_patience_and_stops_naming_step():
    rows = _steps(10, **{"rollout/entropy": lambda i: 1.0 if i < 5 else 0.01,
                         "rollout/zero_std_frac": lambda i: 0.2 if i < 5 else 0.95})
    bank, outs = _run(DetectorConfig(names=("entropy_collapse",), patience=3), rows)
    assert [o["diag/entropy_collapse_fired"] for o in outs] == [0] * 7 + [1] * 3
    assert bank.triggered == {"entropy_collapse": 8}
    assert bank.stop_reason is None  # stop=False: detect and log only
    bank, _ = _run(DetectorConfig(names=("entropy_collapse",), patience=3, stop=True), rows)
    assert bank.stop_reason.startswith("detector 'entropy_collapse' fired at step 8 (3 steps in a row): entropy 0.01")


def test_low_entropy_alone_is_not_collapse():
    rows = _steps(10, **{"rollout/entropy": 0.01, "rollout/zero_std_frac": 0.3})
    _, outs = _run(DetectorConfig(names=("entropy_collapse",), patience=1), rows)
    assert all(o["diag/entropy_collapse_fired"] == 0 for o in outs)


def test_reward_hacking_by_canary_and_by_spearman():
    # reward climbs steadily while the canary accuracy (evaluated every 5 steps) falls
    rows = _steps(30, **{"reward/mean": lambda i: 0.1 + 0.02 * i + 0.005 * (i % 2)})
    for i, r in enumerate(rows):
        if i % 5 == 0:
            r["eval/heldout/sample_acc"] = 0.8 - 0.02 * i
    bank, outs = _run(DetectorConfig(names=("reward_hacking",), patience=1, window=10), rows)
    assert outs[-1]["diag/reward_hacking_fired"] == 1 and "reward_hacking" in bank.triggered
    # the same reward curve with a rising canary does not fire
    for i, r in enumerate(rows):
        if "eval/heldout/sample_acc" in r:
            r["eval/heldout/sample_acc"] = 0.5 + 0.01 * i
    _, outs = _run(DetectorConfig(names=("reward_hacking",), patience=1, window=10), rows)
    assert all(o["diag/reward_hacking_fired"] == 0 for o in outs)
    anti = _steps(12, **{"diag/reward_acc_spearman": -0.4})
    _, outs = _run(DetectorConfig(names=("reward_hacking",), patience=1, window=10), anti)
    assert outs[-1]["diag/reward_hacking_fired"] == 1 and outs[8]["diag/reward_hacking_fired"] == 0


def test_length_and_format_signatures():
    rows = _steps(25, **{"rollout/truncated_frac": lambda i: 0.1 if i < 20 else 0.8,
                         "rollout/len_mean": lambda i: 20.0 if i < 22 else 1.5,
                         "reward/unparsable_frac": lambda i: 0.05 if i < 12 else 0.6})
    bank, outs = _run(DetectorConfig(names=("verbosity", "truncation", "format"), patience=2, window=10), rows)
    # format: the window mean rises by 0.55 * (s - 12) / 10 > 0.2 first at s = 16; patience 2 -> 17
    assert bank.triggered == {"format": 17, "verbosity": 22, "truncation": 24}
    assert "diag/format" not in outs[0] and outs[0]["diag/format_fired"] == 0  # too little history: no value


def test_spearman_and_config_errors():
    assert spearman(np.array([1, 2, 3]), np.array([0, 1, 1])) == pytest.approx(math.sqrt(3) / 2)
    assert math.isnan(spearman(np.array([1, 1]), np.array([0, 1])))
    with pytest.raises(ConfigError, match="detect.names"):
        DetectorConfig(names=("collapse",))


def test_state_round_trip():
    rows = _steps(6, **{"rollout/len_mean": 1.0})
    bank, _ = _run(DetectorConfig(names=("truncation",), patience=2), rows)
    other = DetectorBank(DetectorConfig(names=("truncation",), patience=2))
    other.load_state_dict(bank.state_dict())
    assert other.triggered == bank.triggered and other.streak == bank.streak
