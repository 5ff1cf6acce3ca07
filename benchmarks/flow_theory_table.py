"""Gaussian/linear-critic case of TRQAM's Theorem 1 (docs/results/trqam.md §1): the discretised AM fixed point vs
the closed form.

For pi_0 = N(0, s^2 I), Q = c^T a, lambda = 1, prints the path-KL estimator and the ODE mean shift at the exact
discrete fixed point delta_k = -g_k^2 a_k / (2 lambda) as ratios to s^2||c||^2/2 and s^2 c, for several K.
Then, for the exact velocity of a 6-mode ring mixture (std 0.1, unequal weights), the fraction of 10 seeds in
which the permutation MMD test (n = 1000 each, bandwidth 0.2, 200 permutations) rejects "memoryless SDE and
Euler ODE have the same terminal law" at alpha = 0.01, for several K.
Usage: python benchmarks/flow_theory_table.py
"""

from __future__ import annotations

import math

import torch

from tether.flow.sampler import euler_sample, memoryless_rollout
from tether.flow.toy.analytic import (
    GaussianMixtureVelocity,
    gaussian_am_fixed_point,
    mmd_permutation_test,
    tilted_gaussian_kl,
    tilted_gaussian_shift,
)


def main() -> None:
    c = torch.tensor([3.0, 1.5], dtype=torch.float64)
    print("| s | K | KL_hat / KL_exact | shift / (s^2 c) |")
    print("|---|---|---|---|")
    for std in (0.2, 0.5, 1.0):
        for K in (10, 20, 50, 100, 1000):
            kl, shift = gaussian_am_fixed_point(std, c, K)
            ratio = float(shift[0] / tilted_gaussian_shift(std, c, 1.0)[0])
            print(f"| {std} | {K} | {kl / tilted_gaussian_kl(std, c, 1.0):.3f} | {ratio:.3f} |")
    print("\n| K | SDE-vs-ODE rejections at alpha = 0.01 (10 seeds) |\n|---|---|")
    for K in (10, 20, 50, 100):
        print(f"| {K} | {mmd_rejections(K):.1f} |")


def mmd_rejections(K: int, seeds: int = 10, n: int = 1000) -> float:
    ang = torch.arange(6) * 2 * math.pi / 6
    v = GaussianMixtureVelocity(0.6 * torch.stack([ang.cos(), ang.sin()], 1), torch.full((6,), 0.1),
                                torch.tensor([1.0, 0.6, 0.3, 1.0, 0.5, 0.8]))
    obs, rejected = torch.zeros(1, 0), 0
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        ode = euler_sample(v, obs, torch.randn(n, 2, generator=g), K, clip=False)
        _, _, sde = memoryless_rollout(v, v, obs, torch.randn(n, 2, generator=g), K, generator=g)
        rejected += mmd_permutation_test(sde, ode, bandwidth=0.2, permutations=200, generator=g)[1] <= 0.01
    return rejected / seeds


if __name__ == "__main__":
    main()
