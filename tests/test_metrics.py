"""Mask scores on hand-made masks whose IoU, precision and recall are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vai.vision.metrics import mask_scores


def test_scores_of_overlapping_squares():
    truth = np.zeros((2, 10, 10), dtype=bool)
    predicted = np.zeros_like(truth)
    truth[:, 2:6, 2:6] = True  # 16 pixels per frame
    predicted[:, 4:8, 2:6] = True  # 16 pixels, 8 of them on the truth
    scores = mask_scores(predicted, truth)
    assert scores.iou == pytest.approx(8 / 24)
    assert scores.precision == pytest.approx(0.5)
    assert scores.recall == pytest.approx(0.5)
    assert scores.frames == 2
    assert scores.foreground_fraction == pytest.approx(0.16)


def test_perfect_and_empty_predictions():
    truth = np.zeros((3, 8, 8), dtype=bool)
    truth[:, 1:3, 1:3] = True
    perfect = mask_scores(truth, truth)
    assert (perfect.iou, perfect.precision, perfect.recall) == (1.0, 1.0, 1.0)
    empty = mask_scores(np.zeros_like(truth), truth)
    assert empty.iou == 0.0 and empty.recall == 0.0 and math.isnan(empty.precision)


def test_counts_are_summed_over_frames_not_averaged_per_frame():
    truth = np.zeros((2, 10, 10), dtype=bool)
    truth[0] = True  # a frame full of agent, predicted perfectly
    truth[1, 0, 0] = True  # a frame with one agent pixel, missed
    predicted = truth.copy()
    predicted[1, 0, 0] = False
    assert mask_scores(predicted, truth).recall == pytest.approx(100 / 101)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shapes differ"):
        mask_scores(np.zeros((2, 4, 4)), np.zeros((2, 5, 5)))


def test_undefined_scores_are_written_as_standard_json_and_shown_as_dashes(tmp_path):
    import json

    from vai.atomic import write_json_atomic
    from vai.vision.evaluate import markdown_table, sweep_table

    truth = np.zeros((1, 8, 8), dtype=bool)
    truth[0, 2:4, 2:4] = True
    empty = mask_scores(np.zeros_like(truth), truth).as_dict()  # precision 0 / 0
    document = {"results": {"train": {"adapter": empty}}, "adapter_by_threshold": {"train": {"0.5": empty}}}
    path = write_json_atomic(document, tmp_path / "masks_eval.json")

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    loaded = json.loads(path.read_text(), parse_constant=refuse)
    assert loaded["results"]["train"]["adapter"]["precision"] is None
    assert loaded["results"]["train"]["adapter"]["recall"] == 0.0
    assert "| 0.000 / - / 0.000 |" in sweep_table(loaded["adapter_by_threshold"], "sweep")
    assert "| train | adapter | 0.000 | - | 0.000 | 1 |" in markdown_table({"train": {"adapter": empty}}, "in memory")
