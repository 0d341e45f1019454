"""Counterfactual foreground masks (vai.vision.masks) from a Transporter trained for real.

What is checked, honestly: on a toy video where the only moving thing is a square, a briefly
trained Transporter's counterfactual mask finds the square (IoU well above chance) and leaves a
frame with the background alone (including its static stripe) empty. That is VAI's claim in
miniature (Sec. 3.2), not a measurement on DeepMind Control; ``vai masks eval`` does that.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_keypoints import small_preset, square_frames

from vai.presets.settings import override
from vai.vision.keypoints import Transporter, train_transporter
from vai.vision.masks import counterfactual_effect, counterfactual_masks, dilate_erode


@pytest.fixture(scope="module")
def trained():
    """A Transporter that has learnt the square video (400 steps of 16 pairs at 48 px)."""
    frames, episodes, truth, background = square_frames()
    preset = small_preset(transporter_steps=400, transporter_batch=16)
    model, _ = train_transporter(preset, frames, episodes, 4, channels=8, seed=0)
    return model, preset, frames, truth, background


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    return np.count_nonzero(predicted & truth) / np.count_nonzero(predicted | truth)


def test_masks_are_booleans_of_the_whole_frame(trained):
    """VAI makes its masks on the whole 100x100 frame, whatever size the model was trained at."""
    model, preset, frames, _, _ = trained
    masks = counterfactual_masks(model, frames[:5], preset, batch=2)  # several batches, one partial
    assert masks.shape == (5, 100, 100) and masks.dtype == bool
    untrained = Transporter(keypoints=3, size=100, channels=4)  # no resize path: model size is 100
    assert counterfactual_masks(untrained, frames[:2], preset).shape == (2, 100, 100)
    assert untrained.training  # the caller's mode is restored


def test_masks_are_deterministic(trained):
    model, preset, frames, _, _ = trained
    first = counterfactual_masks(model, frames, preset, batch=16)
    second = counterfactual_masks(model, frames[::-1].copy(), preset, batch=64)[::-1]
    assert np.array_equal(first, second)  # same frames, other batching and order: same masks


def test_the_mask_finds_the_moving_square_and_not_the_static_background(trained):
    model, preset, frames, truth, background = trained
    masks = counterfactual_masks(model, frames, preset)
    assert iou(masks, truth) > 0.5, iou(masks, truth)  # about 0.8; chance is ~0.04
    covered = np.count_nonzero(masks & truth, axis=(1, 2)) / np.count_nonzero(truth, axis=(1, 2))
    assert np.median(covered) > 0.5
    # A frame with no moving object: its keypoints fall somewhere, but what they hold is background
    # that R draws from nothing anyway, so the counterfactual effect stays under the threshold.
    empty = counterfactual_masks(model, background[None], preset)
    assert np.count_nonzero(empty) <= 0.01 * empty.size


def test_higher_thresholds_give_subsets(trained):
    model, preset, frames, _, _ = trained
    masks = [counterfactual_masks(model, frames, preset, threshold=t) for t in (0.2, 0.35, 0.5)]
    assert np.all(masks[1] <= masks[0]) and np.all(masks[2] <= masks[1])
    assert np.count_nonzero(masks[2]) < np.count_nonzero(masks[0])
    default = counterfactual_masks(model, frames, preset)
    assert np.array_equal(default, masks[1])  # preset.mask_threshold is 0.35


def test_dilation_grows_and_erosion_shrinks(trained):
    model, preset, frames, _, _ = trained
    plain = counterfactual_masks(model, frames, preset)
    dilated = counterfactual_masks(model, frames, preset, morphology=2)
    eroded = counterfactual_masks(model, frames, preset, morphology=-1)
    assert np.all(plain <= dilated) and np.count_nonzero(dilated) > np.count_nonzero(plain)
    assert np.all(eroded <= plain) and np.count_nonzero(eroded) < np.count_nonzero(plain)


def test_the_presets_morphology_is_the_default(trained):
    model, preset, frames, _, _ = trained
    dilating = override(preset, ["mask_morphology=2"])
    assert np.array_equal(
        counterfactual_masks(model, frames, dilating), counterfactual_masks(model, frames, preset, morphology=2)
    )
    assert np.array_equal(
        counterfactual_masks(model, frames, dilating, morphology=0), counterfactual_masks(model, frames, preset)
    )


def test_dilate_erode_moves_a_square_edge_by_one_pixel_per_step():
    square = torch.zeros(1, 1, 12, 12, dtype=torch.bool)
    square[..., 4:8, 4:8] = True
    assert int(dilate_erode(square, 1).sum()) == 36
    assert int(dilate_erode(square, 2).sum()) == 64
    assert int(dilate_erode(square, -1).sum()) == 4
    full = torch.ones(1, 1, 5, 5, dtype=torch.bool)
    assert bool(dilate_erode(full, -1).all())  # the image border is not background


def test_the_effect_of_the_null_feature_map_is_zero():
    """If Φ outputs zeros, the keypoint-masked map is the null map: the effect must be exactly 0.

    This pins the subtraction of R(0) (the controlled direct effect), whatever R draws from zeros.
    """
    torch.manual_seed(0)
    model = Transporter(keypoints=2, size=32, channels=4).eval()
    with torch.no_grad():
        model.encoder[-3].weight.zero_()  # last conv of Φ: features become constant
        model.encoder[-2].weight.zero_()  # and its batch norm maps them to 0 (β = 0)
        effect = counterfactual_effect(model, torch.rand(3, 3, 32, 32))
    assert effect.shape == (3, 1, 32, 32)
    assert float(effect.max()) == 0.0


def test_the_effect_is_vais_signed_difference_under_the_widened_max_map():
    """R(Φ · max_k H_k) - R(0) with mask-time Gaussians of width 0.25 (VAI), the maximum over
    colour channels, no absolute value; computed here step by step on a random model."""
    torch.manual_seed(1)
    model = Transporter(keypoints=4, size=32, channels=4, keypoint_std=0.1).eval()
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        features = model.encode(images)
        coords, _ = model.keypoints(images)
        side = features.shape[-2:]
        dy = torch.linspace(-1, 1, side[0]).view(1, 1, -1, 1) - coords[..., 1, None, None]
        dx = torch.linspace(-1, 1, side[1]).view(1, 1, 1, -1) - coords[..., 0, None, None]
        widened = torch.exp(-(dx**2 + dy**2) / 0.25**2).amax(dim=1, keepdim=True)
        expected = (model.decode(features * widened) - model.decode(torch.zeros_like(features[:1]))).amax(1, True)
        effect = counterfactual_effect(model, images, std=0.25)
        narrow = counterfactual_effect(model, images, std=0.1)
        magnitude = counterfactual_effect(model, images, std=0.25, absolute=True)
    assert torch.allclose(effect, expected, atol=1e-5)
    assert not torch.allclose(effect, narrow, rtol=0.1, atol=0)  # the mask-time width matters
    assert torch.all(magnitude >= effect - 1e-6)
    # Signed: make R's null drawing bright (a positive bias in its last block) and its last
    # convolution negative, so features under keypoints make R draw darker than from nothing.
    with torch.no_grad():
        conv, norm = model.refiner.full_stage[-3], model.refiner.full_stage[-2]
        conv.weight.copy_(-conv.weight.abs())
        norm.bias.fill_(1.0)
        darker = counterfactual_effect(model, images)
        darker_magnitude = counterfactual_effect(model, images, absolute=True)
    assert float(darker.max()) <= 0 < float(darker_magnitude.max())  # never foreground unless absolute


def test_the_presets_mask_width_and_sign_are_the_defaults(trained):
    model, preset, frames, _, _ = trained
    assert (preset.mask_keypoint_std, preset.mask_abs_effect) == (0.25, False)  # VAI's values
    default = counterfactual_masks(model, frames, preset)
    narrow = counterfactual_masks(model, frames, override(preset, ["mask_keypoint_std=0.1"]))
    absolute = counterfactual_masks(model, frames, override(preset, ["mask_abs_effect=true"]))
    assert not np.array_equal(default, narrow)
    assert np.all(default <= absolute)  # |effect| > t wherever effect > t
