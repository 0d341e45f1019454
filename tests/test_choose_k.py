"""Choosing the keypoint count without labels (vai.vision.choose_k), on the toy square video."""

from __future__ import annotations

import numpy as np
import pytest
from test_keypoints import small_preset, square_frames

from vai.vision.choose_k import KeypointRow, best_agreement, choose_keypoints, mask_iou


def test_mask_iou_counts_all_pixels_of_all_frames():
    first = np.zeros((2, 4, 4), bool)
    second = np.zeros((2, 4, 4), bool)
    assert mask_iou(first, second) == 1.0  # both empty: they agree
    first[0, :2] = True  # 8 pixels
    second[0, 1:3] = True  # 8 pixels, 4 shared
    assert mask_iou(first, second) == pytest.approx(4 / 12)


def test_the_highest_agreement_wins_and_the_smaller_k_on_a_tie():
    rows = [KeypointRow(8, 0.60, 0.1, 0.01), KeypointRow(12, 0.70, 0.1, 0.01), KeypointRow(16, 0.695, 0.1, 0.01)]
    assert best_agreement(rows) == 12
    rows.append(KeypointRow(4, 0.705, 0.1, 0.01))  # within 0.01 of the best: the smaller k
    assert best_agreement(rows) == 4


def test_choose_keypoints_trains_each_seed_and_scores_their_agreement():
    frames, episodes, _, _ = square_frames(count=32)
    preset = small_preset(transporter_size=32, transporter_batch=4, transporter_steps=4, max_pair_gap=4)
    logged = []
    choice = choose_keypoints(preset, frames, episodes, (1, 3), (0, 1), masked_every=2, log=logged.append)
    assert [row.k for row in choice.rows] == [1, 3] and logged == choice.rows
    for row in choice.rows:
        assert len(row.masks) == 2 and row.masks[0].shape == (16, 100, 100)
        assert row.agreement == pytest.approx(mask_iou(*row.masks))
        assert 0.0 <= row.foreground <= 1.0 and row.loss > 0
    assert choice.k == best_agreement(choice.rows)
    with pytest.raises(ValueError, match="two seeds"):
        choose_keypoints(preset, frames, episodes, (1,), (0,))
