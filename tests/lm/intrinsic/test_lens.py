import numpy as np
import pytest

from tether.lm.intrinsic.lens import (
    Envelope,
    bootstrap_auroc,
    cluster_curves,
    dtw,
    envelope_metrics,
    enveloped_loo,
    hull_volume,
    open_end_dtw,
    participation_ratio,
    phase_trajectory,
    pooled_scale,
)


def test_phase_trajectory_standardises_by_first_steps():
    rows = [{"rollout/entropy": 1.0 + 0.1 * (i % 2), "rollout/len_mean": 20.0 + i % 3,
             "reward/mean": 0.5, "step": i} for i in range(30)]
    z = phase_trajectory(rows, w0=10)
    assert z.shape == (30, 3)
    assert np.allclose(z[:10].mean(0), 0, atol=1e-9)
    assert np.allclose(z[:, 2], 0)  # a constant axis is centred, not divided by zero
    with pytest.raises(ValueError, match="need >= 2 logged steps"):
        phase_trajectory([{"step": 0}])


def test_hull_volume_of_unit_cube_and_degenerate_sets():
    cube = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    assert hull_volume(cube) == pytest.approx(1.0)
    assert hull_volume(cube[:3]) == 0.0
    assert hull_volume(np.c_[cube[:, :2], np.zeros(8)]) == 0.0  # flat


def test_envelope_inside_and_escape():
    rng = np.random.default_rng(0)
    ref = rng.uniform(-1, 1, size=(400, 3))
    env = Envelope(ref)
    assert env.contains(np.zeros(3))[0] and not env.contains(np.array([3.0, 0, 0]))[0]
    assert env.escape(np.zeros(3))[0] == 0.0
    assert env.escape(np.array([3.0, 0, 0]))[0] == pytest.approx(2.0, abs=0.1)  # hull face near x = 1
    traj = np.r_[rng.uniform(-0.5, 0.5, size=(10, 3)), np.array([[3.0, 0, 0]] * 10)]
    m = envelope_metrics(traj, env, window=5)
    assert m["inside_frac"][9] == 1.0 and m["inside_frac"][-1] == 0.0
    assert (m["escape"][10:] > 1.5).all()


def test_dtw_properties():
    a = np.sin(np.linspace(0, 6, 50))
    assert dtw(a, a) == 0.0
    stretched = np.sin(np.linspace(0, 6, 80))  # the same shape, slower: DTW aligns it
    shifted = a + 1.0
    assert dtw(a, stretched) < 0.2 * dtw(a, shifted)
    assert dtw(a, stretched) == pytest.approx(dtw(stretched, a))
    assert open_end_dtw(a[:20], a) == 0.0  # a prefix matches exactly with an open end
    assert open_end_dtw(a[:20], a) < dtw(a[:20], a)


def loop_dtw(a, b, open_end=False):
    """The former cell-by-cell recursion (the reference the wavefront must reproduce exactly)."""
    n, m = len(a), len(b)
    cost = np.abs(np.asarray(a, float)[:, None] - np.asarray(b, float)[None, :])
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    return float(acc[n, 1:].min() if open_end else acc[n, m])


def test_wavefront_dtw_equals_the_loop_exactly():
    rng = np.random.default_rng(0)
    for n, m in [(1, 1), (1, 7), (7, 1), (5, 5), (13, 40), (40, 13), (31, 32)]:
        a, b = rng.standard_normal(n), rng.standard_normal(m)
        assert dtw(a, b) == loop_dtw(a, b)
        assert open_end_dtw(a, b) == loop_dtw(a, b, open_end=True)


def test_clusters_separate_three_shapes():
    t = np.linspace(0, 1, 40)
    curves = [np.exp(-5 * t) + 0.01 * i for i in range(3)]          # entropy collapse (stagnation)
    curves += [1 + 2 * t ** 2 + 0.01 * i for i in range(3)]          # entropy blow-up (relaxation)
    curves += [np.cos(8 * t) + 0.01 * i for i in range(3)]           # oscillating
    labels, link = cluster_curves(curves, k=3)
    assert len(set(labels[:3])) == len(set(labels[3:6])) == len(set(labels[6:])) == 1
    assert len(set(labels)) == 3 and link.shape == (8, 4)


def test_participation_ratio():
    rng = np.random.default_rng(1)
    assert participation_ratio(rng.normal(size=(2000, 5))) == pytest.approx(5, rel=0.1)
    line = np.outer(rng.normal(size=500), np.ones(5))
    assert participation_ratio(line) == pytest.approx(1.0, abs=1e-6)


def test_pooled_scale_is_one_map_for_all_runs_and_survives_a_constant_axis():
    first = np.array([[0.2, 3.0, 0.0], [0.4, 3.2, 0.0], [0.3, 3.1, 0.0]])
    mean, sd = pooled_scale(first)
    assert np.allclose(mean, [0.3, 3.1, 0.0]) and np.allclose(sd[:2], first[:, :2].std(0)) and sd[2] == 1.0


def _traj(rng, drift, steps=30):
    t = np.arange(1, steps + 1)[:, None]
    return rng.normal(0, 0.1, (steps, 3)) + drift * np.maximum(t - 5, 0), np.arange(1, steps + 1)


def test_enveloped_loo_scores_a_run_against_the_other_successful_runs_only():
    rng = np.random.default_rng(0)
    good = [_traj(rng, np.array([0.05, 0.0, 0.0])) for _ in range(4)]     # the successful runs move together
    bad = [_traj(rng, np.array([0.0, 0.3, 0.3])) for _ in range(3)]       # failing runs leave that region
    runs = good + bad
    success = np.array([True] * 4 + [False] * 3)
    flags = enveloped_loo([z for z, _ in runs], [s for _, s in runs], success, at=(10, 30), window=10)
    assert flags.shape == (7, 2)
    assert (flags[:4, 1] == 1).all() and (flags[4:, 1] == 0).all()
    # left out: a successful run alone never vouches for itself
    lone = enveloped_loo([good[0][0], bad[0][0], bad[1][0]], [good[0][1]] * 3, np.array([True, False, False]),
                         at=(30,))
    assert np.isnan(lone[0, 0]) and (lone[1:, 0] == 0).all()
    # a flag is causal: before the drift starts every run is inside the successful runs' hull
    early = enveloped_loo([z for z, _ in runs], [s for _, s in runs], success, at=(5,), window=5)
    assert (early[4:, 0] == 1).all()


def test_bootstrap_auroc_interval_contains_the_point_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    y = rng.random(200) < 0.5
    s = y + rng.normal(0, 1.0, 200)
    a, lo, hi, n = bootstrap_auroc(s, y, n_boot=500)
    a2, lo2, hi2, _ = bootstrap_auroc(s[:40], y[:40], n_boot=500)
    assert n == 200 and lo < a < hi and 0.6 < a < 0.9 and hi - lo < hi2 - lo2
    perfect = bootstrap_auroc(np.array([0, 0, 1, 1.0, np.nan]), np.array([0, 0, 1, 1, 1], bool), n_boot=200)
    assert perfect[:3] == (1.0, 1.0, 1.0) and perfect[3] == 4   # the NaN score is dropped
    assert np.isnan(bootstrap_auroc(np.ones(3), np.ones(3, bool))[0])
