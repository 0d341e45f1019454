"""The random-policy recorder that collection, the mask measurement and the gallery share."""

from __future__ import annotations

import numpy as np
from gymnasium.spaces import Box

from vai.envs.random_policy import random_episode, uniform_action


def test_uniform_action_draws_as_the_action_space_samples():
    space = Box(-1.0, 1.0, (4,), np.float32)
    space.seed(3)
    rng = np.random.default_rng(3)
    for _ in range(50):
        action = uniform_action(space, rng)
        assert action.dtype == np.float32 and np.array_equal(action, space.sample())


def test_an_episode_is_its_reset_then_seeded_random_steps_to_its_end(env_factory):
    env = env_factory("cartpole_balance", "train", foreground_mask=True)
    moments = list(random_episode(env, np.random.default_rng(0), seed=4))
    first, last = moments[0], moments[-1]
    assert first.step == 0 and first.action is None and first.reward is None and not first.done
    assert [moment.step for moment in moments] == list(range(env.unwrapped.max_episode_steps + 1))
    assert last.done and not any(moment.done for moment in moments[:-1])
    assert all("foreground_mask" in moment.info for moment in moments)
    # The same seeds replay the same episode, here cut after 5 steps.
    again = list(random_episode(env, np.random.default_rng(0), seed=4, steps=5))
    assert len(again) == 6 and not again[-1].done
    for one, other in zip(moments, again):
        assert np.array_equal(one.observation, other.observation)
        assert (one.action is None and other.action is None) or np.array_equal(one.action, other.action)
