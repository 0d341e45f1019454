"""How good a mask is, against the ground truth: IoU, precision and recall of the foreground.

Counts are summed over all pixels of all frames before dividing (micro-average), so large and small
frames weigh by their pixels and an empty prediction on an empty truth does not count as perfect.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class MaskScores:
    """Foreground scores of predicted masks against ground-truth masks."""

    iou: float
    """|pred ∩ truth| / |pred ∪ truth|."""
    precision: float
    """|pred ∩ truth| / |pred|: how much of what was kept is agent (1 - leaked background share)."""
    recall: float
    """|pred ∩ truth| / |truth|: how much of the agent was kept."""
    frames: int
    foreground_fraction: float
    """Share of pixels that are foreground in the truth (for context: how small the agent is)."""

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def mask_scores(predicted: np.ndarray, truth: np.ndarray) -> MaskScores:
    """Scores of boolean masks of equal shape (..., H, W); the leading axes are frames."""
    predicted = np.asarray(predicted, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if predicted.shape != truth.shape:
        raise ValueError(f"mask shapes differ: predicted {predicted.shape}, truth {truth.shape}")
    overlap = np.count_nonzero(predicted & truth)
    predicted_count = np.count_nonzero(predicted)
    truth_count = np.count_nonzero(truth)
    union = predicted_count + truth_count - overlap
    frames = int(np.prod(predicted.shape[:-2])) if predicted.ndim > 2 else 1
    return MaskScores(
        iou=overlap / union if union else float("nan"),
        precision=overlap / predicted_count if predicted_count else float("nan"),
        recall=overlap / truth_count if truth_count else float("nan"),
        frames=frames,
        foreground_fraction=truth_count / truth.size if truth.size else float("nan"),
    )
