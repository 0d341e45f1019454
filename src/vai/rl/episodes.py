"""Finished training episodes on disk, so that ``--resume`` refills the replay buffer exactly.

Each episode is written once, when it ends, as ``replay/episode_NNNNNN.npz`` (uncompressed: frames
are written at environment speed and read back only on resume): the newest frame of every
observation (uint8 (T + 1, 3, H, W)), the actions (T, A), rewards (T,) and termination flags (T,).
Checkpoints are taken between episodes, so a checkpoint after E episodes pairs with files 0..E-1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vai.atomic import atomic_write
from vai.errors import UserError
from vai.rl.replay import ReplayBuffer


class EpisodeRecorder:
    """Collects one episode's steps and writes it when it ends."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._frames: list[np.ndarray] = []
        self._actions: list[np.ndarray] = []
        self._rewards: list[float] = []
        self._terminated: list[bool] = []

    def start(self, observation: np.ndarray) -> None:
        self._frames = [observation[-3:].copy()]
        self._actions, self._rewards, self._terminated = [], [], []

    def add(self, action: np.ndarray, reward: float, terminated: bool, next_observation: np.ndarray) -> None:
        self._frames.append(next_observation[-3:].copy())
        self._actions.append(np.asarray(action, dtype=np.float32))
        self._rewards.append(float(reward))
        self._terminated.append(bool(terminated))

    def finish(self, index: int) -> Path:
        arrays = {
            "frames": np.stack(self._frames),
            "actions": np.stack(self._actions),
            "rewards": np.asarray(self._rewards, dtype=np.float32),
            "terminated": np.asarray(self._terminated, dtype=bool),
        }

        def write(temporary: Path) -> None:
            with open(temporary, "wb") as handle:
                np.savez(handle, **arrays)

        return atomic_write(episode_path(self.directory, index), write)


def episode_path(directory: Path, index: int) -> Path:
    return directory / f"episode_{index:06d}.npz"


EPISODE_ARRAYS = ("frames", "actions", "rewards", "terminated")


def read_episode(path: Path) -> dict[str, np.ndarray]:
    """The arrays of one stored episode, or a UserError naming the file and what to do."""
    fix = "the replay buffer cannot be rebuilt, so the run cannot resume: train it again into another --out"
    if not path.is_file():
        raise UserError(f"{path} is missing: {fix}")
    try:
        with np.load(path) as data:
            arrays = {name: data[name] for name in EPISODE_ARRAYS}
    except Exception as error:  # a damaged archive fails in many ways (zip, header, sizes, a missing array)
        reason = (str(error).splitlines() or [type(error).__name__])[0][:120]
        raise UserError(f"{path} is damaged ({reason}): {fix}") from None
    steps = len(arrays["actions"])
    if len(arrays["frames"]) != steps + 1 or len(arrays["rewards"]) != steps or len(arrays["terminated"]) != steps:
        raise UserError(f"{path} is damaged (its arrays' lengths disagree): {fix}")
    return arrays


def refill(buffer: ReplayBuffer, directory: str | Path, episodes: int) -> int:
    """Add episodes 0..``episodes``-1 from ``directory`` to ``buffer`` (the newest ones that fit);
    returns the number of transitions added. A missing or damaged file is a UserError: without it the
    run cannot go on as it would have uninterrupted."""
    directory = Path(directory)
    # Only the newest episodes can still be in a full ring; skip reading the older ones.
    needed, first = 0, episodes
    while first > 0 and needed < buffer.capacity:
        first -= 1
        needed += len(read_episode(episode_path(directory, first))["frames"])
    added = 0
    for index in range(first, episodes):
        data = read_episode(episode_path(directory, index))
        frames, actions, rewards, terminated = data["frames"], data["actions"], data["rewards"], data["terminated"]
        buffer.start_episode(frames[0])
        for step in range(len(actions)):
            buffer.add(actions[step], float(rewards[step]), bool(terminated[step]), frames[step + 1])
        added += len(actions)
    return added
