"""The RL presets: every setting of the agent and its training loop (VAI step 3) per compute budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vai.presets.settings import named_preset, setting
from vai.tasks import COMPOSITING, DEFAULT_ENCODER_LAYERS, ENCODER_LAYERS

ALGORITHMS = ("vai", "sac", "drq", "svea")
"""``vai``: frozen adapter in front, adapt_aug; ``sac``: no adapter (random crop only); ``drq``: random
shift (DrQ / RAD style); ``svea``: random convolution, clean and augmented Q targets mixed (SVEA)."""

AUX_TASKS = ("inverse", "reward", "rotation")
"""PAD's self-supervised heads on the shared encoder layers."""


def aux_task_names(heads: str | Sequence[str]) -> tuple[str, ...]:
    """PAD heads as a tuple, from a sequence of names or comma-separated text (as older checkpoints and
    ``run.json`` records hold them); ValueError naming the heads for an unknown one."""
    names = heads.split(",") if isinstance(heads, str) else heads
    names = tuple(name.strip() for name in names if name.strip())
    unknown = [name for name in names if name not in AUX_TASKS]
    if unknown:
        raise ValueError(f"unknown auxiliary task {', '.join(unknown)}; choose from: {', '.join(AUX_TASKS)}")
    return names


@dataclass(frozen=True)
class RLPreset:
    """Every setting of the agent and its training loop (SAC as in PAD and VAI, pytorch_sac_ae lineage).

    Each field's docstring gives VAI's value (its public code: ``train.py``, ``arguments.py``,
    ``agent/agent.py``, ``agent/encoder.py``, ``utils.py`` and its training command, which passes
    ``--use_inv --update_rewards --adapt_aug``). Run lengths and intervals count *agent steps*: each
    agent step repeats its action for the task's ``action_repeat`` simulator frames. A field without
    a :func:`~vai.presets.settings.setting` takes numbers > 0; one with says what it takes.
    """

    name: str
    train_steps: int = 500_000
    """Agent steps of training, for every task whatever its action repeat (VAI: 500,000, ``--train_steps``;
    simulator frames = agent steps x action repeat)."""
    init_steps: int = setting(1000, minimum=0)
    """Agent steps of uniformly random actions before the first update (VAI: 1000)."""
    init_burst: bool = True
    """At agent step ``init_steps``, make ``init_steps`` updates at once, each numbered as that step (so
    the actor's, target's and heads' schedules count them as VAI does), then ``updates_per_step`` per
    step (VAI: on, ``train.py``)."""
    replay_capacity: int = setting(0, minimum=0)
    """Transitions the replay buffer keeps, the newest; 0 means ``train_steps // 2`` (VAI's rule,
    ``train.py``: 250,000 for 500,000 steps)."""
    batch_size: int = 128
    """Transitions per update (VAI: 128)."""
    updates_per_step: int = 1
    """Agent updates per environment step after the random phase (the update-to-data ratio; PAD /
    VAI: 1). More updates per step learn more from each frame where frames are the expensive part."""
    discount: float = setting(0.99, maximum=1)
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
    num_layers: int = setting(0, minimum=0)
    """Conv layers of the encoder; 0 takes the task's from ENCODER_LAYERS (VAI: 4, finger 11)."""
    num_shared_layers: int = setting(0, minimum=0)
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
    actor_log_std_min: float = setting(-10.0, signed=True)
    """(VAI: -10)."""
    actor_log_std_max: float = setting(2.0, signed=True)
    """(VAI: 2)."""
    critic_tau: float = setting(0.01, maximum=1)
    """Target Q heads move this far towards the critic's (VAI: 0.01)."""
    encoder_tau: float = setting(0.05, maximum=1)
    """Target encoder moves this far towards the critic's (VAI: 0.05)."""
    actor_update_every: int = 2
    """Updates between actor and temperature steps (VAI: 2, ``--actor_update_freq``)."""
    target_update_every: int = 2
    """Updates between target moves (VAI: 2, ``--critic_target_update_freq``)."""
    actor_reuses_critic_trunk: bool = False
    """The actor's step reuses the conv output the critic's step computed (before the critic's
    optimiser step, with that pass's augmentation), saving two conv passes; off: it encodes the batch
    again with the updated convs and a fresh adapt_aug (VAI: off, ``update_actor_and_alpha``)."""
    aux_tasks: tuple[str, ...] = setting(("inverse", "reward"), choices=AUX_TASKS)
    """PAD heads trained with the agent, any of :data:`AUX_TASKS` or none (VAI: inverse and reward,
    ``--use_inv --update_rewards``); on the command line ``aux_tasks=inverse,reward`` (none:
    ``aux_tasks=``)."""
    aux_lr: float = 1e-3
    """Adam learning rate of the heads and their encoder (VAI: 1e-3 for each, ``--ss_lr``,
    ``--reward_lr``, ``--encoder_lr``)."""
    aux_update_every: int = 2
    """Updates between steps of the heads (VAI: 2, ``--ss_update_freq``)."""
    aux_encoder_init: str = setting("default", choices=("default", "orthogonal"))
    """Initialisation of the heads' own encoder layers (their convs beyond the shared ones and their
    projection): PyTorch's ``default`` (VAI: its ``ss_encoder`` is left out of ``weight_init``) or
    SAC-AE's ``orthogonal``, as the actor, the critic and the heads' MLPs have in both."""
    adapt_boxes: int = setting(15, minimum=0)
    """VAI's adapt_aug (vai only): boxes of random colour painted on every frame of the adapted
    observation, each frame at its own places (VAI: 15, ``encoder.py``); 0: none."""
    adapt_box_std: float = setting(2.0, minimum=0)
    """A box's side is int(N(0, this)) clamped to ``[1, adapt_box_max]`` px (at ``downsample`` d:
    divided by d, at least 1), one side per box for the whole batch (VAI: 2, so 84% are 1 px)."""
    adapt_box_max: int = 5
    """Largest box side in px at full resolution (VAI: 5)."""
    adapt_noise: float = setting(0.005, minimum=0)
    """VAI's adapt_aug: std of the Gaussian noise added to every pixel, with no clamp after (VAI: 0.005)."""
    adapt_noise_bank: bool = False
    """On a CPU, adapt_aug's noise is a window at a random offset of a fixed bank of N(0, 1) values
    (:data:`vai.rl.observe.NOISE_BANK_VIEWS` training batches' worth, made once from a fixed seed):
    every value is N(0, 1) but the windows of different passes overlap. Drawing a million normals per
    encoder pass costs a CPU milliseconds; a GPU always draws afresh (VAI: off, fresh noise every pass)."""
    adapt_aug_when_acting: bool = True
    """adapt_aug also when the agent acts in training and in the evaluations during training, as every
    pass through VAI's encoder augments (VAI: on); ``vai eval`` never augments (VAI's ``eval.py``)."""
    svea_alpha: float = setting(0.5, minimum=0)
    """Weight of the clean Q loss in SVEA; the augmented one gets ``svea_beta``."""
    svea_beta: float = setting(0.5, minimum=0)
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
    video_compositing: str = setting("greenscreen", choices=COMPOSITING)
    """How every evaluation of the agent puts the video behind it in ``video_easy`` / ``video_hard``:
    DMControl-GB's green screen and key (VAI: ``greenscreen``, ``env/dmc_wrappers.py``) or exactly the
    pixels segmentation marks (``segmentation``; see :mod:`vai.envs.distractions`)."""

    def __post_init__(self) -> None:
        """``aux_tasks`` as a tuple of known heads, whatever sequence it is given as (a JSON list, or
        the comma-separated text of older checkpoints and records); ValueError for an unknown head."""
        object.__setattr__(self, "aux_tasks", aux_task_names(self.aux_tasks))


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
        adapt_noise_bank=True,
        aux_encoder_init="orthogonal",
    ),
}
"""``paper``: VAI's settings for a GPU. ``quick``: the same algorithm sized for a 2-core CPU and a few
thousand updates (3000 agent steps: 24,000 frames of cartpole): 42-px views of a 2-layer, 16-filter
encoder, and values that settle within such a run: discount 0.9, 3-step returns and a target critic
that moves by 0.05 every step, where the paper's 0.99, one-step returns and 0.01 every 2 steps need
tens of thousands of updates (``docs/fidelity.md`` lists each difference and why). Evaluations during
training are few (start, middle, end): each renders as much as a few hundred training steps."""


