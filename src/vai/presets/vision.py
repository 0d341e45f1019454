"""The vision presets: every setting of VAI's steps 0-2 (collect, keypoints, adapter) per compute budget."""

from __future__ import annotations

from dataclasses import dataclass

from vai.presets.settings import named_preset, setting


@dataclass(frozen=True)
class VisionPreset:
    """Every setting of VAI's steps 0-2 (collect, keypoints, adapter) for one compute budget.

    Each field's docstring gives VAI's value (its public code, ``train_stage1.py`` and
    ``train_stage2.py``); ``docs/fidelity.md`` lists where ``quick`` differs and why. A field without
    a :func:`~vai.presets.settings.setting` takes numbers > 0; one with says what it takes.
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
    transporter_lr_decay: float = setting(0.95, maximum=1)
    """Multiplied into the learning rate every ``transporter_lr_every`` steps (VAI: 0.95)."""
    transporter_lr_every: int = 200
    """(VAI: 200)."""
    keypoint_std: float = 0.1
    """Width of the Gaussian keypoint maps in training, exp(-d^2 / std^2) in the [-1, 1] coordinate
    units (VAI: 0.1)."""
    transporter_restarts: int = setting(0, minimum=0)
    """Transporters trained again from other seeds when the masks of one collapse (``vai.vision.health``);
    the first healthy one is kept, else the least collapsed (VAI: 0, it keeps the one it trained; the
    check itself always runs and reports)."""
    max_pair_gap: int = 20
    """A training pair's target is 0 to this - 1 steps after its source, same episode (VAI: 20)."""
    mask_keypoint_std: float = 0.25
    """Width of the Gaussian keypoint maps when the counterfactual masks are made (VAI: 0.25, wider
    than in training, so a keypoint's map covers the body part it sits on)."""
    mask_abs_effect: bool = False
    """Threshold the magnitude of the counterfactual effect instead of its signed value (VAI's
    ``abs_comparison``: off)."""
    mask_threshold: float = setting(0.35, minimum=0, maximum=1)
    """Threshold on the counterfactual effect (VAI: 0.35; it found 0.35-0.5 stable)."""
    mask_morphology: int = setting(0, signed=True)
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
    adapter_lr_decay: float = setting(0.95, maximum=1)
    """Multiplied into the adapter's learning rate every ``adapter_lr_every`` steps (VAI: 0.95)."""
    adapter_lr_every: int = 200
    """(VAI: 200)."""
    adapter_norm: str = setting("batch", choices=("batch", "group"))
    """Normalisation in the adapter's blocks: ``batch`` (VAI; running statistics at inference, so
    a frame's mask depends on that frame alone) or ``group`` (GroupNorm with 4 groups, whose
    statistics come from the frame being masked, background included)."""
    adapter_output: str = setting("clamp", choices=("clamp", "sigmoid"))
    """The adapter's output: ``clamp`` (VAI: its last block's ReLU, upsampled, clamped to [0, 1], so
    background can be exactly 0) or ``sigmoid`` (a linear head through a sigmoid, never 0)."""
    pos_weight: float = 15.0
    """Missing foreground costs this many times more than leaked background (VAI: 15)."""
    feature_weight: float = setting(0.5, minimum=0)
    """Weight of the feature-consistency term between distracted and clean inputs (VAI: 0.5)."""
    adapter_coherent_stack: bool = False
    """Share the background draws (choice, colour, natural image, alpha, boxes) across the 3 frames
    of a stack, a static scene behind a moving agent (VAI: off, every frame draws its own)."""
    adapter_boxes: int = setting(0, minimum=0)
    """Boxes of random colour painted on the background of the adapter's distracted inputs (VAI's
    optional ``add_random_boxes``: 5 boxes when on; 0, off, as VAI's default)."""
    adapter_box_mean: float = setting(5.0, minimum=0)
    """A box's side is int(N(mean, std)) clamped to [``adapter_box_min``, ``adapter_box_max``] px, one
    side per box for the batch (VAI: N(5, 5) in 1..10)."""
    adapter_box_std: float = setting(5.0, minimum=0)
    adapter_box_min: int = 1
    adapter_box_max: int = 10
    adapter_hue_mean: float = setting(-0.015, signed=True)
    """Colour jitter of the distracted inputs' whole frames, one draw per stack: hue shift ~ N(mean,
    std) in turns of the colour circle (VAI: N(-0.015, 0.015), ``augment_frames``)..."""
    adapter_hue_std: float = setting(0.015, minimum=0)
    adapter_brightness_std: float = setting(0.08, minimum=0)
    """... brightness, contrast and saturation factors ~ N(1, std) (VAI: 0.08, 0.08, 0.05); a std of 0
    skips that jitter."""
    adapter_contrast_std: float = setting(0.08, minimum=0)
    adapter_saturation_std: float = setting(0.05, minimum=0)
    adapter_original_prob: float = setting(0.3, minimum=0, maximum=1)
    """How often a frame's base background is its jittered original, a uniform random colour, or the
    foreground's mean colour plus N(0, ``adapter_confusing_std``) per channel (VAI: 0.3, 0.5, 0.2 and
    0.2, ``generate_pairs``); the three add up to 1."""
    adapter_color_prob: float = setting(0.5, minimum=0, maximum=1)
    adapter_confusing_prob: float = setting(0.2, minimum=0, maximum=1)
    adapter_confusing_std: float = setting(0.2, minimum=0)
    adapter_base_weight: float = setting(0.5, minimum=0)
    """The base background is multiplied by this (VAI: 0.5)..."""
    adapter_noise_level: float = setting(0.1, minimum=0)
    """... and this x U(0, 1) noise is added to each of its pixels (VAI: 0.1)."""
    adapter_natural_prob: float = setting(1.0, minimum=0, maximum=1)
    """How often a natural image of the pool is blended over the background (VAI: always,
    ``augment_background_with_data``), with alpha ~ U(low, high) (VAI: U(0, 1))."""
    adapter_alpha_low: float = setting(0.0, minimum=0, maximum=1)
    adapter_alpha_high: float = setting(1.0, minimum=0, maximum=1)
    adapter_crop_scale: tuple[float, float] = setting((0.08, 1.0), maximum=1)
    """The natural image's crop covers U(low, high) of the pool image's area (VAI: ``RandomResizedCrop``'s
    0.08-1; on the command line ``adapter_crop_scale=0.5,1``)..."""
    adapter_crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    """... at an aspect ratio log-uniform in (low, high) (VAI: ``RandomResizedCrop``'s 3/4-4/3)."""
    adapter_threshold: float = setting(0.5, minimum=0, maximum=1)
    """Adapter probability above which a pixel counts as foreground when masks are scored; the agent
    multiplies the probability itself into its observation, so this cut only affects the scores."""
    mask_eval_episodes: int = 3
    """``vai run``'s mask measurement: seeded random-policy episodes per mode..."""
    mask_eval_steps: int = 50
    """... of this many steps each."""

    def __post_init__(self) -> None:
        """ValueError for settings that contradict each other."""
        chances = self.adapter_original_prob + self.adapter_color_prob + self.adapter_confusing_prob
        if abs(chances - 1) > 1e-6:
            raise ValueError(
                f"adapter_original_prob + adapter_color_prob + adapter_confusing_prob must be 1, not {chances:g}"
            )
        for low, high in (
            ("adapter_box_min", "adapter_box_max"),
            ("adapter_alpha_low", "adapter_alpha_high"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} must be at most {high}")
        for pair in ("adapter_crop_scale", "adapter_crop_ratio"):
            low, high = getattr(self, pair)
            if low > high:
                raise ValueError(f"{pair} must be (low, high), not ({low:g}, {high:g})")


VISION_PRESETS: dict[str, VisionPreset] = {
    "paper": VisionPreset("paper"),
    "quick": VisionPreset(
        "quick",
        collect_frames=2000,
        transporter_size=64,
        transporter_batch=16,
        transporter_channels=16,
        transporter_steps=1500,
        transporter_lr_every=114,
        transporter_restarts=2,
        adapter_batch=32,
        adapter_steps=400,
        adapter_lr_every=30,
        mask_eval_episodes=2,
    ),
}
"""``paper``: VAI's settings, meant for a GPU. ``quick``: the same algorithm sized for a 2-core CPU
(``vai run --preset quick``, vision and RL, in 15-20 minutes): fewer frames, a smaller, narrower
Transporter trained half as many steps, fewer and smaller batches, learning-rate decay on the same
schedule relative to the run's length, and up to two Transporter restarts where the masks collapse;
its masks are coarser (``docs/benchmarks.md``; the choices and how they were validated:
``docs/fidelity.md``)."""


def get_vision_preset(name: str) -> VisionPreset:
    """The preset called ``name``; a :class:`UserError` naming the presets for another name."""
    return named_preset(VISION_PRESETS, name)
