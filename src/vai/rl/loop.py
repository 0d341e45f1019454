"""The training loop: act, store, update, evaluate, checkpoint; read top to bottom like SAC's box.

The loop receives its environment, agent, replay buffer and logger from outside (``vai.rl.stages``
builds them), so each can be replaced and tested alone. Hot path: one ``act`` and
``updates_per_step`` updates per agent step, the environment's step running meanwhile on its own
thread when it is an ``EnvThread``, and no device-to-host copy besides the action; the
policy acts on the stack of stored frames the loop keeps (for ``vai`` without ``adapter_per_crop``
already adapted, so the adapter runs once per environment step; with it raw, the adapter masking the
stack's centre crop when acting and each sampled crop when updating); update metrics stay on the
device and are averaged once per episode. Episodes, evaluations and checkpoints happen between episodes.

Every count is in agent steps (``preset.train_steps``, ``eval_every``, ``checkpoint_every``); the
logs also give ``frames`` = steps x action repeat for plots. As VAI's ``train.py``: random actions
for ``init_steps`` steps, then at step ``init_steps`` a burst of ``init_steps`` updates (with
``init_burst``), then ``updates_per_step`` per step; while training, the agent's acting augments as
its updates do (``adapt_aug_when_acting``), evaluations during training included.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vai.errors import TrainingDiverged
from vai.presets.rl import RLPreset
from vai.rl.checkpoint import save_checkpoint
from vai.rl.envthread import start_step
from vai.rl.episodes import EpisodeRecorder
from vai.rl.logger import Progress, RunLogger
from vai.rl.observe import StoredStack
from vai.rl.replay import ReplayBuffer
from vai.run_dir import TRAIN_LOG, AgentDir, eval_log


@dataclass
class LoopState:
    """The loop's counters and random state; saved in every checkpoint."""

    step: int = 0
    """Agent steps taken (simulator frames = step x action repeat)."""
    episode: int = 0
    """Episodes finished."""
    next_eval: int = 0
    """Agent step at or after which the next evaluation runs."""
    next_checkpoint: int = 0
    action_rng: dict[str, Any] = field(default_factory=dict)
    """State of the generator of the random actions of the first steps."""
    replay_rng: torch.Tensor | None = None
    """State of the replay buffer's generator (None in checkpoints older than it)."""


def update_numbers(step: int, preset: RLPreset) -> list[int]:
    """Numbers of the updates made at agent step ``step``, which the actor's, target's and heads'
    schedules count: none in the random phase; at step ``init_steps`` with ``init_burst``, VAI's burst
    of ``init_steps`` updates all numbered as that step (VAI calls each with the same ``step``);
    otherwise ``updates_per_step`` consecutive numbers."""
    if step < preset.init_steps:
        return []
    first = step * preset.updates_per_step
    if preset.init_burst and step == preset.init_steps:
        return [first] * preset.init_steps
    return list(range(first, first + preset.updates_per_step))


def episode_seed(seed: int, episode: int) -> int:
    """Environment seed of training episode ``episode`` of run ``seed`` (reproducible across resumes)."""
    return seed * 100_003 + episode


