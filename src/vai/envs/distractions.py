"""DMControl-GB distractions applied to a loaded dm_control model at run time.

Colour modes re-generate the floor-grid and skybox textures exactly as MuJoCo builds them from the
suite's XML (``common/materials.xml``, ``common/skybox.xml``) with DMControl-GB's colours, and set the
``self`` material, so no dm_control file is forked. Video modes composite a video frame over the frame in
one of two ways (:data:`vai.tasks.COMPOSITING`): ``"segmentation"`` replaces exactly the pixels that segmentation
labels as sky (``video_easy``) or as anything but the agent (``video_hard``); ``"greenscreen"`` is
DMControl-GB's and VAI's: the skybox (and, in ``video_hard``, the floor) is painted green and every
pixel whose colour falls in the green key (:func:`green_pixels`) is replaced: the floor's reflections
of the green too, and thin props anti-aliased into the key (cartpole's rail); the agent keeps its
pixels but for green-tinted edges.
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
from vai.tasks import check_compositing

# dm_control suite defaults (common/materials.xml, common/skybox.xml); DMControl-GB changes only
# grid rgb1/rgb2, skybox rgb1 and the `self` material.
_GRID_XML = (
    '<texture name="grid" type="2d" builtin="checker" rgb1="{grid_rgb1}" rgb2="{grid_rgb2}" '
    'width="300" height="300" mark="edge" markrgb="{grid_markrgb}"/>'
)
_SKYBOX_XML = (
    '<texture name="skybox" type="skybox" builtin="gradient" rgb1="{skybox_rgb}" rgb2="{skybox_rgb2}" '
    'width="800" height="800" mark="random" markrgb="{skybox_markrgb}"/>'
)
_FIXED_COLORS = {"grid_markrgb": (0.2, 0.3, 0.4), "skybox_rgb2": (0.0, 0.0, 0.0), "skybox_markrgb": (1.0, 1.0, 1.0)}
"""The suite's texture colours that DMControl-GB's colour sets leave alone (the green screen sets them)."""
DEFAULT_COLORS = {
    "grid_rgb1": (0.1, 0.2, 0.3),
    "grid_rgb2": (0.2, 0.3, 0.4),
    "self_rgb": (0.7, 0.5, 0.3),
    "skybox_rgb": (0.4, 0.6, 0.8),
}
COLOR_KEYS = tuple(DEFAULT_COLORS)

GREEN = (0.2, 0.8, 0.2)
"""DMControl-GB's green screen colour (``env/wrappers.py`` ``ColorWrapper``)."""

GREEN_KEY = ((100.0, 80.0, 70.0), (185.0, 255.0, 255.0))
"""DMControl-GB's green key, lowest and highest (hue in degrees, saturation, value on 0-255), both
ends included (``do_green_screen``)."""

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
        self.paint(self.settings[index])

    def paint(self, setting: dict[str, Sequence[float]]) -> None:
        """Switch the scene to ``setting``: any of the ``COLOR_KEYS`` and ``grid_markrgb``,
        ``skybox_rgb2``, ``skybox_markrgb``; a colour it leaves out is the suite's own."""
        colors = {**DEFAULT_COLORS, **_FIXED_COLORS, **setting}
        grid = _builtin_texture(_GRID_XML, **{k: colors[k] for k in ("grid_rgb1", "grid_rgb2", "grid_markrgb")})
        skybox = _builtin_texture(
            _SKYBOX_XML, **{k: colors[k] for k in ("skybox_rgb", "skybox_rgb2", "skybox_markrgb")}
        )
        self_rgb = setting.get("self_rgb", self._original_self[:3])
        self._write(grid, skybox, np.append(self_rgb, self._original_self[3]))

    def restore(self) -> None:
        """Back to the suite's own colours."""
        self._write(self._original_grid, self._original_skybox, self._original_self)

    def _write(self, grid: np.ndarray, skybox: np.ndarray, self_rgba: np.ndarray) -> None:
        self._texture(self._grid)[:] = grid
        self._texture(self._skybox)[:] = skybox
        self._model.mat_rgba[self._self] = self_rgba
        self._renderer.upload_texture(self._grid)
        self._renderer.upload_texture(self._skybox)


def green_screen(floor: bool) -> dict[str, tuple[float, ...]]:
    """DMControl-GB's green screen as a colour setting for :meth:`ColorRandomizer.paint`: the whole
    skybox green, and the floor's checkers and lines too when ``floor`` (``video_hard``)."""
    sky = {"skybox_rgb": GREEN, "skybox_rgb2": GREEN, "skybox_markrgb": GREEN}
    return {**sky, "grid_rgb1": GREEN, "grid_rgb2": GREEN, "grid_markrgb": GREEN} if floor else sky


def green_pixels(rgb: np.ndarray) -> np.ndarray:
    """bool (..., H, W): the pixels of uint8 ``rgb`` (..., H, W, 3) inside DMControl-GB's green key
    (:data:`GREEN_KEY`), its HSV being Python's ``colorsys`` one with saturation and value on 0-255."""
    color = rgb.astype(np.float64) / 255.0
    high, low = color.max(axis=-1), color.min(axis=-1)
    spread = high - low
    grey = spread == 0
    safe = np.where(grey, 1.0, spread)
    r, g, b = (color[..., i] for i in range(3))
    rc, gc, bc = (high - r) / safe, (high - g) / safe, (high - b) / safe
    hue = np.where(r == high, bc - gc, np.where(g == high, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = np.where(grey, 0.0, (hue / 6.0) % 1.0) * 360.0
    saturation = np.where(grey, 0.0, spread / np.where(high > 0, high, 1.0)) * 255.0
    value = high * 255.0
    (h0, s0, v0), (h1, s1, v1) = GREEN_KEY
    return (hue >= h0) & (hue <= h1) & (saturation >= s0) & (saturation <= s1) & (value >= v0) & (value <= v1)


class VideoBackground:
    """Replaces a region of each frame by the current frame of a video, one video frame per step.

    ``region`` is ``"sky"`` (``video_easy``) or ``"background"`` (``video_hard``). With
    ``compositing="segmentation"`` they are the pixels where nothing was drawn, and every pixel that
    is not foreground; with ``"greenscreen"`` the pixels in the green key, the scene being painted by
    :func:`green_screen` (sky; sky and floor).
    """

    def __init__(
        self, paths: Sequence[Path], region: str, size: int, cache: VideoCache, compositing: str = "segmentation"
    ):
        if region not in ("sky", "background"):
            raise ValueError(f"region must be 'sky' or 'background', not {region!r}")
        self.paths = list(paths)
        self.region = region
        self.compositing = check_compositing(compositing)
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

    @property
    def needs_segments(self) -> bool:
        """Whether :meth:`composite` reads segmentation."""
        return self.compositing == "segmentation"

    def composite(self, rgb: np.ndarray, segments: np.ndarray | None, foreground: np.ndarray | None) -> np.ndarray:
        """The frame with the region replaced by the current video frame (video loops if short)."""
        if self.compositing == "greenscreen":
            replace = green_pixels(rgb)
        elif self.region == "sky":
            replace = segments[..., 1] == -1
        else:
            replace = ~foreground
        video_frame = self._frames[self.frame_index % len(self._frames)]
        return np.where(replace[..., None], video_frame, rgb)
