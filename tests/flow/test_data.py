"""Chunk sampling across episode ends: rewards, masks, validity and next states."""

import pytest
import torch

from tether.flow.data import ReplayBuffer


def two_episodes() -> ReplayBuffer:
    # episode A: steps 0..2 ends with a terminal at 2; episode B: steps 3..5 ends with a time-out at 5
    buf = ReplayBuffer(1, 1, 10)
    obs = torch.arange(6.0)[:, None]
    term = torch.tensor([0, 0, 1, 0, 0, 0])
    end = torch.tensor([0, 0, 1, 0, 0, 1])
    buf.add(obs, 10 + obs, torch.ones(6), obs + 0.5, term, end)
    return buf


def chunk_at(buf, start, horizon, discount=0.5):
    return buf.chunks(torch.tensor([start]), horizon, discount)


def test_uniform_sampling_shapes():
    b = two_episodes().sample(8, 2, 0.9, torch.Generator().manual_seed(0))
    assert b.obs.shape == (8, 1) and b.actions.shape == (8, 2) and b.rewards.shape == (8,)


def test_chunk_inside_an_episode():
    b = chunk_at(two_episodes(), 3, 3)
    assert torch.equal(b.actions, torch.tensor([[13.0, 14.0, 15.0]]))
    assert torch.allclose(b.rewards, torch.tensor([1 + 0.5 + 0.25]))
    assert b.masks.item() == 1 and b.valid.item() == 1 and b.next_obs.item() == 5.5


def test_chunk_crossing_a_terminal_is_masked_and_invalid():
    b = chunk_at(two_episodes(), 1, 3)
    assert torch.equal(b.actions, torch.tensor([[11.0, 12.0, 12.0]]))  # padded with the last valid action
    assert torch.allclose(b.rewards, torch.tensor([1 + 0.5]))
    assert b.masks.item() == 0 and b.valid.item() == 0 and b.next_obs.item() == 2.5


def test_chunk_ending_exactly_at_terminal_is_valid():
    b = chunk_at(two_episodes(), 0, 3)
    assert b.valid.item() == 1 and b.masks.item() == 0


def test_buffer_refuses_to_overflow():
    buf = two_episodes()
    try:
        buf.add(torch.zeros(5, 1), torch.zeros(5, 1), torch.zeros(5), torch.zeros(5, 1), torch.zeros(5), torch.zeros(5))
    except ValueError as e:
        assert "full" in str(e)
    else:
        raise AssertionError("expected ValueError")


def test_sampled_chunk_starts_leave_out_the_last_h_minus_1_transitions():
    """Starts are drawn from [0, size - H + 1), as the official code draws them: with H = 4 on 6 transitions
    only 0, 1 and 2 may start a chunk, and every one of them does."""
    starts = two_episodes().sample(2000, 4, 0.9, torch.Generator().manual_seed(0)).obs.squeeze(1)
    assert set(starts.tolist()) == {0.0, 1.0, 2.0}


def test_sampling_needs_at_least_one_full_chunk():
    with pytest.raises(ValueError, match="fewer than the chunk horizon 7"):
        two_episodes().sample(4, 7, 0.9, torch.Generator().manual_seed(0))
