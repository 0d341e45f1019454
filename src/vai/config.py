"""Per-task presets: the one place where task constants live.

DeepMind Control settings follow PAD / DMControl-GB and VAI (Hansen et al. 2021; Wang et al. 2021):
100x100 RGB from camera 0, 3 stacked frames, 1000 simulator steps per episode, action repeat 8 for
cartpole, 2 for finger and 4 otherwise. DrawerWorld follows VAI's top-down view of Meta-World's drawer
tasks with action repeat 2.
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
    not set but inherit from the Meta-World release VAI forked (a base class its repository does not
    include): 200, so an episode is 100 agent steps at action repeat 2 (Meta-World v3's default: 500)."""
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
    "drawer_close": DrawerTask("drawer-close-v3", ("right_arm_base_link", "drawer"), _DRAWER_FOREGROUND),
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


# -- Vision pipeline (VAI steps 0-2) -------------------------------------------------------------

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


@dataclass(frozen=True)
class VisionPreset:
    """Every setting of VAI's steps 0-2 (collect, keypoints, adapter) for one compute budget.

    Each field's docstring gives VAI's value (its public code, ``train_stage1.py`` and
    ``train_stage2.py``); ``docs/fidelity.md`` lists where ``quick`` differs and why.
    """

    name: str
    collect_frames: int = 5000
    """Random-policy frames recorded in the training visuals (VAI: 5000)."""
    transporter_size: int = 100
    """Side the whole frame is resized to for the Transporter (VAI: 100, the frame itself)."""
    transporter_batch: int = 64
    """Frame pairs per Transporter step (VAI: 64)."""
    transporter_channels: int = 32
    """Width of the Transporter's first layers; the deeper ones double it twice (VAI: 32, 64, 128)."""
    transporter_steps: int = 3000
    """Transporter training steps (VAI: 3000; its loop stops after 3002)."""
    transporter_lr: float = 1e-3
    """Adam learning rate of the Transporter (VAI: 1e-3)."""
    transporter_lr_decay: float = 0.95
    """Multiplied into the learning rate every ``transporter_lr_every`` steps (VAI: 0.95)."""
    transporter_lr_every: int = 200
    """(VAI: 200)."""
    keypoint_std: float = 0.1
    """Width of the Gaussian keypoint maps in training, exp(-d^2 / std^2) in the [-1, 1] coordinate
    units (VAI: 0.1)."""
    max_pair_gap: int = 20
    """A training pair's target is 0 to this - 1 steps after its source, same episode (VAI: 20)."""
    mask_keypoint_std: float = 0.25
    """Width of the Gaussian keypoint maps when the counterfactual masks are made (VAI: 0.25, wider
    than in training, so a keypoint's map covers the body part it sits on)."""
    mask_abs_effect: bool = False
    """Threshold the magnitude of the counterfactual effect instead of its signed value (VAI's
    ``abs_comparison``: off)."""
    mask_threshold: float = 0.35
    """Threshold on the counterfactual effect (VAI: 0.35; it found 0.35-0.5 stable)."""
    mask_morphology: int = 0
    """3x3 dilation (> 0) or erosion (< 0) steps applied to the thresholded counterfactual masks
    (VAI's optional dilate/erode; 0, off, as VAI's default)."""
    adapter_size: int = 84
    """Side of the random crops the adapter trains on (VAI: 84, the agent's crop)."""
    adapter_batch: int = 64
    """Stacks of 3 frames per adapter step (VAI: 64, i.e. 192 frames)."""
    adapter_steps: int = 3000
    """Adapter training steps (VAI: 3000; its loop stops after 3101)."""
    adapter_lr: float = 1e-3
    """Adam learning rate of the adapter (VAI: 1e-3)."""
    adapter_lr_decay: float = 0.95
    """Multiplied into the adapter's learning rate every ``adapter_lr_every`` steps (VAI: 0.95)."""
    adapter_lr_every: int = 200
    """(VAI: 200)."""
    adapter_norm: str = "batch"
    """Normalisation in the adapter's blocks: ``batch`` (VAI; running statistics at inference, so
    a frame's mask depends on that frame alone) or ``group`` (GroupNorm with 4 groups, whose
    statistics come from the frame being masked, background included)."""
    adapter_output: str = "clamp"
    """The adapter's output: ``clamp`` (VAI: its last block's ReLU, upsampled, clamped to [0, 1], so
    background can be exactly 0) or ``sigmoid`` (a linear head through a sigmoid, never 0)."""
    pos_weight: float = 15.0
    """Missing foreground costs this many times more than leaked background (VAI: 15)."""
    feature_weight: float = 0.5
    """Weight of the feature-consistency term between distracted and clean inputs (VAI: 0.5)."""
    adapter_coherent_stack: bool = False
    """Share the background draws (choice, colour, natural image, alpha, boxes) across the 3 frames
    of a stack, a static scene behind a moving agent (VAI: off, every frame draws its own)."""
    adapter_boxes: int = 0
    """Boxes of random colour painted on the background of the adapter's distracted inputs (VAI's
    optional ``add_random_boxes``: 5 boxes when on; 0, off, as VAI's default)."""
    adapter_threshold: float = 0.5
    """Adapter probability above which a pixel counts as foreground when masks are scored; the agent
    multiplies the probability itself into its observation, so this cut only affects the scores."""
    mask_eval_episodes: int = 3
    """``vai run``'s mask measurement: seeded random-policy episodes per mode..."""
    mask_eval_steps: int = 50
    """... of this many steps each."""


