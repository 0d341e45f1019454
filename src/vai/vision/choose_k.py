"""Choosing k, the Transporter's keypoint count, without labels: the count whose masks agree across seeds.

VAI tunes k per task by looking at the masks; a user of an unsupervised method has no ground truth
to tune it with. The rule here needs none. For each candidate k, Transporters trained from several
seeds on the same random-policy frames each make counterfactual masks of those frames; the *agreement*
of two seeds is the IoU of their masks, and k's score is the mean agreement over seed pairs. Too few
keypoints cover a different part of the agent in each seed; too many put the spare ones on
background, again in a different place each seed; in both cases the seeds disagree. The chosen k is
the one with the highest agreement (the smaller k on a tie, to 0.01).

Example, as ``benchmarks/keypoint_count.py`` calls it::

    choice = choose_keypoints(preset, store.frames, store.episode, candidates=(8, 12, 16, 24), seeds=(0, 1))
    choice.k, choice.rows[0].agreement
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vai.presets.vision import VisionPreset
from vai.vision.keypoints import train_transporter
from vai.vision.masks import counterfactual_masks

TIE = 0.01
"""Agreements closer than this count as equal; the smaller k wins."""


@dataclass
class KeypointRow:
    """One candidate k: its seeds' masks and how well they agree."""

    k: int
    agreement: float
    """Mean IoU between the masks of every pair of seeds."""
    foreground: float
    """Mean share of pixels the masks call foreground."""
    loss: float
    """Mean final reconstruction loss of the seeds' Transporters."""
    masks: list[np.ndarray] = field(default_factory=list, repr=False)
    """The masks of each seed (bool (N, H, W)), for callers that score them further."""

    def as_dict(self) -> dict[str, float]:
        return {"k": self.k, "agreement": self.agreement, "foreground": self.foreground, "loss": self.loss}


@dataclass
class KeypointChoice:
    k: int
    rows: list[KeypointRow]


def mask_iou(first: np.ndarray, second: np.ndarray) -> float:
    """IoU of two boolean mask sets over all their pixels (1.0 when both are empty)."""
    union = np.count_nonzero(first | second)
    return np.count_nonzero(first & second) / union if union else 1.0


def choose_keypoints(
    preset: VisionPreset,
    frames: np.ndarray,
    episodes: np.ndarray,
    candidates: Sequence[int] = (8, 12, 16, 24),
    seeds: Sequence[int] = (0, 1),
    device: str = "cpu",
    masked_every: int = 4,
    log: Callable[[KeypointRow], None] | None = None,
) -> KeypointChoice:
    """Train ``len(seeds)`` Transporters per candidate k on ``frames`` (uint8 (N, 3, H, W), with their
    ``episodes``), mask every ``masked_every``-th frame and return the k whose seeds agree best.

    ``log`` receives each candidate's row as soon as it is measured.
    """
    if len(seeds) < 2:
        raise ValueError("agreement needs at least two seeds")
    if not candidates:
        raise ValueError("no candidate keypoint counts")
    scored = frames[::masked_every]
    rows = []
    for k in candidates:
        masks, losses = [], []
        for seed in seeds:
            model, metrics = train_transporter(preset, frames, episodes, k, device, seed)
            masks.append(counterfactual_masks(model, scored, preset, device=device))
            losses.append(metrics["final_loss"])
        agreement = float(np.mean([mask_iou(a, b) for a, b in itertools.combinations(masks, 2)]))
        row = KeypointRow(k, agreement, float(np.mean([m.mean() for m in masks])), float(np.mean(losses)), masks)
        rows.append(row)
        if log is not None:
            log(row)
    return KeypointChoice(best_agreement(rows), rows)


def best_agreement(rows: Sequence[KeypointRow]) -> int:
    """The k of the highest agreement; among agreements within :data:`TIE` of it, the smallest k."""
    best = max(row.agreement for row in rows)
    return min(row.k for row in rows if row.agreement >= best - TIE)
