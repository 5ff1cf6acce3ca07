import json

import numpy as np
import pytest

from tether.core.config import ConfigError, parse_args
from tether.lm.intrinsic.lens_report import (
    SUCCESS_GAIN,
    LensConfig,
    analyse,
    early_warning,
    envelope_test,
    run_lens,
    run_outcome,
    trailing_mean,
)
from tether.testing.docs import undocumented


def fake_run(path, reward, seed, *, escape: bool, steps: int = 40):
    """A run whose (entropy, length, reward) jitter around their start, or drift away after step 15 while its
    held-out accuracy falls (constraint relaxation: length and entropy escape)."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model": {"path": "base:x"}, "algo": {"reward": reward},
                                                  "run": {"seed": seed}}))
    rows = []
    for t in range(1, steps + 1):
        drift = max(0, t - 15) * (0.5 if escape else 0.0)
        rows.append({"step": t, "rollout/entropy": 0.2 + 0.01 * rng.standard_normal() + 0.02 * drift,
                     "rollout/len_mean": 20 * np.exp(0.02 * rng.standard_normal() + 0.05 * drift),
                     "reward/mean": 0.5 + 0.02 * rng.standard_normal() + 0.05 * drift})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    evals = [{"step": s, "eval/heldout/sample_acc": 0.5 - (0.3 * (s >= 30) if escape else 0.0)}
             for s in range(0, steps + 1, 10)]
    (path / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    return path


@pytest.fixture
def runs(tmp_path):
    ok = [fake_run(tmp_path / f"ok{s}", "correct", s, escape=False) for s in range(4)]
    bad = [fake_run(tmp_path / f"bad{s}", "cp", s, escape=True) for s in range(3)]
    return ok, bad


def test_trailing_mean_is_causal():
    x = np.array([[0.0], [2.0], [4.0], [6.0]])
    assert trailing_mean(x, 2)[:, 0].tolist() == [0.0, 1.0, 3.0, 5.0]
    assert trailing_mean(x, 1)[:, 0].tolist() == x[:, 0].tolist()


def test_escaping_runs_leave_the_reference_envelope_and_are_flagged_early(runs, tmp_path):
    ok, bad = runs
    cfg = LensConfig(run_dirs=tuple(map(str, ok + bad)), reference=tuple(map(str, ok[:2])), out=str(tmp_path / "o"),
                     predict_at=(25, 40))
    res = analyse(cfg)
    inside = {r.name: r.inside_late() for r in res}
    assert [r.reference for r in res] == [True, True] + [False] * 5
    assert all(inside[f"reward=correct/seed={s}"] >= 0.5 for s in range(4))
    assert all(inside[f"reward=cp/seed={s}"] < 0.5 for s in range(3))
    assert len({r.cluster for r in res if r.group == "reward=cp"}) == 1   # the drifting entropy curves cluster together
    ew = early_warning(res, cfg)   # reference runs are left out: 2 successes, 3 failures
    assert ew["runs_with_eval"] == 5 and ew["failed"] == 3 and ew["auroc_escape@25"] == 1.0
    assert ew["auroc_dtw@25"] == 1.0 and ew["auroc_outside@40"] == 1.0  # one healthy run dips out for a while
    assert ew["lead_median"] > 0   # the lens alarms before the accuracy drop at step 30


def test_lens_command_writes_figures_jsonl_and_prints_classification(runs, tmp_path, capsys):
    ok, bad = runs
    argv = [*map(str, ok + bad), "--out", str(tmp_path / "o"), "--reference", ",".join(map(str, ok)), "--json"]
    cfg = parse_args(LensConfig, argv, positional="run_dirs")
    assert run_lens(cfg) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    summary = lines[-1]
    assert sorted(summary["enveloped"]) == [f"reward=correct/seed={s}" for s in range(4)]
    for name in ("lens_phase.png", "lens_dtw.png", "lens_metrics.png"):
        f = tmp_path / "o" / name
        assert f.exists() and f.stat().st_size < 150_000
    keys = {k for line in (tmp_path / "o" / "lens.jsonl").read_text().splitlines() for k in json.loads(line)
            if "/" in k}
    assert keys and undocumented(keys) == []


def test_label_free_envelope_and_validation(runs, tmp_path):
    ok, _ = runs
    res = analyse(LensConfig(run_dirs=(str(ok[0]),), out=str(tmp_path)))   # own first steps, one run
    assert res[0].metrics["inside_frac"][:5].min() == 1.0   # the first points define the envelope
    with pytest.raises(ConfigError, match="run_dirs"):
        analyse(LensConfig(run_dirs=()))
    with pytest.raises(ConfigError, match="w0"):
        LensConfig(run_dirs=("a",), w0=2)


def test_run_labels_are_unique_and_name_what_differs(tmp_path):
    """Two runs of one base, reward and seed but different learning rates used to share the label x/correct/s0."""
    a, b = fake_run(tmp_path / "a", "correct", 0, escape=False), fake_run(tmp_path / "b", "correct", 0, escape=False)
    for d, lr in ((a, 1e-5), (b, 3e-5)):
        cfg = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**cfg, "optim": {"lr": lr}, "run": {"seed": 0, "dir": str(d)}}))
    twin = fake_run(tmp_path / "twin", "correct", 0, escape=False)    # same config as `a` but for lr: a seed of `a`
    (twin / "config.json").write_text((a / "config.json").read_text())
    noconf = [fake_run(tmp_path / p / "run", "cp", 1, escape=False) for p in ("p", "q")]
    for d in noconf:
        (d / "config.json").unlink()
    names = [r.name for r in analyse(LensConfig(run_dirs=tuple(map(str, [a, b, twin, *noconf]))))]
    assert len(set(names)) == 5
    assert names[0].startswith("lr=1e-05/") and names[1] == "lr=3e-05" and names[2].startswith("lr=1e-05/")
    assert names[3:] == ["p/run", "q/run"]   # no config: the directory name, disambiguated by its parent


def grid_run(path, seed, *, gain: float, drift: float, steps: int = 40, lr: float = 1e-5):
    """A run logging the fixed envelope axes: successful runs (gain > 0) lower their entropy a little; failing
    runs (drift > 0) grow longer and less parsable while their accuracy falls."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model": {"path": "base:x"}, "optim": {"lr": lr},
                                                  "run": {"seed": seed}}))
    rows = []
    for t in range(1, steps + 1):
        k = max(0, t - 5)
        rows.append({"step": t, "rollout/entropy": 0.3 - 0.003 * k * (gain > 0) + 0.01 * rng.standard_normal(),
                     "rollout/len_mean": 20 * np.exp(0.02 * rng.standard_normal() + drift * k),
                     "reward/unparsable_frac": abs(0.02 + 0.01 * rng.standard_normal()) + drift * k,
                     "rollout/truncated_frac": min(1.0, drift * k * 3)})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    evals = [{"step": s, "eval/heldout/sample_acc": 0.5 + (gain - drift * 8) * s / steps,
              "eval/heldout/greedy_acc": 0.9, "eval/heldout/len_mean": 20.0 * (1 + drift * s)}
             for s in range(0, steps + 1, 10)]
    (path / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    return path


def test_run_outcome_labels_fixed_in_advance(tmp_path):
    ok = run_outcome(grid_run(tmp_path / "ok", 0, gain=0.05, drift=0.0))
    assert ok["success"] and not ok["collapsed"] and ok["steps"] == 40 and ok["acc_step0"] == 0.5
    assert ok["acc_final"] == pytest.approx(0.55) and ok["len_step0"] == ok["len_final"] == 20.0
    flat = run_outcome(grid_run(tmp_path / "flat", 0, gain=SUCCESS_GAIN / 2, drift=0.0))
    assert not flat["success"] and not flat["collapsed"]      # a gain inside the noise band is no success
    bad = run_outcome(grid_run(tmp_path / "bad", 0, gain=0.0, drift=0.05))
    assert not bad["success"] and bad["collapsed"] and bad["trunc_final"] == 1.0
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    (tmp_path / "empty" / "eval.jsonl").write_text("")
    with pytest.raises(ValueError, match="need eval.jsonl with >= 2 evaluations"):
        run_outcome(tmp_path / "empty")


def test_envelope_test_separates_and_the_loo_command_prints_it(tmp_path, capsys):
    ok = [grid_run(tmp_path / f"ok{s}", s, gain=0.05, drift=0.0) for s in range(5)]
    bad = [grid_run(tmp_path / f"bad{s}", 10 + s, gain=0.0, drift=0.03, lr=3e-5) for s in range(5)]
    flags, summary = envelope_test(ok + bad, (10, 30), n_boot=200)
    assert summary["runs"] == 10 and summary["succeeded"] == 5 and len(summary["scale_sd"]) == 3
    assert (flags[:5, 1] == 1).all() and (flags[5:, 1] == 0).all()
    assert summary["auroc_enveloped@30"] == [1.0, 1.0, 1.0] and summary["scored@30"] == 10
    # labels that say nothing: the same trajectories, success assigned at random, give no separation
    flags_r, summary_r = envelope_test(ok + bad, (30,), n_boot=200, success=[True, False] * 5)
    lo, hi = summary_r["auroc_enveloped@30"][1:]
    assert lo <= 0.5 <= hi
    cfg = parse_args(LensConfig, [*map(str, ok + bad), "--loo", "--json", "--predict-at", "10,30"],
                     positional="run_dirs")
    assert run_lens(cfg) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 11 and lines[-1]["auroc_enveloped@30"][0] == 1.0
    assert len({line["run"] for line in lines[:-1]}) == 10      # every run its own label
    assert [line["enveloped_step30"] for line in lines[:10]] == [True] * 5 + [False] * 5
    with pytest.raises(ConfigError, match="at least 3"):
        envelope_test(ok[:2])


def test_grid_configs_never_share_a_label(tmp_path):
    """Runs of the intrinsic grid differ in base, temperature, reward, KL, advantage, lr and seed: every run gets
    its own label, and runs that differ only by seed share the group (one colour)."""
    dirs, i = [], 0
    for temp in (1.5, 2.0):
        for kl in (0.0, 0.005):
            for lr in (1e-6, 3e-6):
                for seed in (0, 1):
                    d = fake_run(tmp_path / f"r{i}", "ent", seed, escape=False)
                    (d / "config.json").write_text(json.dumps({
                        "model": {"path": "base:strong"}, "rollout": {"temperature": temp},
                        "eval": {"temperature": temp}, "algo": {"reward": "ent", "kl_coef": kl},
                        "optim": {"lr": lr}, "run": {"seed": seed, "dir": str(d)}}))
                    dirs.append(d)
                    i += 1
    res = analyse(LensConfig(run_dirs=tuple(map(str, dirs))))
    assert len({r.name for r in res}) == len(dirs)
    assert len({r.group for r in res}) == len(dirs) // 2
    for a in res:
        for b in res:
            if a.group == b.group:
                assert a.name.split("/")[0] == b.name.split("/")[0]
