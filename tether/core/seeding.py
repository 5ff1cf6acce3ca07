"""Seeding: one call for the global RNGs, and independent per-purpose torch generators.

Per-purpose generators (`generator(seed, "rollout")`, `generator(seed, "minibatch")`) keep streams
independent, so adding a random draw in one phase does not shift the samples of another.
"""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "generator", "derive_seed", "one_thread"]


def derive_seed(seed: int, purpose: str) -> int:
    """A stable 63-bit seed for (seed, purpose); independent of PYTHONHASHSEED."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def generator(seed: int, purpose: str) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, purpose))
    return g


def one_thread() -> None:
    """One torch thread unless OMP_NUM_THREADS says otherwise: two OpenMP threads on a busy 2-core machine run
    5-60x slower than one (measured with PyTorch 2.13 on CPU); parallelise with processes instead."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
