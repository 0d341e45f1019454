"""The tasks: the one place where task constants live (views, modes, and per task the action repeat,
the foreground, the keypoint count and the encoder's depth).

DeepMind Control settings follow PAD / DMControl-GB and VAI (Hansen et al. 2021; Wang et al. 2021):
100x100 RGB from camera 0, 3 stacked frames, 1000 simulator steps per episode, action repeat 8 for
cartpole, 2 for finger and 4 otherwise. DrawerWorld follows VAI's top-down view of Meta-World's drawer
tasks with action repeat 2. The settings that do not depend on the task are in :mod:`vai.presets`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vai.errors import UserError

IMAGE_SIZE = 100
"""Rendered frame side in pixels; agents crop to 84."""

FRAME_STACK = 3
"""Frames stacked along the channel axis: observations are uint8 (3 * FRAME_STACK, H, W)."""

COLOR_MODES = ("color_easy", "color_hard")
VIDEO_MODES = ("video_easy", "video_hard")
DMC_MODES = ("train", *COLOR_MODES, *VIDEO_MODES)

COMPOSITING = ("segmentation", "greenscreen")
"""How DeepMind Control's video modes put the video behind the agent: exactly the pixels segmentation
marks as background, or DMControl-GB's green screen and key (:mod:`vai.envs.distractions`)."""
"""DMControl-GB test modes; ``videoN`` (one video of the easy set) is accepted too."""

DRAWER_TEXTURES = ("grid", "black", "blanket", "fabric", "metal", "marble", "wood")
"""DrawerWorld table textures (VAI, Sec. 5); ``grid`` is the training texture."""

DRAWER_MODES = ("train", *DRAWER_TEXTURES)


@dataclass(frozen=True)
class DMCTask:
    """A DeepMind Control task as a pixel environment."""

    domain: str
    """dm_control suite domain, e.g. ``walker``."""
    task: str
    """dm_control suite task, e.g. ``walk``."""
    action_repeat: int
    """Simulator steps per agent action (PAD / VAI values)."""
    foreground: str
    """What counts as foreground in the ground-truth mask, in words (documentation)."""
    extra_foreground_geoms: tuple[str, ...] = ()
    """Static geoms that still belong to the foreground (e.g. reacher's target)."""
    extra_foreground_sites: tuple[str, ...] = ()
    """Visible sites that belong to the foreground (e.g. finger's target)."""
    episode_sim_steps: int = 1000
    """Simulator steps per episode (an episode has ``episode_sim_steps // action_repeat`` steps)."""
    camera_id: int = 0
    """Camera rendered (DMControl-GB uses camera 0)."""

    @property
    def suite(self) -> str:
        return "dmc"


@dataclass(frozen=True)
class DrawerTask:
    """A Meta-World drawer task seen from VAI's top-down camera (DrawerWorld)."""

    env_name: str
    """Meta-World v3 environment name."""
    foreground_bodies: tuple[str, ...]
    """Bodies whose whole subtree is foreground: the robot arm and the drawer."""
    foreground: str
    """What counts as foreground, in words (documentation)."""
    action_repeat: int = 2
    """Simulator (Meta-World) steps per agent action, as VAI."""
    episode_env_steps: int = 200
    """Meta-World steps per episode (its ``max_path_length``): VAI's MetaWorldWrapper counts Meta-World
    steps and ends the episode when the count reaches ``max_path_length``, which its drawer classes do
    not set but inherit from its Meta-World fork's base class ``SawyerXYZEnv``: 200, so an episode is 100
    agent steps at action repeat 2 (Meta-World v3's default: 500)."""
    camera: dict = field(
        default_factory=lambda: {
            "azimuth": 180.0,
            "elevation": -90.0,
            "distance": 0.96,
            "lookat": (0.0, 0.6, 0.0),
        }
    )
    """Free camera of VAI's DrawerWorld: straight down on table, arm and drawer."""
    table_material: str = "table_wood"
    """Material whose texture the texture modes replace."""
    reward_version: str = "v1"
    """Meta-World's reward rule: ``v1``, VAI's (its v1 drawer tasks): minus the fingers' distance to the
    handle, plus, once they are within 0.05 of it, ``1000 (d_max - d) + 1000 (exp(-d^2 / 0.01) + exp(-d^2 /
    0.001))`` clipped at 0, where d is the handle's distance to its target along y (Meta-World v3 computes
    it on its own scene with ``reward_function_version="v1"``); ``v2``, Meta-World v3's default (a bounded
    tolerance reward x 5, 0-10 per step)."""
    pull_scale: float | None = 0.2
    """d_max of the v1 reward: 0.2 opening (VAI's ``maxPullDist``); None: the handle's distance to its
    target at reset (VAI's drawer-close rule; 0.16 on Meta-World v3's scene, whose own v1 reward uses 0.15)."""
    success_distance: float | None = 0.08
    """Success when the handle is within this of its target along y (VAI's v1 rule: 0.08 opening, 0.06
    closing); None: Meta-World v3's own ``evaluate_state`` test (stricter: 0.03 / 0.055, in 3-D)."""

    @property
    def suite(self) -> str:
        return "drawerworld"


_MOVING = "every body that moves (not welded to the world)"

