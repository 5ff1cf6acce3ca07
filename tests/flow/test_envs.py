"""PointNav and its scripted dataset."""

import torch

from tether.flow.envs import PointNav, point_nav_dataset, scripted_action


def test_noiseless_controller_reaches_the_goal():
    env, g = PointNav(seed=0), torch.Generator().manual_seed(0)
    obs, _ = env.reset()
    for _ in range(PointNav.max_steps):
        obs, r, term, trunc, info = env.step(scripted_action(obs, 0.0, g))
        if term or trunc:
            break
    assert term and info["success"] and r == 0.0


def test_dataset_episode_structure():
    buf = point_nav_dataset(5, seed=1)
    assert buf.ends[: buf.size].sum() == 5
    assert (buf.terminals[: buf.size] <= buf.ends[: buf.size]).all()
    assert buf.actions[: buf.size].abs().max() <= 1
