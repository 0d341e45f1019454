"""DMControl-GB distractions applied to a loaded dm_control model at run time.

Colour modes re-generate the floor-grid and skybox textures exactly as MuJoCo builds them from the
suite's XML (``common/materials.xml``, ``common/skybox.xml``) with DMControl-GB's colours, and set the
``self`` material, so no dm_control file is forked. Video modes composite a video frame over the pixels
that segmentation labels as sky (``video_easy``) or as anything but the agent (``video_hard``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import mujoco
import numpy as np

from vai.data.store import damaged_data
from vai.data.video import VideoCache
from vai.envs.render import SceneRenderer

# dm_control suite defaults (common/materials.xml, common/skybox.xml); DMControl-GB changes only
# grid rgb1/rgb2, skybox rgb1 and the `self` material.
_GRID_XML = (
    '<texture name="grid" type="2d" builtin="checker" rgb1="{grid_rgb1}" rgb2="{grid_rgb2}" '
    'width="300" height="300" mark="edge" markrgb=".2 .3 .4"/>'
)
_SKYBOX_XML = (
    '<texture name="skybox" type="skybox" builtin="gradient" rgb1="{skybox_rgb}" rgb2="0 0 0" '
    'width="800" height="800" mark="random" markrgb="1 1 1"/>'
)
DEFAULT_COLORS = {
    "grid_rgb1": (0.1, 0.2, 0.3),
    "grid_rgb2": (0.2, 0.3, 0.4),
    "self_rgb": (0.7, 0.5, 0.3),
    "skybox_rgb": (0.4, 0.6, 0.8),
}
COLOR_KEYS = tuple(DEFAULT_COLORS)

GENERATOR_STD = {"color_easy": 0.1, "color_hard": 0.2}
"""Standard deviation of the colour generator, fitted to DMControl-GB's sets (see generate_colors)."""


def load_colors(path: Path) -> list[dict[str, np.ndarray]]:
    """A DMControl-GB colour set (JSON list of settings with the four ``COLOR_KEYS``); a file that is not
    one is a UserError naming the fix."""
    try:
        settings = json.loads(path.read_text())
        return [{key: np.asarray(setting[key], dtype=np.float64) for key in COLOR_KEYS} for setting in settings]
    except (OSError, ValueError, KeyError, TypeError) as error:
        why = " ".join(f"{type(error).__name__}: {error}".split())
        raise damaged_data(path, f"cannot read colour set {path} ({why})") from None


def generate_colors(mode: str, count: int = 100, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Colour settings with the distribution of DMControl-GB's sets, for when the data is absent.

    Measured on the published sets: each of ``grid_rgb1``, ``self_rgb`` and ``skybox_rgb`` is the
    suite default plus Gaussian noise (std ~0.1 for easy, ~0.2 for hard) per channel, clipped to
    [0, 1]; ``grid_rgb2`` is always ``grid_rgb1 + 0.1``, clipped.
    """
    rng = np.random.default_rng(seed)
    std = GENERATOR_STD[mode]
    settings = []
    for _ in range(count):
        setting = {
            key: np.clip(np.asarray(DEFAULT_COLORS[key]) + rng.normal(0.0, std, 3), 0.0, 1.0)
            for key in ("grid_rgb1", "self_rgb", "skybox_rgb")
        }
        setting["grid_rgb2"] = np.clip(setting["grid_rgb1"] + 0.1, 0.0, 1.0)
        settings.append(setting)
    return settings


def _rgb(values: Sequence[float]) -> str:
    return " ".join(f"{float(v):.6f}" for v in values)


def _builtin_texture(template: str, **colors: Sequence[float]) -> np.ndarray:
    """Texture bytes that MuJoCo's compiler makes from one builtin texture definition."""
    xml = "<mujoco><asset>" + template.format(**{k: _rgb(v) for k, v in colors.items()}) + "</asset></mujoco>"
    return mujoco.MjModel.from_xml_string(xml).tex_data


class ColorRandomizer:
    """Applies one colour setting per episode to a dm_control model and its renderer."""

    def __init__(self, model: mujoco.MjModel, renderer: SceneRenderer, settings: list[dict[str, np.ndarray]]):
        self._model = model
        self._renderer = renderer
        self.settings = settings
        self._grid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_TEXTURE, "grid")
        self._skybox = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_TEXTURE, "skybox")
        self._self = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_MATERIAL, "self")
        if min(self._grid, self._skybox, self._self) < 0:
            raise ValueError("model lacks the suite's grid/skybox textures or self material")
        self._original_grid = self._texture(self._grid).copy()
        self._original_skybox = self._texture(self._skybox).copy()
        self._original_self = model.mat_rgba[self._self].copy()

    def _texture(self, texture_id: int) -> np.ndarray:
        model = self._model
        start = model.tex_adr[texture_id]
        size = model.tex_height[texture_id] * model.tex_width[texture_id] * model.tex_nchannel[texture_id]
        return model.tex_data[start : start + size]

    def apply(self, index: int) -> None:
        """Switch the scene to setting ``index``."""
        setting = self.settings[index]
        grid = _builtin_texture(_GRID_XML, grid_rgb1=setting["grid_rgb1"], grid_rgb2=setting["grid_rgb2"])
        skybox = _builtin_texture(_SKYBOX_XML, skybox_rgb=setting["skybox_rgb"])
        self._write(grid, skybox, np.append(setting["self_rgb"], self._original_self[3]))

    def restore(self) -> None:
        """Back to the suite's own colours."""
        self._write(self._original_grid, self._original_skybox, self._original_self)

    def _write(self, grid: np.ndarray, skybox: np.ndarray, self_rgba: np.ndarray) -> None:
        self._texture(self._grid)[:] = grid
        self._texture(self._skybox)[:] = skybox
        self._model.mat_rgba[self._self] = self_rgba
        self._renderer.upload_texture(self._grid)
        self._renderer.upload_texture(self._skybox)


class VideoBackground:
    """Replaces a region of each frame by the current frame of a video, one video frame per step.

    ``region`` is ``"sky"`` (pixels where nothing was drawn: DMControl-GB's ``video_easy``) or
    ``"background"`` (every pixel that is not foreground: ``video_hard``).
    """

    def __init__(self, paths: Sequence[Path], region: str, size: int, cache: VideoCache):
        if region not in ("sky", "background"):
            raise ValueError(f"region must be 'sky' or 'background', not {region!r}")
        self.paths = list(paths)
        self.region = region
        self._size = size
        self._cache = cache
        self.video_index = 0
        self.frame_index = 0
        self._frames: np.ndarray | None = None

    def start(self, episode: int) -> None:
        """Begin an episode on video ``episode mod len(paths)``, at its first frame."""
        self.video_index = episode % len(self.paths)
        self._frames = self._cache.get(self.paths[self.video_index], self._size)
        self.frame_index = 0

    def advance(self) -> None:
        self.frame_index += 1

    def composite(self, rgb: np.ndarray, segments: np.ndarray, foreground: np.ndarray) -> np.ndarray:
        """The frame with the region replaced by the current video frame (video loops if short)."""
        if self.region == "sky":
            replace = segments[..., 1] == -1
        else:
            replace = ~foreground
        video_frame = self._frames[self.frame_index % len(self._frames)]
        return np.where(replace[..., None], video_frame, rgb)
