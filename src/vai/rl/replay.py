"""Replay buffer that stores each frame once and rebuilds frame stacks by index.

An environment observation is a stack of F frames, but consecutive stacks share F - 1 of them, so the
buffer keeps single frames (uint8 (3, H, W)) in a ring together with each frame's position in its
episode; a stack is gathered from the ring, repeating an episode's first frame where the stack
reaches back past it (as the environment fills its stack at reset). A transition (obs, action,
reward, next_obs) is stored with the slot of next_obs's newest frame; obs ends one slot earlier.

A buffer may also keep fewer transitions than its ring holds (``transitions``): then only the newest
that many are sampled, as a ring of that many transitions would keep them (VAI keeps
``train_steps // 2``).

Memory: one 100x100 RGB frame is 30 kB, so VAI's 250k transitions take 7.5 GB, plus one reset frame
per episode.

On a GPU the ring can live on the device (``device="cuda"``): sampling, stacking, cropping and
augmentation then never leave it. Sampling needs no device-to-host copy: the host keeps the count of
transitions still whole (none of their frames overwritten) and draws among the newest ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Batch:
    """A sampled batch on the buffer's device; observations uint8 (B, 3F, H, W)."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    not_done: torch.Tensor
    """0 where the episode terminated at this transition (not at a time limit)."""
    next_obs: torch.Tensor
    rewards: torch.Tensor
    """(B, n) rewards of the n-step return from this transition on, 0 past its last step."""
    bootstrap_obs: torch.Tensor
    """Observation the n-step return bootstraps from (``next_obs`` itself when n = 1)."""
    bootstrap_not_done: torch.Tensor
    """0 where the return's last step terminated the episode."""
    bootstrap_steps: torch.Tensor
    """(B, 1) steps m <= n in the return: fewer where the episode (or the recorded data) ends first."""