VISION_PRESETS: dict[str, VisionPreset] = {
    "paper": VisionPreset("paper"),
    "quick": VisionPreset(
        "quick",
        collect_frames=2000,
        transporter_size=64,
        transporter_batch=16,
        transporter_channels=16,
        transporter_steps=500,
        transporter_lr_every=38,
        adapter_batch=32,
        adapter_steps=400,
        adapter_lr_every=30,
        mask_eval_episodes=2,
    ),
}
"""``paper``: VAI's settings, meant for a GPU. ``quick``: the same algorithm sized so that ``vai run
--preset quick`` (vision and RL) fits a quarter of an hour on a 2-core CPU: fewer frames, a smaller,
narrower Transporter, fewer and smaller batches, learning-rate decay on the same schedule relative
to the run's length; its masks are coarser (``docs/benchmarks.md``)."""

CHOICES: dict[str, tuple[str, ...]] = {"adapter_norm": ("batch", "group"), "adapter_output": ("clamp", "sigmoid")}
"""Text preset fields and the values each accepts."""


def get_vision_preset(name: str) -> VisionPreset:
    try:
        return VISION_PRESETS[name]
    except KeyError:
        raise UserError(f"unknown preset {name!r}; choose one of: {', '.join(VISION_PRESETS)}") from None


SIGNED_SETTINGS = frozenset({"mask_morphology", "actor_log_std_min", "actor_log_std_max"})
"""Numeric preset fields that may be negative (erosion; log standard deviations)."""

ZERO_ALLOWED_SETTINGS = frozenset(
    {
        "init_steps",
        "replay_capacity",
        "adapt_boxes",
        "adapt_box_std",
        "adapter_boxes",
        "adapt_noise",
        "num_layers",
        "num_shared_layers",
        "feature_weight",
        "svea_alpha",
        "svea_beta",
        "mask_threshold",
        "adapter_threshold",
    }
)
"""Numeric fields for which 0 means something (none, off, or the task's default); the others must be > 0."""

FRACTION_SETTINGS = frozenset(
    {
        "discount",
        "transporter_lr_decay",
        "adapter_lr_decay",
        "critic_tau",
        "encoder_tau",
        "mask_threshold",
        "adapter_threshold",
    }
)
"""Numeric fields that are at most 1."""

_BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _parse_bool(value: str) -> bool:
    try:
        return _BOOLEANS[value.lower()]
    except KeyError:
        raise ValueError(value) from None