@dataclass
class Trainer:
    env: Any
    agent: Any
    buffer: ReplayBuffer
    logger: RunLogger
    preset: RLPreset
    action_repeat: int
    directory: Path
    """The agent's directory (:class:`vai.run_dir.AgentDir`): checkpoints and the replay's episodes."""
    task: str
    seed: int
    evaluate: Callable[[Any], dict[str, dict[str, float]]] | None = None
    """``evaluate(agent) -> {mode: {"return": mean, "return_std": std, ...}}`` between episodes."""
    progress: bool | None = None

    @property
    def total_steps(self) -> int:
        return self.preset.train_steps

    @property
    def agent_dir(self) -> AgentDir:
        return AgentDir(Path(self.directory))

    def train(self, state: LoopState | None = None) -> LoopState:
        preset = self.preset
        state = state or LoopState(next_eval=preset.eval_every, next_checkpoint=preset.checkpoint_every)
        action_rng = np.random.default_rng(self.seed)
        if state.action_rng:
            action_rng.bit_generator.state = state.action_rng
        if state.replay_rng is not None:
            self.buffer.generator.set_state(state.replay_rng)
        recorder = EpisodeRecorder(self.agent_dir.replay)
        progress = Progress(self.total_steps, initial=state.step, enabled=self.progress)
        space = self.env.action_space
        self.agent.augmenting = preset.adapt_aug_when_acting  # VAI's agent augments in every pass
        if state.step == 0:
            self._evaluate(state)  # the untrained policy: the curve's starting point
        while state.step < self.total_steps:
            obs, _ = self.env.reset(seed=episode_seed(self.seed, state.episode))
            stack = StoredStack(self.agent.observe, obs)  # frames as replay keeps them
            self.buffer.start_episode(stack.newest)
            recorder.start(stack.newest)
            episode_return, length, started = 0.0, 0, time.perf_counter()
            sums: dict[str, torch.Tensor] = {}
            counts: dict[str, int] = {}
            done = False
            while not done:
                if state.step < preset.init_steps:
                    action = action_rng.uniform(space.low, space.high).astype(np.float32)
                else:
                    action = self.agent.act_stored(stack.frames, sample=True, generator=self.agent.generator)
                    if not np.all(np.isfinite(action)):
                        self._diverged(state, ["the action"])
                # An EnvThread steps while the agent updates: the update samples only stored
                # transitions, so neither waits for the other's result.
                # The newest frame's stored form (for vai the frozen adapter's pass) is made right
                # after the step, on the environment's thread where it has one.
                finish_step = start_step(self.env, action, then=self.agent.observe.store)
                if len(self.buffer) > 0:
                    for number in update_numbers(state.step, preset):
                        metrics = self.agent.update(self.buffer.sample(preset.batch_size, nstep=preset.nstep), number)
                        for name, value in metrics.items():  # device tensors: summed, read once per episode
                            sums[name] = sums[name] + value if name in sums else value
                            counts[name] = counts.get(name, 0) + 1
                (next_obs, reward, terminated, truncated, _), stored = finish_step()
                stack.append(stored)
                self.buffer.add(action, reward, terminated, stored)
                recorder.add(action, reward, terminated, stored)
                episode_return += float(reward)
                length += 1
                state.step += 1
                done = terminated or truncated or state.step >= self.total_steps
                progress.update(state.step, episode=state.episode, last_return=round(episode_return, 1))
            recorder.finish(state.episode)
            state.episode += 1
            row = {
                "frames": state.step * self.action_repeat,
                "episode": state.episode,
                "return": episode_return,
                "length": length,
                "fps": length * self.action_repeat / (time.perf_counter() - started),
            }
            row.update({name: float(total) / counts[name] for name, total in sums.items()})
            self._guard(row, state)
            self.logger.log(TRAIN_LOG, state.step, row)
            if state.step >= state.next_eval or state.step >= self.total_steps:
                self._evaluate(state)
                state.next_eval = self._after(state.step, state.next_eval, preset.eval_every)
            if state.step >= state.next_checkpoint or state.step >= self.total_steps:
                state.next_checkpoint = self._after(state.step, state.next_checkpoint, preset.checkpoint_every)
                self.checkpoint(state, action_rng)
        progress.close()
        self.agent.augmenting = False  # the trained agent acts as 'vai eval' loads it
        shutil.rmtree(self.agent_dir.replay, ignore_errors=True)  # only a resume needs it
        return state

    @staticmethod
    def _after(step: int, due: int, every: int) -> int:
        """The next multiple of ``every`` agent steps after ``step`` (episodes may span several)."""
        while due <= step:
            due += every
        return due

    def _evaluate(self, state: LoopState) -> None:
        if self.evaluate is None:
            return
        for mode, scores in self.evaluate(self.agent).items():
            self.logger.log(eval_log(mode), state.step, {"frames": state.step * self.action_repeat, **scores})

    def checkpoint(self, state: LoopState, action_rng: np.random.Generator) -> Path:
        state.action_rng = action_rng.bit_generator.state
        state.replay_rng = self.buffer.generator.get_state()
        return save_checkpoint(self.agent, self.agent_dir.checkpoint, self.task, asdict(state))

    def _guard(self, row: dict[str, float], state: LoopState) -> None:
        """Stop on a NaN or infinite loss or return (averaged per episode, so read once per episode)."""
        bad = [name for name, value in row.items() if isinstance(value, float) and not math.isfinite(value)]
        if bad:
            self._diverged(state, bad)

    def _diverged(self, state: LoopState, bad: list[str]) -> None:
        path = save_checkpoint(self.agent, self.agent_dir.diverged, self.task, asdict(state))
        last = self.agent_dir.checkpoint
        raise TrainingDiverged(
            f"training diverged at agent step {state.step}: {', '.join(bad)} not finite; the state is in {path}"
            + (f", the last good checkpoint in {last}" if last.is_file() else "")
            + " (try lower learning rates with --set)"
        )