class ReplayBuffer:
    """Ring of ``capacity`` frames of shape ``frame_shape``, sampling at most the newest
    ``transitions`` transitions (default: as many as the ring holds whole)."""

    def __init__(
        self,
        capacity: int,
        frame_shape: tuple[int, int, int],
        action_dim: int,
        stack: int = 3,
        device: str | torch.device = "cpu",
        seed: int = 0,
        transitions: int | None = None,
    ):
        if capacity < stack + 2:
            raise ValueError(f"capacity {capacity} is too small for stacks of {stack}")
        if transitions is not None and transitions < 1:
            raise ValueError(f"a buffer must keep at least one transition, not {transitions}")
        self.capacity, self.stack, self.device = capacity, stack, torch.device(device)
        self.max_transitions = transitions or capacity
        self.frames = torch.zeros((capacity, *frame_shape), dtype=torch.uint8, device=self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        """Draws of :meth:`sample` (unless it is given another): seeded, so a run's seed fixes them;
        its state goes into checkpoints, so a resumed run draws what the whole run would have."""
        self.position = torch.zeros(capacity, dtype=torch.long, device=self.device)
        """Index of each slot's frame within its episode (0 = the reset frame)."""
        self.action = torch.zeros((capacity, action_dim), dtype=torch.float32, device=self.device)
        self.reward = torch.zeros((capacity, 1), dtype=torch.float32, device=self.device)
        self.not_done = torch.ones((capacity, 1), dtype=torch.float32, device=self.device)
        self.transition_slot = torch.zeros(capacity, dtype=torch.long, device=self.device)
        """Slot of each transition's next frame, by transition number modulo capacity."""
        # Host-side bookkeeping in global counts (never wrapped): frames written so far and, for every
        # transition in order, the global number of the oldest frame it needs.
        self.frames_written = 0
        self._episode_position = -1
        self._transition_oldest = np.zeros(capacity, dtype=np.int64)
        self.transitions_written = 0
        self._first_whole = 0
        """Global number of the oldest transition whose frames are all still in the ring."""

    def __len__(self) -> int:
        """Transitions that can be sampled."""
        return self.transitions_written - self._first_whole

    def _write_frame(self, frame: np.ndarray | torch.Tensor) -> int:
        slot = self.frames_written % self.capacity
        self.frames[slot] = torch.as_tensor(frame).to(self.device)
        self.position[slot] = self._episode_position
        self.frames_written += 1
        # Transitions needing the frame just overwritten are no longer whole.
        overwritten = self.frames_written - 1 - self.capacity
        while self._first_whole < self.transitions_written and (
            self._transition_oldest[self._first_whole % self.capacity] <= overwritten
        ):
            self._first_whole += 1
        return slot

    def start_episode(self, observation: np.ndarray) -> None:
        """The reset observation (3F, H, W): its newest frame starts a new episode."""
        self._episode_position = 0
        self._write_frame(self._newest(observation))

    def add(self, action: np.ndarray, reward: float, terminated: bool, next_observation: np.ndarray) -> None:
        """One step of the current episode: the action taken and what followed."""
        if self._episode_position < 0:
            raise RuntimeError("call start_episode(observation) before add()")
        self._episode_position += 1
        slot = self._write_frame(self._newest(next_observation))
        index = self.transitions_written % self.capacity
        self.action[slot] = torch.as_tensor(action, dtype=torch.float32).to(self.device)
        self.reward[slot] = float(reward)
        self.not_done[slot] = 0.0 if terminated else 1.0
        newest = self.frames_written - 1
        self.transition_slot[index] = slot
        self._transition_oldest[index] = newest - min(self._episode_position, self.stack)
        self.transitions_written += 1
        self._first_whole = max(self._first_whole, self.transitions_written - self.max_transitions)

    def _newest(self, observation: np.ndarray) -> np.ndarray:
        return observation[-3:] if observation.shape[0] == 3 * self.stack else observation

    def sample(self, batch_size: int, generator: torch.Generator | None = None, nstep: int = 1) -> Batch:
        """``batch_size`` transitions drawn uniformly (with replacement) among the whole ones, each
        with the following ``nstep`` - 1 transitions of its episode for an n-step return (Sutton and
        Barto, Ch. 7; DrQ-v2 uses n = 3): the return stops early at a terminal step, at the
        episode's end and at the newest transition, and bootstraps from where it stops."""
        if len(self) == 0:
            raise RuntimeError("the replay buffer holds no transitions yet")
        draw = torch.randint(
            self._first_whole,
            self.transitions_written,
            (batch_size,),
            generator=self.generator if generator is None else generator,
            device=self.device,
        )
        next_slot = self.transition_slot[draw % self.capacity]
        position = self.position[next_slot]
        next_obs = self._stacks(next_slot, position)
        obs = self._stacks((next_slot - 1) % self.capacity, position - 1)
        reward, not_done = self.reward[next_slot], self.not_done[next_slot]
        batch = Batch(
            obs, self.action[next_slot], reward, not_done, next_obs, reward, next_obs, not_done, torch.ones_like(reward)
        )
        if nstep == 1:
            return batch
        rewards, last_slot, steps = [reward], next_slot, torch.ones_like(reward)
        going = not_done[:, 0] > 0  # the return may still take the next step
        for ahead in range(1, nstep):
            index = draw + ahead
            slot = self.transition_slot[index.clamp(max=self.transitions_written - 1) % self.capacity]
            # Recorded, and the same episode's next step (positions count on without a reset).
            going = going & (index < self.transitions_written) & (self.position[slot] == position + ahead)
            taken = going[:, None]
            rewards.append(torch.where(taken, self.reward[slot], 0.0))
            last_slot = torch.where(going, slot, last_slot)
            steps = steps + taken
            going = going & (self.not_done[slot][:, 0] > 0)
        batch.rewards = torch.cat(rewards, dim=1)
        batch.bootstrap_obs = self._stacks(last_slot, self.position[last_slot])
        batch.bootstrap_not_done = self.not_done[last_slot]
        batch.bootstrap_steps = steps
        return batch

    def _stacks(self, slot: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """Stacks (B, 3F, H, W) ending at ``slot`` (at ``position`` in its episode), oldest frame
        first; where the stack reaches back past the episode's start, its first frame repeats."""
        back = torch.arange(self.stack - 1, -1, -1, device=self.device)
        slots = (slot[:, None] - torch.minimum(back[None, :], position[:, None])) % self.capacity
        # One gather of the B x F frames, (B F, 3, H, W), read as (B, 3F, H, W).
        return self.frames.index_select(0, slots.flatten()).view(len(slot), -1, *self.frames.shape[-2:])
