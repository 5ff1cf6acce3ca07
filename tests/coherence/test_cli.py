"""`tether coherence sweep|plot` and the demo section, through the real top-level CLI."""

import json

import numpy as np
import pytest

from tether.cli import main
from tether.coherence.cli import PlotConfig, SweepConfig, build_env, demo_section
from tether.coherence.envs import ENVS

KEYS = ["round", "root_policy", "success", "return", "incoherence", "incoherence_inv_k", "tempered_gap"]


def test_sweep_json_has_exact_keys_and_golden_values(capsys):
    assert main(["coherence", "sweep", "--env", "mountain-race", "--rounds", "6", "--delta", "1", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["round"] for r in rows] == list(range(7)) and all(list(r) == KEYS for r in rows)
    # round 0 has a return of -inf and infinite incoherence: strict JSON carries them as null
    assert rows[0]["return"] is None and rows[0]["incoherence"] is None and rows[0]["incoherence_inv_k"] is None
    assert abs(rows[2]["root_policy"][0] - 8 / 17) < 1e-12 and abs(rows[2]["success"] - 59 / 68) < 1e-12
    assert abs(rows[3]["incoherence"] - 0.001715) < 1e-6 and abs(rows[6]["incoherence_inv_k"] - 0.041253) < 1e-6
    assert max(r["tempered_gap"] for r in rows) < 1e-12


def test_sweep_stochastic_env_shows_tempering_gap(capsys):
    assert main(["coherence", "sweep", "--env", "stochastic-counterexample", "--rounds", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert abs(rows[2]["tempered_gap"] - abs(25 / 61 - 7 / 17)) < 1e-12


@pytest.mark.parametrize("env", ENVS)
def test_every_env_sweeps_as_a_table(env, capsys):
    assert main(["coherence", "sweep", "--env", env, "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert "tempered_gap" in out and len(out.strip().splitlines()) == 2 + 1 + 3


def test_env_flags_reach_the_builders():
    m = build_env(SweepConfig(env="deep-mountain-race", depth=3, safe_payoff=0.6, slip=0.1))
    assert m.horizon == 4 and not m.is_deterministic() and np.isclose(np.exp(m.log_q[3][-1, 0]), 0.6)
    a = build_env(SweepConfig(env="random-tree", seed=0, horizon=4, n_actions=3, stochastic=True))
    b = build_env(SweepConfig(env="random-tree", seed=0, horizon=4, n_actions=3, stochastic=True))
    assert (a.horizon == 4 and a.n_actions[0] == 3
            and all(np.array_equal(x, y) for x, y in zip(a.log_q, b.log_q, strict=True)))


def test_bad_flag_value_is_a_clear_error(capsys):
    assert main(["coherence", "sweep", "--env", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["coherence", "sweep", "--delta", "0"]) == 2


def test_plot_writes_small_pngs(tmp_path, capsys):
    assert main(["coherence", "plot", "--env", "mountain-race", "--rounds", "4", "--out", str(tmp_path)]) == 0
    pngs = sorted(tmp_path.glob("coherence_mountain_race_*.png"))
    assert len(pngs) == 4 and all(1000 < p.stat().st_size < 150_000 for p in pngs)


def test_demo_section_references_its_figures(tmp_path):
    md = demo_section(tmp_path)
    assert md.startswith("## Coherence")
    for p in tmp_path.glob("*.png"):
        assert f"({p.name})" in md
    assert len(list(tmp_path.glob("*.png"))) == 6 and PlotConfig().rounds == 12  # 4 exact + 2 neural
