"""DeepMind Control Suite tasks as pixel environments with DMControl-GB test modes."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from dm_control import suite

from vai.data.video import VideoCache
from vai.envs import datasets
from vai.envs.base import PixelEnv
from vai.envs.distractions import (
    ColorRandomizer,
    VideoBackground,
    generate_colors,
    green_screen,
    load_colors,
)
from vai.envs.render import ForegroundIndex, SceneRenderer, moving_bodies
from vai.tasks import COLOR_MODES, IMAGE_SIZE, DMCTask, check_compositing, check_mode


class DMCEnv(PixelEnv):
    """A dm_control suite task rendered at 100x100 from camera 0, in one of the DMControl-GB modes.

    Modes: ``train``, ``color_easy``, ``color_hard`` (one of 100 colour settings per episode),
    ``video_easy`` (sky replaced by video), ``video_hard`` (everything but the agent replaced),
    ``videoN`` (``video_easy`` with video N only). ``compositing`` says how the video modes put the
    video behind the agent: by segmentation, or by DMControl-GB's green screen (see
    :mod:`vai.envs.distractions`).
    """

    def __init__(
        self,
        task: DMCTask,
        mode: str = "train",
        data_dir: Path | None = None,
        foreground_mask: bool = False,
        render_mode: str | None = None,
        video_cache: VideoCache | None = None,
        oracle: bool = False,
        compositing: str = "segmentation",
    ):
        self.task = task
        self.compositing = check_compositing(compositing)
        self._data_dir = data_dir
        self._video_cache = video_cache if video_cache is not None else VideoCache()
        self._dm_env = suite.load(task.domain, task.task, task_kwargs={"random": 0})
        spec = self._dm_env.action_spec()
        super().__init__(
            action_space=gym.spaces.Box(spec.minimum.astype(np.float32), spec.maximum.astype(np.float32)),
            action_repeat=task.action_repeat,
            max_episode_steps=task.episode_sim_steps // task.action_repeat,
            foreground_mask=foreground_mask,
            render_mode=render_mode,
            oracle=oracle,
        )
        physics = self._dm_env.physics
        self._model, self._data = physics.model.ptr, physics.data.ptr
        self._renderer = SceneRenderer(self._model, IMAGE_SIZE, task.camera_id)
        self._foreground = ForegroundIndex.from_bodies(
            self._model,
            moving_bodies(self._model),
            extra_geoms=task.extra_foreground_geoms,
            extra_sites=task.extra_foreground_sites,
        )
        self._colors: ColorRandomizer | None = None
        self._video: VideoBackground | None = None
        self._color_index = -1
        self.set_mode(mode)

    @property
    def physics(self):
        """The dm_control ``Physics`` (state, for tests and analysis)."""
        return self._dm_env.physics

    @property
    def video_count(self) -> int:
        """Videos the mode of the next episode goes through (0 outside video modes); a seeded
        ``reset(seed=s)`` plays video ``s mod video_count``. Known before the first reset, so that a
        caller can choose the seed of the video it wants."""
        return len(datasets.mode_videos(self._pending_mode or self.mode, self._data_dir))

    def _check_mode(self, mode: str) -> str:
        check_mode(self.task, mode)
        datasets.check_mode_data(mode, self._data_dir)
        return mode

    def _enter_mode(self, mode: str) -> None:
        if self._colors is not None:
            self._colors.restore()
        self._video = None
        if mode in COLOR_MODES:
            path = datasets.colors_file(mode, self._data_dir)
            if path is None:
                warnings.warn(
                    f"DMControl-GB colour set for {mode} not found; using vai's generator "
                    f"(fetch the real set with 'vai data fetch colors')",
                    stacklevel=2,
                )
                self._texture_painter().settings = generate_colors(mode)
            else:
                self._texture_painter().settings = load_colors(path)
        elif paths := datasets.mode_videos(mode, self._data_dir):
            hard = mode == "video_hard"  # video_hard replaces all behind the agent
            self._video = VideoBackground(
                paths, "background" if hard else "sky", IMAGE_SIZE, self._video_cache, self.compositing
            )
            if self.compositing == "greenscreen":
                self._texture_painter().paint(green_screen(floor=hard))

    def _texture_painter(self) -> ColorRandomizer:
        """The scene's colour writer (colour settings, the green screen), made on first use."""
        if self._colors is None:
            self._colors = ColorRandomizer(self._model, self._renderer, [])
        return self._colors

    def _reset_simulation(self, rng: np.random.Generator) -> dict[str, Any]:
        # dm_control draws the initial state from the task's RandomState: seed it from our stream.
        self._dm_env.task._random = np.random.RandomState(rng.integers(2**31))
        self._dm_env.reset()
        return {}

    def _start_episode(self, rng: np.random.Generator, episode: int) -> dict[str, Any]:
        info: dict[str, Any] = {}
        if self.mode in COLOR_MODES:
            index = int(rng.integers(len(self._colors.settings)))
            self._colors.apply(index)
            self._color_index = index
        if self._video is not None:
            self._video.start(episode)
        return info

    def _simulate(self, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        time_step = self._dm_env.step(action)
        return float(time_step.reward or 0.0), {}

    def _after_step(self) -> None:
        if self._video is not None:
            self._video.advance()

    def _draw(self) -> tuple[np.ndarray, np.ndarray | None]:
        need_segments = self.want_foreground_mask or (self._video is not None and self._video.needs_segments)
        rgb, segments = self._renderer.render(self._data, segmentation=need_segments)
        if segments is None:
            return rgb, None
        foreground = self._foreground(segments)
        if self._video is not None:
            rgb = self._video.composite(rgb, segments, foreground)
        return rgb, foreground

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        if self.mode in COLOR_MODES:
            info["color_index"] = self._color_index
        if self._video is not None:
            info["video"] = self._video.paths[self._video.video_index].stem
            info["video_frame"] = self._video.frame_index
        return super()._info(info)

    def _free(self) -> None:
        self._renderer.close()
