"""Has a Transporter collapsed? Checks of its counterfactual masks without labels, for the keypoints stage's restarts.

A Transporter that does not learn to track the agent still gives masks: the same blobs of
background in every frame, most of the frame, or nothing. Nothing downstream notices (the adapter
learns whatever it is shown), so the keypoints stage checks the masks against what the frames alone
say about the foreground, with no label:

- the agent moves and the camera's background mostly does not: the median of the random-policy
  frames is the background, and masks made mostly of pixels that look like it (*static* pixels)
  mark background;
- masks that cover most of the frame, or almost none of it, mark no object;
- masks that mark the same pixels in every frame do not follow anything that moves.

A check that fails names itself in one line (``MaskHealth.summary``). The keypoints stage then trains
again from another seed, up to the preset's ``transporter_restarts`` times, and keeps the first
healthy Transporter, else the least collapsed one (:meth:`MaskHealth.badness`); the run's record
says what each attempt measured and which one it kept.

Beside the checks, ``coverage`` (the share of pixels that differ from the median frame that the masks
mark) estimates recall without labels under a still camera; it is reported, not checked.

The limits are design constants, one value for every task, validated against ground-truth masks in
``train`` only (``docs/fidelity.md``, the validation protocol).

Example::

    health = mask_health(masks, store.frames)  # masks: counterfactual_masks(model, store.frames, preset)
    if health.collapsed:
        print(health.summary())
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MOST_FOREGROUND = 0.5
"""Masks covering more than this share of the frame, on average, mark no object."""
LEAST_FOREGROUND = 0.001
"""Masks covering less than this share of the frame (10 pixels of 100x100), on average, are empty."""
MOST_STATIC = 0.5
"""Masks whose pixels are more than this share static (like the collection's median frame) mark background."""
MOST_CONSTANT = 0.85
"""Masks whose pixels are marked in more than this share of the frames, on average, do not move."""
CHANGE = 25
"""A pixel differs from the background where some colour channel differs by more than this many levels (of 255)."""


@dataclass(frozen=True)
class MaskHealth:
    """What the frames alone say about a set of counterfactual masks (all shares in [0, 1])."""

    foreground: float
    """Mean share of the frame the masks mark."""
    static: float
    """Share of the marked pixels that look like the collection's median frame (background under a still camera)."""
    constancy: float
    """Mean, over marked pixels, of the share of frames that mark the same pixel (1: one mask for every frame)."""
    moving: float
    """Mean share of a frame's pixels that differ from the collection's median frame (for context)."""
    coverage: float = float("nan")
    """Share of those differing pixels the masks mark: a proxy for recall under a still camera, comparable
    between Transporters of one collection (a moving camera's background differs too, so not across tasks).
    Reported, not checked."""

    @property
    def problems(self) -> list[str]:
        """One phrase per failed check; empty for healthy masks."""
        found = []
        if self.foreground > MOST_FOREGROUND:
            found.append(f"masks cover {self.foreground:.0%} of the frame (> {MOST_FOREGROUND:.0%})")
        if self.foreground < LEAST_FOREGROUND:
            found.append(f"masks are empty ({self.foreground:.2%} of the frame)")
        if self.static > MOST_STATIC:
            share = f"{self.static:.0%} of the masked pixels"
            found.append(f"{share} look like the median frame (> {MOST_STATIC:.0%}): background")
        if self.constancy > MOST_CONSTANT:
            found.append(f"masks hardly move between frames (constancy {self.constancy:.2f} > {MOST_CONSTANT})")
        return found

    @property
    def collapsed(self) -> bool:
        return bool(self.problems)

    def badness(self) -> float:
        """How far the masks are past the limits (0 when healthy): picks the least collapsed of several."""
        over = (
            max(0.0, self.foreground - MOST_FOREGROUND) / MOST_FOREGROUND,
            max(0.0, LEAST_FOREGROUND - self.foreground) / LEAST_FOREGROUND,
            max(0.0, self.static - MOST_STATIC) / (1 - MOST_STATIC),
            max(0.0, self.constancy - MOST_CONSTANT) / (1 - MOST_CONSTANT),
        )
        return float(sum(over))

    def summary(self) -> str:
        """One line: healthy, or what collapsed."""
        if not self.collapsed:
            return (
                f"masks healthy: {self.foreground:.1%} of the frame, {self.static:.0%} static, "
                f"constancy {self.constancy:.2f}, covering {self.coverage:.0%} of what moves"
            )
        return "collapsed: " + "; ".join(self.problems)

    def as_dict(self) -> dict:
        """The figures, the verdict and its one line, as keypoints.json records them."""
        return {**asdict(self), "collapsed": self.collapsed, "problems": self.problems, "summary": self.summary()}


def background_frame(frames: np.ndarray, sample: int = 500) -> np.ndarray:
    """The collection's per-pixel median frame (3, H, W) of uint8 frames (N, 3, H, W), from at most
    ``sample`` frames spread over it: what a still camera sees behind the moving agent."""
    frames = np.asarray(frames)
    chosen = frames[np.linspace(0, len(frames) - 1, min(sample, len(frames))).astype(int)]
    return np.median(chosen, axis=0)


def differing(frames: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Pixels (N, H, W) of uint8 frames (N, 3, H, W) whose colour differs from ``background`` (3, H, W)
    by more than :data:`CHANGE` levels in some channel."""
    return (np.abs(np.asarray(frames, dtype=np.float32) - background).max(axis=1)) > CHANGE


def mask_health(masks: np.ndarray, frames: np.ndarray) -> MaskHealth:
    """Unsupervised checks of masks (N, H, W) bool made of uint8 frames (N, 3, H, W) of one collection."""
    masks = np.asarray(masks, dtype=bool)
    frames = np.asarray(frames)
    if masks.ndim != 3 or frames.ndim != 4 or masks.shape != (len(frames), *frames.shape[-2:]):
        raise ValueError(f"masks {masks.shape} do not match frames {frames.shape}")
    marked = int(np.count_nonzero(masks))
    background = background_frame(frames)
    static = moving = covered = 0
    for start in range(0, len(frames), 512):  # bounded memory for large collections
        moved = differing(frames[start : start + 512], background)
        static += int(np.count_nonzero(masks[start : start + 512] & ~moved))
        covered += int(np.count_nonzero(masks[start : start + 512] & moved))
        moving += int(np.count_nonzero(moved))
    static = static / marked if marked else 0.0
    how_often = masks.mean(axis=0)  # per pixel: share of frames that mark it
    constancy = float((how_often * how_often).sum() * len(masks)) / marked if marked else 0.0
    return MaskHealth(
        foreground=float(masks.mean()),
        static=static,
        constancy=constancy,
        moving=moving / masks.size,
        coverage=covered / moving if moving else 0.0,
    )
