"""Replay buffer: each frame stored once, stacks rebuilt by index, episode starts and ring wrap-around."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vai.errors import UserError
from vai.rl.episodes import EpisodeRecorder, refill
from vai.rl.replay import ReplayBuffer


def frame(value: int) -> np.ndarray:
    """A (3, 4, 4) frame whose pixels all hold ``value``, so a stack shows which frames it gathered."""
    return np.full((3, 4, 4), value, dtype=np.uint8)


def stack_values(stacks: torch.Tensor) -> list[list[int]]:
    """The frame values of each stack (B, 9, 4, 4), oldest first."""
    return stacks[:, ::3, 0, 0].tolist()


def fill(buffer: ReplayBuffer, episodes: list[list[int]]) -> None:
    """Episodes of frame values: the first is the reset frame, each later one a step's next frame."""
    for values in episodes:
        buffer.start_episode(frame(values[0]))
        for value in values[1:]:
            buffer.add(np.array([value / 100], np.float32), float(value), False, frame(value))


def all_transitions(buffer: ReplayBuffer) -> dict[float, tuple[list[int], list[int]]]:
    """Sample many times; reward (= next frame value) -> (obs stack values, next stack values)."""
    batch = buffer.sample(2000, torch.Generator().manual_seed(0))
    seen = {}
    for reward, obs, next_obs in zip(
        batch.reward[:, 0].tolist(), stack_values(batch.obs), stack_values(batch.next_obs)
    ):
        seen[reward] = (obs, next_obs)
    return seen


def test_stacks_repeat_the_first_frame_at_an_episode_start():
    buffer = ReplayBuffer(50, (3, 4, 4), action_dim=1)
    fill(buffer, [[10, 11, 12, 13, 14], [20, 21, 22]])
    assert len(buffer) == 6  # 4 + 2 transitions; reset frames are not transitions
    seen = all_transitions(buffer)
    assert seen[11.0] == ([10, 10, 10], [10, 10, 11])
    assert seen[12.0] == ([10, 10, 11], [10, 11, 12])
    assert seen[14.0] == ([11, 12, 13], [12, 13, 14])
    # The second episode never reaches back into the first.
    assert seen[21.0] == ([20, 20, 20], [20, 20, 21])
    assert seen[22.0] == ([20, 20, 21], [20, 21, 22])


def test_a_buffer_told_to_keep_fewer_transitions_samples_only_the_newest():
    # VAI keeps train_steps // 2 transitions: the ring may hold more frames, sampling sees the newest.
    buffer = ReplayBuffer(50, (3, 4, 4), action_dim=1, transitions=5)
    fill(buffer, [[10, 11, 12, 13, 14], [20, 21, 22, 23, 24]])  # 8 transitions
    assert len(buffer) == 5
    assert set(all_transitions(buffer)) == {14.0, 21.0, 22.0, 23.0, 24.0}
    assert all_transitions(buffer)[14.0] == ([11, 12, 13], [12, 13, 14])  # its stack is still whole
    with pytest.raises(ValueError, match="at least one transition"):
        ReplayBuffer(50, (3, 4, 4), action_dim=1, transitions=0)


def test_actions_and_flags_belong_to_their_transition():
    buffer = ReplayBuffer(20, (3, 4, 4), action_dim=1)
    buffer.start_episode(frame(1))
    buffer.add(np.array([0.5], np.float32), 1.0, False, frame(2))
    buffer.add(np.array([-0.5], np.float32), 2.0, True, frame(3))
    batch = buffer.sample(200, torch.Generator().manual_seed(1))
    for action, reward, not_done in zip(
        batch.action[:, 0].tolist(), batch.reward[:, 0].tolist(), batch.not_done[:, 0].tolist()
    ):
        assert (action, not_done) == ((0.5, 1.0) if reward == 1.0 else (-0.5, 0.0))


def test_wrapped_ring_samples_only_whole_transitions():
    buffer = ReplayBuffer(9, (3, 4, 4), action_dim=1)
    fill(buffer, [[10, 11, 12, 13, 14, 15], [20, 21, 22, 23, 24]])  # 11 frames into 9 slots
    # Frames 10 and 11 are overwritten: the transitions whose obs stack needs them (next frames 11-14)
    # are gone; the transition into 15 needs 12, 13, 14, 15 and is whole.
    seen = all_transitions(buffer)
    assert set(seen) == {15.0, 21.0, 22.0, 23.0, 24.0}
    assert len(buffer) == 5
    assert seen[15.0] == ([12, 13, 14], [13, 14, 15])
    assert seen[24.0] == ([21, 22, 23], [22, 23, 24])