DMC_TASKS: dict[str, DMCTask] = {
    "walker_walk": DMCTask("walker", "walk", 4, f"{_MOVING}: the walker"),
    "walker_stand": DMCTask("walker", "stand", 4, f"{_MOVING}: the walker"),
    "cartpole_swingup": DMCTask("cartpole", "swingup", 8, f"{_MOVING}: cart and pole; the rails are static decoration"),
    "cartpole_balance": DMCTask("cartpole", "balance", 8, f"{_MOVING}: cart and pole; the rails are static decoration"),
    "ball_in_cup_catch": DMCTask("ball_in_cup", "catch", 4, f"{_MOVING} and the string: cup, ball and string"),
    "finger_spin": DMCTask("finger", "spin", 2, f"{_MOVING}: finger and spinner", extra_foreground_sites=("target",)),
    "finger_turn_easy": DMCTask(
        "finger",
        "turn_easy",
        2,
        f"{_MOVING} and the target site: finger, spinner, target",
        extra_foreground_sites=("target",),
    ),
    "cheetah_run": DMCTask("cheetah", "run", 4, f"{_MOVING}: the cheetah"),
    "reacher_easy": DMCTask(
        "reacher",
        "easy",
        4,
        f"{_MOVING} and the target: arm and target; the arena walls and the arm's pivot are static",
        extra_foreground_geoms=("target",),
    ),
}

_DRAWER_FOREGROUND = "the Sawyer arm (from its base link) and the drawer (case and handle)"

DRAWER_TASKS: dict[str, DrawerTask] = {
    "drawer_open": DrawerTask("drawer-open-v3", ("right_arm_base_link", "drawer"), _DRAWER_FOREGROUND),
    "drawer_close": DrawerTask(
        "drawer-close-v3",
        ("right_arm_base_link", "drawer"),
        _DRAWER_FOREGROUND,
        pull_scale=None,
        success_distance=0.06,
    ),
}

TASKS: dict[str, DMCTask | DrawerTask] = {**DMC_TASKS, **DRAWER_TASKS}


def get_task(name: str) -> DMCTask | DrawerTask:
    """The preset of a task, or a :class:`UserError` naming the valid tasks."""
    try:
        return TASKS[name]
    except KeyError:
        raise UserError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None


def modes_for(task: DMCTask | DrawerTask) -> tuple[str, ...]:
    """The named modes a task accepts (DMC tasks also accept ``videoN``)."""
    return DMC_MODES if isinstance(task, DMCTask) else DRAWER_MODES


def video_number(mode: str) -> int | None:
    """N for a ``videoN`` mode, else None."""
    match = re.fullmatch(r"video(\d+)", mode)
    return int(match.group(1)) if match else None


def check_compositing(compositing: str) -> str:
    """``compositing`` if it is one of :data:`COMPOSITING`; ValueError otherwise."""
    if compositing not in COMPOSITING:
        raise ValueError(f"compositing must be one of {', '.join(COMPOSITING)}, not {compositing!r}")
    return compositing


def check_mode(task: DMCTask | DrawerTask, mode: str) -> str:
    """``mode`` if ``task`` accepts it by name, else a :class:`UserError` naming the valid modes."""
    if mode in modes_for(task) or (isinstance(task, DMCTask) and video_number(mode) is not None):
        return mode
    valid = ", ".join(modes_for(task)) + (", videoN" if isinstance(task, DMCTask) else "")
    suite = "a DMC task" if isinstance(task, DMCTask) else "DrawerWorld"
    raise UserError(f"unknown mode {mode!r} for {suite}; choose one of: {valid}")


def default_modes(task: DMCTask | DrawerTask, purpose: str = "test") -> list[str]:
    """The modes a command uses when none are named, for ``purpose``:

    - ``test`` (``vai eval``, ``vai run``'s final evaluation, ``vai env show``): every named mode but
      DrawerWorld's ``grid``, its training texture, i.e. ``train`` again;
    - ``training`` (the evaluations during ``vai train``): ``train``;
    - ``masks`` (``vai masks eval`` and ``vai masks show``): for DMC ``train``, ``color_hard`` and the
      video modes; for DrawerWorld ``train`` and the ``black``, ``blanket``, ``marble`` and ``wood``
      textures.
    """
    if purpose == "test":
        return [mode for mode in modes_for(task) if mode != "grid"]
    if purpose == "training":
        return ["train"]
    if purpose == "masks":
        if isinstance(task, DMCTask):
            return ["train", "color_hard", *VIDEO_MODES]
        return ["train", "black", "blanket", "marble", "wood"]
    raise ValueError(f"unknown purpose {purpose!r}; choose one of: test, training, masks")


KEYPOINTS: dict[str, int] = {
    "cartpole_swingup": 12,
    "cartpole_balance": 12,
    "walker_walk": 12,
    "walker_stand": 12,
    "ball_in_cup_catch": 24,
    "finger_spin": 24,
    "finger_turn_easy": 24,
    "cheetah_run": 24,
    "reacher_easy": 24,
    "drawer_open": 24,
    "drawer_close": 24,
}
"""Transporter keypoints per task, chosen without labels: the count whose Transporter seeds agree best
(:mod:`vai.vision.choose_k`; ``python benchmarks/keypoint_count.py TASK``, quick preset, records in
``results/keypoints/``) for cartpole_balance, walker_walk and finger_spin, shared by the tasks of the
same scene. The other tasks take VAI's default of 24, as the rule has no record for them
(``results/keypoints/`` holds one file per measured task); ball_in_cup_catch among them, whose quick
Transporters gave the rule no agreeing masks to choose from."""

ENCODER_LAYERS: dict[str, tuple[int, int]] = {"finger_spin": (11, 8), "finger_turn_easy": (11, 8)}
"""(conv layers, layers shared with PAD's heads) of the agent's encoder per task where it differs from
DEFAULT_ENCODER_LAYERS (PAD / VAI: 11 and 8 for finger)."""
DEFAULT_ENCODER_LAYERS = (4, 4)
