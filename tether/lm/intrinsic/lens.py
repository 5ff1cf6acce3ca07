"""The manifold-envelope lens of arXiv:2603.16578: training runs as trajectories in a 3-D phase space.

The paper describes DTW clustering of token-entropy curves and convex-hull volumes of training trajectories in a
"phase space" without defining the axes or the envelope; the definitions here are OUR operationalisation
(reconstructions, documented in docs/results/intrinsic.md), not the paper's:

  phase space   z_t = (mean token entropy, log mean length, mean reward) per step, each coordinate
                standardised by the mean/std of the run's first `w0` steps (label-free).
  envelope      the convex hull of a reference cloud: the pooled trajectories of reference runs (e.g.
                ground-truth-reward runs), or the run's own first `w0` points.
  per step      inside_frac (fraction of the last `window` points inside the envelope), hull_volume
                (volume of the hull of the last `window` points), escape (largest facet violation of the
                envelope: 0 inside; a lower bound of the Euclidean distance outside).
  DTW           z-normalised mean-entropy curves, pairwise DTW, average-linkage clusters; open-end DTW
                matches a running run's partial curve to finished ones.
  hidden states participation ratio (sum l)^2 / sum l^2 of a probe set's pooled hidden states (our
                extension; not the paper's method).

The testable variant (`enveloped_loo`, used by the intrinsic grid): axes fixed in advance (`ENVELOPE_AXES`,
label-free and comparable across rewards), every run standardised by the same pooled step-0 statistics
(`pooled_scale`), the envelope of a run = the hull of the *successful* runs' trajectories with that run left
out, and `bootstrap_auroc` for the interval of "enveloped at step t" as a predictor of final success.

Pure numpy/scipy; reads nothing and logs nothing. `tether lm lens` draws the pictures.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial import ConvexHull, Delaunay, QhullError
from scipy.spatial.distance import squareform
from scipy.stats import rankdata

__all__ = ["PHASE_KEYS", "ENVELOPE_AXES", "phase_trajectory", "Envelope", "envelope_metrics", "hull_volume", "dtw",
           "dtw_matrix", "open_end_dtw", "cluster_curves", "participation_ratio", "pooled_scale", "enveloped_loo",
           "bootstrap_auroc"]

PHASE_KEYS = ("rollout/entropy", "rollout/len_mean", "reward/mean")  # the GRPO trainer's keys
# Fixed before any grid run: label-free and on one scale for every reward (the run's own reward is neither).
ENVELOPE_AXES = ("rollout/entropy", "rollout/len_mean", "reward/unparsable_frac")


def phase_trajectory(rows: list[dict[str, float]], keys: tuple[str, ...] = PHASE_KEYS, w0: int = 10,
                     log_axes: tuple[int, ...] = (1,)) -> np.ndarray:
    """(T, len(keys)) trajectory from metrics rows, standardised by the first `w0` rows.

    Rows missing a key are skipped. Axes in `log_axes` are log-transformed first (length is multiplicative).
    """
    pts = np.array([[row[k] for k in keys] for row in rows if all(k in row for k in keys)], dtype=float)
    if len(pts) < 2:
        raise ValueError(f"need >= 2 logged steps with keys {keys}, got {len(pts)}")
    for a in log_axes:
        pts[:, a] = np.log(np.maximum(pts[:, a], 1e-8))
    ref = pts[: max(2, w0)]
    sd = ref.std(0)
    return (pts - ref.mean(0)) / np.where(sd > 1e-8, sd, 1.0)


def hull_volume(points: np.ndarray) -> float:
    """Volume of the convex hull; 0 for degenerate (flat or too few) point sets."""
    if len(points) <= points.shape[1]:
        return 0.0
    try:
        return float(ConvexHull(points).volume)
    except QhullError:
        return 0.0


class Envelope:
    """Convex hull of a reference cloud: membership test and facet-violation escape distance."""

    def __init__(self, reference: np.ndarray) -> None:
        ref = np.asarray(reference, dtype=float)
        # joggle ("QJ") makes flat reference clouds (e.g. a frozen coordinate) usable instead of failing
        self.hull = ConvexHull(ref, qhull_options="QJ")
        self.tri = Delaunay(ref[self.hull.vertices], qhull_options="QJ")

    def contains(self, x: np.ndarray) -> np.ndarray:
        return self.tri.find_simplex(np.atleast_2d(x)) >= 0

    def escape(self, x: np.ndarray) -> np.ndarray:
        """max over facets of (n . x + b), clipped at 0: 0 inside, > 0 outside."""
        eq = self.hull.equations                                  # (F, d+1), unit normals pointing out
        off = np.atleast_2d(x) @ eq[:, :-1].T + eq[:, -1]         # (N, F)
        return np.maximum(off.max(1), 0.0)


def envelope_metrics(z: np.ndarray, envelope: Envelope, window: int = 10) -> dict[str, np.ndarray]:
    """Per-step inside_frac, hull_volume and escape of trajectory z (T, d) against an envelope."""
    inside = envelope.contains(z).astype(float)                   # (T,)
    frac = np.array([inside[max(0, t - window + 1): t + 1].mean() for t in range(len(z))])
    vol = np.array([hull_volume(z[max(0, t - window + 1): t + 1]) for t in range(len(z))])
    return {"inside_frac": frac, "hull_volume": vol, "escape": envelope.escape(z)}


def dtw(a: np.ndarray, b: np.ndarray, open_end: bool = False) -> float:
    """Dynamic time warping distance (absolute difference cost) between 1-D series.

    With `open_end`, `a` may match any prefix of `b` (a running run against a finished one).
    """
    n, m = len(a), len(b)
    cost = np.abs(np.asarray(a, float)[:, None] - np.asarray(b, float)[None, :])   # (n, m)
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    # anti-diagonal wavefront: cell (i, j) reads only diagonals i + j - 1 and i + j - 2, so one numpy step per
    # diagonal does the cell-by-cell recursion's very additions and minima (bit-identical, n + m - 1 steps)
    for d in range(2, n + m + 1):
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)                     # (cells,) rows of diagonal d
        j = d - i                                                           # (cells,) their columns
        acc[i, j] = cost[i - 1, j - 1] + np.minimum(np.minimum(acc[i - 1, j], acc[i, j - 1]), acc[i - 1, j - 1])
    return float(acc[n, 1:].min() if open_end else acc[n, m])


def open_end_dtw(partial: np.ndarray, full: np.ndarray) -> float:
    return dtw(partial, full, open_end=True)


def _znorm(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float)
    sd = x.std()
    return (x - x.mean()) / (sd if sd > 1e-8 else 1.0)


def dtw_matrix(curves: list[np.ndarray], normalise: bool = True) -> np.ndarray:
    """Symmetric pairwise DTW distances between (z-normalised) curves."""
    cs = [_znorm(c) if normalise else np.asarray(c, float) for c in curves]
    d = np.zeros((len(cs), len(cs)))
    for i in range(len(cs)):
        for j in range(i + 1, len(cs)):
            d[i, j] = d[j, i] = dtw(cs[i], cs[j])
    return d


def cluster_curves(curves: list[np.ndarray], k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Average-linkage clusters (labels 1..k) of curves under DTW, and the linkage matrix for a dendrogram."""
    if len(curves) < 2:
        return np.ones(len(curves), dtype=int), np.zeros((0, 4))
    link = linkage(squareform(dtw_matrix(curves), checks=False), method="average")
    return fcluster(link, t=min(k, len(curves)), criterion="maxclust"), link


