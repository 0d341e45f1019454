"""Crops: the centre window the policy sees and the random windows training draws, as PAD and VAI cut them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vai.crops import center_crop, crop_at, random_crop


def coordinates(batch: int, frames: int = 3, size: int = 100) -> torch.Tensor:
    """Test images whose pixel (r, c) holds r * size + c in every channel of every frame."""
    grid = torch.arange(size * size, dtype=torch.float32).reshape(1, 1, size, size)
    return grid.expand(batch, 3 * frames, size, size).contiguous()


def test_random_crop_is_one_window_per_stack_at_varied_places():
    images = coordinates(64)
    crops = random_crop(images, 84, torch.Generator().manual_seed(0))
    assert crops.shape == (64, 9, 84, 84)
    corner = crops[:, :, 0, 0]
    assert torch.equal(corner, corner[:, :1].expand_as(corner))  # all 9 channels cut at one place
    assert len(set(corner[:, 0].tolist())) > 20
    # Each crop is a contiguous window: the pixel right/below the corner follows on.
    assert torch.equal(crops[:, 0, 0, 1], corner[:, 0] + 1) and torch.equal(crops[:, 0, 1, 0], corner[:, 0] + 100)


def test_random_crop_corners_are_0_to_15_as_pad_and_vai_draw_them():
    # utils.random_crop draws corners in [0, 100 - 84): the window touching the edge (16) never comes.
    corner = random_crop(coordinates(4000, frames=1), 84, torch.Generator().manual_seed(1))[:, 0, 0, 0]
    tops, lefts = corner // 100, corner % 100
    assert set(tops.tolist()) == set(range(16)) and set(lefts.tolist()) == set(range(16))
    assert torch.equal(random_crop(coordinates(2), 100), coordinates(2))  # nothing to crop: whole


def test_crop_at_and_center_crop_agree():
    images = coordinates(2)
    centre = torch.full((2,), 8)
    assert torch.equal(crop_at(images, centre, centre, 84), center_crop(images, 84))


def test_crop_at_takes_each_images_window():
    images = torch.arange(2 * 1 * 5 * 5).reshape(2, 1, 5, 5)
    out = crop_at(images, torch.tensor([0, 2]), torch.tensor([1, 0]), 3)
    assert torch.equal(out[0], images[0, :, 0:3, 1:4]) and torch.equal(out[1], images[1, :, 2:5, 0:3])


def test_center_crop_cuts_numpy_masks_and_frames_as_tensors():
    frames = np.arange(2 * 3 * 100 * 100).reshape(2, 3, 100, 100)
    assert np.array_equal(center_crop(frames, 84), frames[..., 8:92, 8:92])
    assert np.array_equal(center_crop(frames[:, 0] > 5000, 84), frames[:, 0, 8:92, 8:92] > 5000)
    assert torch.equal(center_crop(torch.as_tensor(frames), 84), torch.as_tensor(frames[..., 8:92, 8:92]))
    with pytest.raises(ValueError, match="smaller"):
        center_crop(frames, 101)
