"""Figures of the critic-error toy: sampled actions over the reward landscape, and KL / reward sweeps.

Owns matplotlib (Agg) only; the numbers come from `toy.run_toy_dict` rows. Figures are kept small
(dpi 80, subsampled scatter) so each PNG stays well under 150 KB.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from tether.flow.toy.toy import critic_hat, modes, true_reward  # noqa: E402


def plot_samples(panels: list[tuple[str, torch.Tensor]], *, critic_error: float, q_scale: float, out_png: Path) -> Path:
    """One panel per method: true reward (filled), wrong critic (contours), 1500 sampled actions (dots)."""
    grid = torch.linspace(-1, 1, 121)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    pts = torch.stack([xx, yy], -1)
    r = true_reward(pts).numpy()
    q = critic_hat(pts, critic_error=critic_error, q_scale=q_scale).numpy()
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8), squeeze=False)
    for ax, (title, a) in zip(axes[0], panels, strict=True):
        ax.contourf(xx.numpy(), yy.numpy(), r, levels=12, cmap="Greens")
        ax.contour(xx.numpy(), yy.numpy(), q, levels=8, colors="tab:red", linewidths=0.5, alpha=0.6)
        m = modes().numpy()
        ax.scatter(m[:, 0], m[:, 1], marker="x", c="k", s=20)
        s = a[:1500].numpy()
        ax.scatter(s[:, 0], s[:, 1], s=1.5, c="tab:blue", alpha=0.35)
        ax.set(xlim=(-1, 1), ylim=(-1, 1), xticks=[], yticks=[], title=title)
        ax.title.set_fontsize(8)
    fig.suptitle(f"green: true reward; red: critic (error c={critic_error:g}, Q x {q_scale:g}); blue: actions",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png


def _mean_sd(rows: list[dict], x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    groups: dict[float, list[float]] = defaultdict(list)
    for row in rows:
        if row.get(y_key) is not None:
            groups[row[x_key]].append(row[y_key])
    xs = np.array(sorted(groups))
    return xs, np.array([np.mean(groups[x]) for x in xs]), np.array([np.std(groups[x]) for x in xs])


def plot_sweep(rows: list[dict], out_png: Path, *, title: str = "") -> Path:
    """KL, true reward and on-support fraction against beta (QAM) and eps (TRQAM); mean +- sd over seeds."""
    qam = [r for r in rows if r["method"] == "qam"]
    trq = [r for r in rows if r["method"] == "trqam"]
    fig, axes = plt.subplots(2, 2, figsize=(7, 5.2))
    for col, (sub, key, label) in enumerate(((qam, "beta", "QAM beta"), (trq, "kl_budget", "TRQAM eps"))):
        if not sub:
            continue
        for y_key, style in (("realised_kl", "o-"), ("realised_kl_tail_mean", "s--")):
            x, m, sd = _mean_sd(sub, key, y_key)
            axes[0, col].errorbar(x, m, sd, fmt=style, ms=3, capsize=2, label=y_key)
        if col == 1:
            x = np.array(sorted({r[key] for r in sub}))
            axes[0, 1].plot(x, x, "k:", lw=1, label="KL = eps")
            axes[0, 1].fill_between(x, 0.7 * x, 1.3 * x, color="k", alpha=0.08, label="+-30%")
        axes[0, col].set(xscale="log", yscale="log", xlabel=label, ylabel="path KL (nats)")
        axes[0, col].legend(fontsize=6)
        for y_key, c in (("true_reward", "tab:green"), ("on_support", "tab:blue")):
            x, m, sd = _mean_sd(sub, key, y_key)
            axes[1, col].errorbar(x, m, sd, fmt="o-", ms=3, capsize=2, color=c, label=y_key)
        axes[1, col].set(xscale="log", xlabel=label, ylim=(0, 1))
        axes[1, col].legend(fontsize=6)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png