def participation_ratio(x: np.ndarray) -> float:
    """Effective dimension (sum l)^2 / sum l^2 of the covariance eigenvalues of points x (N, D)."""
    x = np.asarray(x, float)
    lam = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False)), 0, None)
    return float(lam.sum() ** 2 / (lam ** 2).sum()) if lam.sum() > 0 else 0.0


def pooled_scale(first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (d,), sd (d,)) over runs of each run's step-0 point, first (R, d); an sd of 0 becomes 1.

    One affine map for all runs, so every trajectory lives in the same coordinates (hull membership does not
    depend on it; escape distances and volumes do)."""
    first = np.atleast_2d(np.asarray(first, float))
    sd = first.std(0)
    return first.mean(0), np.where(sd > 1e-8, sd, 1.0)


def enveloped_loo(trajs: list[np.ndarray], steps: list[np.ndarray], success: np.ndarray, at: tuple[int, ...],
                  window: int = 10, frac: float = 0.5) -> np.ndarray:
    """(R, len(at)) float: 1 when run i is enveloped at step t, 0 when not, NaN when its envelope cannot be built.

    Envelope of run i = convex hull of the pooled trajectories of the successful runs other than i (so a run
    never vouches for itself). Enveloped at t = at least `frac` of its points with step in (t - window, t]
    lie inside that hull: causal, only what run i has logged up to t."""
    success = np.asarray(success, bool)
    d = trajs[0].shape[1]
    out = np.full((len(trajs), len(at)), np.nan)
    for i, (z, st) in enumerate(zip(trajs, steps, strict=True)):
        ref = [trajs[j] for j in range(len(trajs)) if success[j] and j != i]
        if not ref or sum(len(r) for r in ref) <= d:
            continue
        inside = Envelope(np.concatenate(ref)).contains(z)
        for k, t in enumerate(at):
            sel = (st > t - window) & (st <= t)
            if sel.any():
                out[i, k] = float(inside[sel].mean() >= frac)
    return out


def _auroc(s: np.ndarray, y: np.ndarray) -> float:
    """Mann-Whitney AUROC, ties 1/2 (as tether.lm.intrinsic.prior_check.auroc, without its model imports)."""
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([s[y], s[~y]]))
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_auroc(scores: np.ndarray, labels: np.ndarray, n_boot: int = 2000, seed: int = 0,
                    level: float = 0.95) -> tuple[float, float, float, int]:
    """(AUROC, lower, upper, n) of scores for labels, with a percentile bootstrap over the n (score, label) pairs;
    pairs with a NaN score are dropped, resamples with one class only are skipped; NaNs when a class is empty."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    keep = ~np.isnan(s)
    s, y = s[keep], y[keep]
    point = _auroc(s, y)
    if point != point:
        return float("nan"), float("nan"), float("nan"), int(len(s))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(s), len(s))
        if 0 < y[idx].sum() < len(idx):
            boots.append(_auroc(s[idx], y[idx]))
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return float(point), float(lo), float(hi), int(len(s))