def _range_problem(key: str, value: object) -> str | None:
    """Why ``value`` is out of range for the numeric field ``key``, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or key in SIGNED_SETTINGS:
        return None
    if key in ZERO_ALLOWED_SETTINGS and value < 0:
        return "must be >= 0"
    if key not in ZERO_ALLOWED_SETTINGS and not value > 0:  # also refuses nan
        return "must be > 0"
    if key in FRACTION_SETTINGS and value > 1:
        return "must be at most 1"
    return None


def override(preset, assignments: list[str] | None):
    """A copy of a preset dataclass with ``KEY=VALUE`` assignments applied (``--set`` on the CLI).

    Unknown keys, values of the wrong type and numbers out of their field's range are UserErrors.
    """
    from dataclasses import fields, replace

    if not assignments:
        return preset
    types = {f.name: f.type for f in fields(preset)}
    changes = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or key not in types or key == "name":
            valid = ", ".join(name for name in types if name != "name")
            raise UserError(f"cannot set {assignment!r}: use KEY=VALUE with KEY one of {valid}")
        cast = {"int": int, "float": float, "bool": _parse_bool}.get(str(types[key]), str)
        try:
            changes[key] = cast(value)
        except ValueError:
            raise UserError(f"cannot set {key}={value!r}: expected {types[key]}") from None
        if key in CHOICES and changes[key] not in CHOICES[key]:
            raise UserError(f"cannot set {key}={value!r}: choose one of {', '.join(CHOICES[key])}")
        problem = _range_problem(key, changes[key])
        if problem:
            raise UserError(f"cannot set {key}={value!r}: it {problem}")
    return replace(preset, **changes)


# -- Reinforcement learning (VAI step 3) ----------------------------------------------------------

ENCODER_LAYERS: dict[str, tuple[int, int]] = {"finger_spin": (11, 8), "finger_turn_easy": (11, 8)}
"""(conv layers, layers shared with PAD's heads) per task where it differs from DEFAULT_ENCODER_LAYERS
(PAD / VAI: 11 and 8 for finger)."""
DEFAULT_ENCODER_LAYERS = (4, 4)

ALGORITHMS = ("vai", "sac", "drq", "svea")
"""``vai``: frozen adapter in front, adapt_aug; ``sac``: no adapter (random crop only); ``drq``: random
shift (DrQ / RAD style); ``svea``: random convolution, clean and augmented Q targets mixed (SVEA)."""

AUX_TASKS = ("inverse", "reward", "rotation")
"""PAD's self-supervised heads on the shared encoder layers."""


@dataclass(frozen=True)
class RLPreset:
    """Every setting of the agent and its training loop (SAC as in PAD and VAI, pytorch_sac_ae lineage).

    Each field's docstring gives VAI's value (its public code: ``train.py``, ``arguments.py``,
    ``agent/agent.py``, ``agent/encoder.py``, ``utils.py`` and its training command, which passes
    ``--use_inv --update_rewards --adapt_aug``). Run lengths and intervals count *agent steps*: each
    agent step repeats its action for the task's ``action_repeat`` simulator frames.
    """

    name: str
    train_steps: int = 500_000
    """Agent steps of training, for every task whatever its action repeat (VAI: 500,000, ``--train_steps``;
    simulator frames = agent steps x action repeat)."""
    init_steps: int = 1000
    """Agent steps of uniformly random actions before the first update (VAI: 1000)."""
    init_burst: bool = True
    """At agent step ``init_steps``, make ``init_steps`` updates at once, each numbered as that step (so
    the actor's, target's and heads' schedules count them as VAI does), then ``updates_per_step`` per
    step (VAI: on, ``train.py``)."""
    replay_capacity: int = 0
    """Transitions the replay buffer keeps, the newest; 0 means ``train_steps // 2`` (VAI's rule,
    ``train.py``: 250,000 for 500,000 steps)."""
    batch_size: int = 128
    """Transitions per update (VAI: 128)."""
    updates_per_step: int = 1
    """Agent updates per environment step after the random phase (the update-to-data ratio; PAD /
    VAI: 1). More updates per step learn more from each frame where frames are the expensive part."""
    discount: float = 0.99
    """(VAI: 0.99)."""
    nstep: int = 1
    """Steps of the critic's return before it bootstraps (PAD / VAI: 1; DrQ-v2: 3)."""
    image_size: int = 84
    """Random crop 100 -> 84 in training (corners 0..15, VAI's ``utils.random_crop``), centre crop when
    acting (VAI: 84)."""
    downsample: int = 1
    """Average-pool the crops by this factor before the encoder (1: none, PAD / VAI; 2 on a CPU)."""
    adapter_per_crop: bool = True
    """Where the frozen adapter runs (vai only). On (VAI: its ``PixelEncoder.forward_conv`` runs
    ``AdaptObservation`` on the crop it is given, ``encoder.py``): replay keeps raw frames; in training
    the adapter runs on every frame of each sampled stack's random crop (so the crop's rim and its
    offset on the grid of the adapter's strided layers are the crop's own), its mask, clamped to
    [0, 1], times the crop, then pooled by ``downsample``; acting adapts the centre crop. Off (our
    stored form): the adapter runs once per frame when it is stored, on the centre crop, the 8-px rim
    taking the mask's nearest edge value, and replay keeps mask x frame (pooled), so training crops
    are cut from adapted frames: one adapter pass per environment step instead of one per sampled
    frame, about 16 times less adapter work per update (``benchmarks/agent_speed.py`` measures it)."""
    num_filters: int = 32
    """Filters of every conv layer (VAI: 32)."""
    feature_dim: int = 100
    """Encoder features (VAI: 100, ``--encoder_feature_dim``)."""
    hidden_dim: int = 1024
    """Width of the actor's, critics' and PAD heads' hidden layers (VAI: 1024)."""
    num_layers: int = 0
    """Conv layers of the encoder; 0 takes the task's from ENCODER_LAYERS (VAI: 4, finger 11)."""
    num_shared_layers: int = 0
    """Conv layers shared with PAD's heads; 0 takes the task's from ENCODER_LAYERS (VAI: 4, finger 8)."""
    init_temperature: float = 0.1
    """Initial SAC temperature alpha (VAI: 0.1)."""
    actor_lr: float = 1e-3
    """Adam learning rate of the actor, beta1 0.9 (VAI: 1e-3, ``--actor_beta`` 0.9)."""
    critic_lr: float = 1e-3
    """Critic and encoder (the encoder is trained by the critic's loss), beta1 0.9 (VAI: 1e-3,
    ``--critic_beta`` 0.9)."""
    alpha_lr: float = 1e-4
    """Adam learning rate of the temperature (VAI: 1e-4)."""
    alpha_beta: float = 0.5
    """Adam beta1 of the temperature (VAI: 0.5, from pytorch_sac_ae)."""
    actor_log_std_min: float = -10.0
    """(VAI: -10)."""
    actor_log_std_max: float = 2.0
    """(VAI: 2)."""
    critic_tau: float = 0.01
    """Target Q heads move this far towards the critic's (VAI: 0.01)."""
    encoder_tau: float = 0.05
    """Target encoder moves this far towards the critic's (VAI: 0.05)."""
    actor_update_every: int = 2
    """Updates between actor and temperature steps (VAI: 2, ``--actor_update_freq``)."""
    target_update_every: int = 2
    """Updates between target moves (VAI: 2, ``--critic_target_update_freq``)."""
    actor_reuses_critic_trunk: bool = False
    """The actor's step reuses the conv output the critic's step computed (before the critic's
    optimiser step, with that pass's augmentation), saving two conv passes; off: it encodes the batch
    again with the updated convs and a fresh adapt_aug (VAI: off, ``update_actor_and_alpha``)."""
    aux_tasks: str = "inverse,reward"
    """Comma-separated PAD heads trained with the agent (inverse, reward, rotation), or empty (VAI:
    inverse and reward, ``--use_inv --update_rewards``)."""
    aux_lr: float = 1e-3
    """Adam learning rate of the heads and their encoder (VAI: 1e-3 for each, ``--ss_lr``,
    ``--reward_lr``, ``--encoder_lr``)."""
    aux_update_every: int = 2
    """Updates between steps of the heads (VAI: 2, ``--ss_update_freq``)."""
    adapt_boxes: int = 15
    """VAI's adapt_aug (vai only): boxes of random colour painted on every frame of the adapted
    observation, each frame at its own places (VAI: 15, ``encoder.py``); 0: none."""
    adapt_box_std: float = 2.0
    """A box's side is int(N(0, this)) clamped to ``[1, adapt_box_max]`` px (at ``downsample`` d:
    divided by d, at least 1), one side per box for the whole batch (VAI: 2, so 84% are 1 px)."""
    adapt_box_max: int = 5
    """Largest box side in px at full resolution (VAI: 5)."""
    adapt_noise: float = 0.005
    """VAI's adapt_aug: std of the Gaussian noise added to every pixel, with no clamp after (VAI: 0.005)."""
    adapt_aug_when_acting: bool = True
    """adapt_aug also when the agent acts in training and in the evaluations during training, as every
    pass through VAI's encoder augments (VAI: on); ``vai eval`` never augments (VAI's ``eval.py``)."""
    svea_alpha: float = 0.5
    """Weight of the clean Q loss in SVEA; the augmented one gets ``svea_beta``."""
    svea_beta: float = 0.5
    eval_every: int = 100_000
    """Agent steps between evaluations during training (VAI: 100,000, ``--eval_freq``)."""
    eval_episodes: int = 10
    """Episodes per evaluation during training (VAI: 10)."""
    checkpoint_every: int = 100_000
    """Agent steps between checkpoints, and one at the end (VAI: 100,000, ``--save_freq``)."""
    tta_batch: int = 32
    """Augmented copies per test-time adaptation step (PAD / VAI: 32, ``--pad_batch_size``)."""
    replay_on_device: bool = True
    """Keep the replay frames on the training device when it is a GPU (sampling never leaves it)."""
    test_seeds: int = 10
    """Final evaluation of ``vai run``: seeds per mode (VAI: 10; seed i plays video i)."""
    test_episodes: int = 10
    """Final evaluation of ``vai run``: episodes per seed and mode (VAI: 10)."""


RL_PRESETS: dict[str, RLPreset] = {
    "paper": RLPreset("paper"),
    "quick": RLPreset(
        "quick",
        train_steps=3_000,
        init_steps=500,
        batch_size=64,
        downsample=2,
        adapter_per_crop=False,
        num_filters=16,
        feature_dim=50,
        hidden_dim=256,
        num_layers=2,
        num_shared_layers=2,
        discount=0.9,
        nstep=3,
        critic_tau=0.05,
        target_update_every=1,
        eval_every=1_500,
        eval_episodes=2,
        checkpoint_every=625,
        test_seeds=2,
        test_episodes=1,
    ),
}
"""``paper``: VAI's settings for a GPU. ``quick``: the same algorithm sized for a 2-core CPU and a few
thousand updates (3000 agent steps: 24,000 frames of cartpole): 42-px views of a 2-layer, 16-filter
encoder, and values that settle within such a run: discount 0.9, 3-step returns and a target critic
that moves by 0.05 every step, where the paper's 0.99, one-step returns and 0.01 every 2 steps need
tens of thousands of updates (``docs/fidelity.md`` lists each difference and why). Evaluations during
training are few (start, middle, end): each renders as much as a few hundred training steps."""


def get_rl_preset(name: str) -> RLPreset:
    try:
        return RL_PRESETS[name]
    except KeyError:
        raise UserError(f"unknown preset {name!r}; choose one of: {', '.join(RL_PRESETS)}") from None


def encoder_layers(task: str, preset: RLPreset) -> tuple[int, int]:
    """(conv layers, shared layers) of ``task`` under ``preset`` (the preset's, when set)."""
    layers, shared = ENCODER_LAYERS.get(task, DEFAULT_ENCODER_LAYERS)
    layers = preset.num_layers or layers
    shared = min(preset.num_shared_layers or shared, layers)
    return layers, shared


def replay_transitions(preset: RLPreset) -> int:
    """Transitions the replay buffer keeps: ``replay_capacity``, or VAI's ``train_steps // 2`` (at least 1)."""
    return max(1, preset.replay_capacity or preset.train_steps // 2)


def aux_tasks(preset: RLPreset) -> tuple[str, ...]:
    """The preset's PAD heads, checked."""
    names = tuple(name.strip() for name in preset.aux_tasks.split(",") if name.strip())
    unknown = [name for name in names if name not in AUX_TASKS]
    if unknown:
        raise UserError(f"unknown auxiliary task {', '.join(unknown)}; choose from: {', '.join(AUX_TASKS)}")
    return names
