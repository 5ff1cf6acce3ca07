import numpy as np
import pytest

from tether.lm.intrinsic.lens import (
    Envelope,
    cluster_curves,
    dtw,
    envelope_metrics,
    hull_volume,
    open_end_dtw,
    participation_ratio,
    phase_trajectory,
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