def test_sampling_an_empty_buffer_is_an_error():
    buffer = ReplayBuffer(8, (3, 4, 4), action_dim=1)
    with pytest.raises(RuntimeError, match="no transitions"):
        buffer.sample(4)
    with pytest.raises(RuntimeError, match="start_episode"):
        buffer.add(np.zeros(1), 0.0, False, frame(1))


def test_observation_stacks_store_only_their_newest_frame():
    buffer = ReplayBuffer(10, (3, 4, 4), action_dim=1)
    observation = np.concatenate([frame(1), frame(2), frame(3)])
    buffer.start_episode(observation)
    buffer.add(np.zeros(1, np.float32), 0.0, False, np.concatenate([frame(2), frame(3), frame(4)]))
    assert buffer.frames[:2, 0, 0, 0].tolist() == [3, 4]


def test_episode_files_refill_an_identical_buffer(tmp_path):
    original = ReplayBuffer(30, (3, 4, 4), action_dim=1)
    recorder = EpisodeRecorder(tmp_path)
    for index, values in enumerate([[10, 11, 12, 13], [20, 21, 22]]):
        original.start_episode(frame(values[0]))
        recorder.start(frame(values[0]))
        for value in values[1:]:
            args = (np.array([value / 100], np.float32), float(value), value == 22, frame(value))
            original.add(*args)
            recorder.add(*args)
        recorder.finish(index)
    rebuilt = ReplayBuffer(30, (3, 4, 4), action_dim=1)
    assert refill(rebuilt, tmp_path, 2) == 5
    for name in ("frames", "position", "action", "reward", "not_done", "transition_slot"):
        assert torch.equal(getattr(original, name), getattr(rebuilt, name)), name
    with pytest.raises(UserError, match="episode_000002.npz is missing: the replay buffer cannot be rebuilt"):
        refill(ReplayBuffer(30, (3, 4, 4), action_dim=1), tmp_path, 3)


def test_nstep_returns_stop_at_episode_ends_terminals_and_the_newest_transition():
    buffer = ReplayBuffer(50, (3, 4, 4), action_dim=1)
    fill(buffer, [[10, 11, 12, 13, 14]])
    # Second episode: the step to 22 terminates it; a third episode follows and is still running.
    buffer.start_episode(frame(20))
    buffer.add(np.array([0.2], np.float32), 21.0, False, frame(21))
    buffer.add(np.array([0.2], np.float32), 22.0, True, frame(22))
    fill(buffer, [[30, 31, 32]])
    batch = buffer.sample(3000, torch.Generator().manual_seed(0), nstep=3)
    seen = {}
    for first, rewards, steps, not_done, boot, next_obs in zip(
        batch.reward[:, 0].tolist(),
        batch.rewards.tolist(),
        batch.bootstrap_steps[:, 0].tolist(),
        batch.bootstrap_not_done[:, 0].tolist(),
        stack_values(batch.bootstrap_obs),
        stack_values(batch.next_obs),
    ):
        seen[first] = (rewards, steps, not_done, boot, next_obs)
    assert len(seen) == 8
    assert seen[11.0] == ([11, 12, 13], 3, 1.0, [11, 12, 13], [10, 10, 11])  # three steps, then bootstrap
    assert seen[13.0] == ([13, 14, 0], 2, 1.0, [12, 13, 14], [11, 12, 13])  # the episode ends first
    assert seen[14.0] == ([14, 0, 0], 1, 1.0, [12, 13, 14], [12, 13, 14])
    assert seen[21.0] == ([21, 22, 0], 2, 0.0, [20, 21, 22], [20, 20, 21])  # terminal: no bootstrap
    assert seen[22.0] == ([22, 0, 0], 1, 0.0, [20, 21, 22], [20, 21, 22])
    assert seen[31.0] == ([31, 32, 0], 2, 1.0, [30, 31, 32], [30, 30, 31])  # the newest data ends first
    # One-step sampling is the n-step batch with n = 1.
    one = buffer.sample(16, torch.Generator().manual_seed(0))
    assert one.bootstrap_obs is one.next_obs and torch.equal(one.rewards, one.reward)
    assert torch.equal(one.bootstrap_steps, torch.ones_like(one.reward))
