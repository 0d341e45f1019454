"""A uniform random policy playing one episode, moment by moment: what collection (VAI step 0), the
mask measurement and the gallery record from.

Each action is drawn uniformly within the action space's bounds from the caller's generator, so an
episode is reproduced by its reset seed and the generator's seed. The caller keeps what it needs of
each moment (the newest frame, its ground-truth mask, the action and reward) and may stop early.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class Moment:
    """The environment after its reset or after one random step."""

    step: int
    """Agent steps taken in the episode: 0 for the reset."""
    observation: np.ndarray
    info: dict[str, Any]
    action: np.ndarray | None
    """The action that led here; None for the reset."""
    reward: float | None
    """The step's reward; None for the reset."""
    done: bool
    """Whether the episode ended here (terminated or truncated)."""


def uniform_action(space: gym.spaces.Box, rng: np.random.Generator) -> np.ndarray:
    """One action drawn uniformly within ``space``'s bounds, float32 (as ``space.sample()`` draws it
    from a generator of the same seed)."""
    return rng.uniform(space.low, space.high).astype(np.float32)


def random_episode(
    env: gym.Env, rng: np.random.Generator, seed: int | None = None, steps: int | None = None
) -> Iterator[Moment]:
    """The reset (with ``seed``), then uniform random steps drawn from ``rng`` until the episode ends
    or ``steps`` steps are taken."""
    observation, info = env.reset(seed=seed)
    yield Moment(0, observation, info, None, None, False)
    step = 0
    while steps is None or step < steps:
        action = uniform_action(env.action_space, rng)
        observation, reward, terminated, truncated, info = env.step(action)
        step += 1
        done = bool(terminated or truncated)
        yield Moment(step, observation, info, action, reward, done)
        if done:
            return