OLDER_RECORDS = {
    "adapter_per_crop": False,
    "adapt_noise_bank": True,
    "video_compositing": "segmentation",
    "aux_encoder_init": "orthogonal",
}
"""What an agent saved before one of these fields existed ran with: it stored adapted frames, took its
CPU noise from the bank, was evaluated on segmentation compositing and initialised every layer
orthogonally."""


def preset_from_record(settings: dict) -> RLPreset:
    """The preset a checkpoint or bundle stored as a dict (tuples as JSON lists, fields added since
    taking their :data:`OLDER_RECORDS` value); TypeError or ValueError for one that is not a preset."""
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in settings.items()}
    return RLPreset(**{**OLDER_RECORDS, **values})


def get_rl_preset(name: str) -> RLPreset:
    """The preset called ``name``; a :class:`UserError` naming the presets for another name."""
    return named_preset(RL_PRESETS, name)


def encoder_layers(task: str, preset: RLPreset) -> tuple[int, int]:
    """(conv layers, shared layers) of ``task`` under ``preset`` (the preset's, when set)."""
    layers, shared = ENCODER_LAYERS.get(task, DEFAULT_ENCODER_LAYERS)
    layers = preset.num_layers or layers
    shared = min(preset.num_shared_layers or shared, layers)
    return layers, shared


def replay_transitions(preset: RLPreset) -> int:
    """Transitions the replay buffer keeps: ``replay_capacity``, or VAI's ``train_steps // 2`` (at least 1)."""
    return max(1, preset.replay_capacity or preset.train_steps // 2)
