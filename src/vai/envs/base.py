"""What every vai pixel environment shares: action repeat, frame stacking, modes, masks, checks.

Subclasses supply the simulator (``_reset_simulation``, ``_simulate``) and the picture (``_draw``);
this class turns them into the Gymnasium API with uint8 (3 * FRAME_STACK, H, W) observations.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from vai.errors import UserError
from vai.tasks import FRAME_STACK, IMAGE_SIZE

ACTION_TOLERANCE = 1e-6
"""Actions this far outside the bounds (float rounding of a tanh policy) are clipped, not refused."""


class EnvironmentClosed(gym.error.ClosedEnvironmentError, RuntimeError):
    """``reset``, ``step`` or ``render`` of an environment after its ``close``."""


class PixelEnv(gym.Env):
    """Base class: a simulator seen through a camera, one test mode at a time.

    ``info`` carries ``mode`` and, when the environment was made with ``foreground_mask=True``,
    ``foreground_mask``: bool (FRAME_STACK, H, W), the agent's pixels of each stacked frame. It is for
    measuring attention only; nothing may train on it.

    With ``oracle=True`` the observations (and ``render``) are that true mask x frame: every pixel
    off the agent is black, whatever the mode. It is the oracle row of the tables (what a perfect
    attention adapter would give): a measurement of the method's upper bound, never a preset default.

    Actions outside the action space are refused (``ValueError``), never silently clipped; clip a
    scripted policy's output (Meta-World's expert policies exceed [-1, 1]) before stepping.

    ``close`` frees the GL context and the simulator; closing twice is harmless, and ``reset``,
    ``step`` or ``render`` after it raise :class:`EnvironmentClosed`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        action_space: gym.spaces.Box,
        action_repeat: int,
        max_episode_steps: int,
        foreground_mask: bool,
        render_mode: str | None,
        oracle: bool = False,
    ):
        if render_mode not in (None, "rgb_array"):
            raise UserError(f"render_mode must be None or 'rgb_array', not {render_mode!r}")
        self.render_mode = render_mode
        self.action_space = action_space
        self.observation_space = gym.spaces.Box(0, 255, (3 * FRAME_STACK, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        self.action_repeat = action_repeat
        self.max_episode_steps = max_episode_steps
        self.oracle = oracle
        """Observations are true mask x frame (see the class)."""
        self.want_foreground_mask = foreground_mask or oracle
        self.mode = "train"
        self._pending_mode: str | None = None
        self._frames: deque[np.ndarray] = deque(maxlen=FRAME_STACK)
        self._masks: deque[np.ndarray] = deque(maxlen=FRAME_STACK)
        self._last_rgb: np.ndarray | None = None
        self._steps = 0
        self._episode = 0
        self._needs_reset = True
        self._closed = False

    # -- hooks for subclasses -------------------------------------------------------------------
    def _reset_simulation(self, rng: np.random.Generator) -> dict[str, Any]:
        """Start a new episode from ``rng``; return extra info."""
        raise NotImplementedError

    def _simulate(self, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        """One simulator step (of ``action_repeat``); return reward and extra info."""
        raise NotImplementedError

    def _draw(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The current frame (H, W, 3) uint8 in the current mode and its foreground mask, if made."""
        raise NotImplementedError

    def _check_mode(self, mode: str) -> str:
        """Validate a mode name (raise UserError) and load what it needs; return it normalised."""
        raise NotImplementedError

    def _enter_mode(self, mode: str) -> None:
        """Switch the scene to ``mode`` (called at reset, between episodes)."""
        raise NotImplementedError

    def _start_episode(self, rng: np.random.Generator, episode: int) -> dict[str, Any]:
        """Per-episode visuals (colour setting, video) of the current mode; return extra info."""
        return {}

    def _after_step(self) -> None:
        """Advance per-step visuals (the background video)."""

    def _free(self) -> None:
        """Free the renderer and the simulator (called once, by ``close``)."""

    # -- Gymnasium API --------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        """Use ``mode`` from the next reset on (modes switch between episodes, never within one)."""
        self._pending_mode = self._check_mode(mode)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._check_open()
        super().reset(seed=seed)
        if options and "mode" in options:
            self.set_mode(options["mode"])
        if self._pending_mode is not None:
            self._enter_mode(self._pending_mode)
            self.mode, self._pending_mode = self._pending_mode, None
        if seed is not None:
            # A seeded reset restarts the episode count, so visuals that go in turn are reproduced.
            self._episode = seed
        episode_rng = np.random.default_rng(self.np_random.integers(2**63))
        info = self._reset_simulation(episode_rng)
        info.update(self._start_episode(episode_rng, self._episode))
        self._episode += 1
        self._steps = 0
        self._needs_reset = False
        frame, mask = self._observe()
        self._masks.clear()
        for _ in range(FRAME_STACK):
            self._frames.append(frame)
            if mask is not None:
                self._masks.append(mask)
        return self._observation(), self._info(info)

    def step(self, action):
        self._check_open()
        if self._needs_reset:
            raise gym.error.ResetNeeded("call reset() first: the episode has not started or has ended")
        action = self._check_action(action)
        reward = 0.0
        info: dict[str, Any] = {}
        for _ in range(self.action_repeat):
            step_reward, step_info = self._simulate(action)
            reward += step_reward
            info.update(step_info)
        self._steps += 1
        self._after_step()
        frame, mask = self._observe()
        self._frames.append(frame)
        if mask is not None:
            self._masks.append(mask)
        truncated = self._steps >= self.max_episode_steps
        terminated = False
        # The simulators would silently start over (dm_control) or raise (Meta-World) past the limit.
        self._needs_reset = truncated
        return self._observation(), reward, terminated, truncated, self._info(info)

    def render(self):
        """The latest frame as (H, W, 3) uint8, as the agent saw it (``render_mode='rgb_array'``)."""
        self._check_open()
        if self._last_rgb is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        return self._last_rgb.copy()

    def close(self) -> None:
        """Free the GL context and the simulator; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self._free()
        super().close()

    # -- helpers --------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise EnvironmentClosed("this environment is closed: make a new one with vai.make_env(...)")

    def _observe(self) -> tuple[np.ndarray, np.ndarray | None]:
        rgb, mask = self._draw()
        if self.oracle:
            rgb = rgb * mask[..., None].astype(np.uint8)
        self._last_rgb = rgb
        return np.ascontiguousarray(rgb.transpose(2, 0, 1)), mask

    def _observation(self) -> np.ndarray:
        return np.concatenate(self._frames, axis=0)

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        info["mode"] = self.mode
        if len(self._masks) == FRAME_STACK and self.want_foreground_mask:
            info["foreground_mask"] = np.stack(self._masks)
        return info

    def _check_action(self, action) -> np.ndarray:
        space = self.action_space
        action = np.asarray(action, dtype=space.dtype)
        if action.shape != space.shape:
            raise ValueError(f"action has shape {action.shape}; this environment takes {space.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError("action contains NaN or infinity")
        if np.any(action < space.low - ACTION_TOLERANCE) or np.any(action > space.high + ACTION_TOLERANCE):
            raise ValueError(
                f"action {np.round(action, 4).tolist()} is outside the bounds "
                f"[{space.low.min():g}, {space.high.max():g}]"
            )
        return np.clip(action, space.low, space.high)
