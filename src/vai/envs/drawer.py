"""DrawerWorld (VAI, Sec. 5): Meta-World v3 drawer tasks from a top-down camera, table textures as modes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from metaworld.env_dict import ALL_V3_ENVIRONMENTS

from vai.envs.base import PixelEnv
from vai.envs.render import ForegroundIndex, SceneRenderer, subtree_bodies
from vai.envs.textures import table_texture
from vai.tasks import IMAGE_SIZE, DrawerTask, check_mode


class DrawerEnv(PixelEnv):
    """A Meta-World drawer task seen from VAI's top-down camera, its table in one of seven textures.

    The reward and the success flag follow VAI's v1 drawer tasks on Meta-World v3's scene
    (``task.reward_version``, ``task.success_distance``; :class:`vai.tasks.DrawerTask` says each rule).
    ``info["success"]`` is the flag after the step (after its last Meta-World step, which is the ``info``
    VAI's wrapper returns); ``info["episode_success"]`` is whether it has been set after any step of the
    episode: VAI's success criterion (its ``eval.py`` counts an episode as a success at the first step
    whose flag is set). ``info["handle_distance"]`` is the handle's distance to its target along y, the
    quantity both v1 rules read. An episode lasts ``task.episode_env_steps`` Meta-World steps.
    """

    def __init__(
        self,
        task: DrawerTask,
        mode: str = "train",
        data_dir: Path | None = None,
        foreground_mask: bool = False,
        render_mode: str | None = None,
        oracle: bool = False,
    ):
        self.task = task
        self._data_dir = data_dir
        sim = ALL_V3_ENVIRONMENTS[task.env_name](reward_function_version=task.reward_version)
        # Meta-World ignores reset(seed=) and freezes its random task vector unless told otherwise:
        # draw the object position from its own np_random, which we seed at every reset.
        sim._set_task_called = True
        sim._freeze_rand_vec = False
        sim.seeded_rand_vec = True
        sim.max_path_length = task.episode_env_steps
        self._sim = sim
        self._scene_pull = sim.maxDist  # Meta-World's reset places the drawer by it (drawer-close: pulled out)
        super().__init__(
            action_space=gym.spaces.Box(
                sim.action_space.low.astype(np.float32), sim.action_space.high.astype(np.float32)
            ),
            action_repeat=task.action_repeat,
            max_episode_steps=task.episode_env_steps // task.action_repeat,
            foreground_mask=foreground_mask,
            render_mode=render_mode,
            oracle=oracle,
        )
        self._model, self._data = sim.model, sim.data
        self._renderer = SceneRenderer(self._model, IMAGE_SIZE, task.camera)
        self._foreground = ForegroundIndex.from_bodies(
            self._model, subtree_bodies(self._model, task.foreground_bodies), tendons=False
        )
        material = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_MATERIAL, task.table_material)
        self._table_texture = int(self._model.mat_texid[material].max())
        self._sim_obs: np.ndarray | None = None
        self._episode_success = False
        self.set_mode(mode)

    @property
    def simulator(self):
        """The wrapped Meta-World environment (for its scripted policies and state)."""
        return self._sim

    @property
    def last_state_observation(self) -> np.ndarray:
        """Meta-World's 39-dim state observation after the last step (for scripted policies only)."""
        return self._sim_obs

    def _check_mode(self, mode: str) -> str:
        check_mode(self.task, mode)
        texture = "grid" if mode == "train" else mode
        self._check_texture_size()
        table_texture(texture, self._texture_shape(), self._data_dir)  # fail now if its data is missing
        return mode

    def _enter_mode(self, mode: str) -> None:
        texture = "grid" if mode == "train" else mode
        self._texture_view()[:] = table_texture(texture, self._texture_shape(), self._data_dir).ravel()
        self._renderer.upload_texture(self._table_texture)

    def _texture_shape(self) -> tuple[int, int, int]:
        model, tex = self._model, self._table_texture
        return int(model.tex_height[tex]), int(model.tex_width[tex]), int(model.tex_nchannel[tex])

    def _check_texture_size(self) -> None:
        height, width, channels = self._texture_shape()
        if channels != 3:
            raise ValueError(f"table texture has {channels} channels; expected RGB")

    def _texture_view(self) -> np.ndarray:
        height, width, channels = self._texture_shape()
        start = self._model.tex_adr[self._table_texture]
        return self._model.tex_data[start : start + height * width * channels]

    def _reset_simulation(self, rng: np.random.Generator) -> dict[str, Any]:
        self._sim.seed(int(rng.integers(2**31)))
        self._sim.maxDist = self._scene_pull
        self._sim_obs, _ = self._sim.reset()
        if self.task.reward_version == "v1":  # d_max of VAI's pull reward, which v3 reads as maxDist
            pull = self.task.pull_scale
            self._sim.maxDist = pull if pull is not None else self.handle_distance()
        self._episode_success = False
        return {"success": False, "episode_success": False}

    def _simulate(self, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        self._sim_obs, reward, _, _, info = self._sim.step(action)
        distance = self.handle_distance()
        if self.task.success_distance is None:
            success = bool(info["success"])
        else:
            success = distance <= self.task.success_distance
        return float(reward), {"success": success, "handle_distance": distance}

    def handle_distance(self) -> float:
        """The handle's distance to its target along y (Meta-World's handle position: the observation's
        object position)."""
        return float(abs(self._sim_obs[5] - self._sim._target_pos[1]))

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        # Once per agent step (and at reset), after the action repeat: the flag of the last Meta-World
        # step counts, as in VAI, not one that a first sub-step set and the second cleared.
        self._episode_success |= info["success"]
        info["episode_success"] = self._episode_success
        return super()._info(info)

    def _draw(self) -> tuple[np.ndarray, np.ndarray | None]:
        rgb, segments = self._renderer.render(self._data, segmentation=self.want_foreground_mask)
        return rgb, None if segments is None else self._foreground(segments)

    def _free(self) -> None:
        self._renderer.close()
        self._sim.close()
