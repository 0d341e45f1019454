"""The agent's batched augmentations: shifts move a stack's frames together, shapes and ranges hold."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from vai.presets.rl import get_rl_preset
from vai.rl.algorithms import algorithm_spec
from vai.rl.augment import (
    adapt_aug,
    paint_boxes,
    random_convolution,
    random_shift,
    standard_normal,
)
from vai.rl.observe import ObservationPipeline
from vai.vision.adapter import AttentionAdapter


def coordinates(batch: int, frames: int = 3, size: int = 100) -> torch.Tensor:
    """uint8-free test images whose pixel (r, c) holds r * size + c in every channel of every frame."""
    grid = torch.arange(size * size, dtype=torch.float32).reshape(1, 1, size, size)
    return grid.expand(batch, 3 * frames, size, size).contiguous()


def test_random_shift_moves_by_at_most_the_padding():
    images = coordinates(32, size=84)
    shifted = random_shift(images, pad=4, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape
    # The centre pixel moved by at most 4 rows and columns, the same way in every channel.
    moved = shifted[:, :, 42, 42] - images[:, :, 42, 42]
    assert torch.equal(moved, moved[:, :1].expand_as(moved))
    rows = torch.round(moved[:, 0] / 84)
    cols = moved[:, 0] - 84 * rows
    assert rows.abs().max() <= 4 and cols.abs().max() <= 4
    assert len(set(moved[:, 0].tolist())) > 5


def test_random_convolution_keeps_shape_range_and_stack_consistency():
    images = torch.rand(8, 9, 84, 84)
    images[:, 3:6] = images[:, :3]  # frames 0 and 1 identical
    out = random_convolution(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out[:, :3], out[:, 3:6])  # one filter per stack, for all its frames
    assert not torch.allclose(out[0, :3], out[1, :3])  # different stacks, different filters


def box_areas(painted: torch.Tensor) -> list[list[int]]:
    """Pixels of each colour per frame of ``painted`` (N, 3, S, S), black (unpainted) excluded."""
    areas = []
    for frame in painted:
        colours = frame.flatten(1).T  # (S * S, 3)
        colours = colours[colours.abs().sum(1) > 0]
        areas.append(sorted(torch.unique(colours, dim=0, return_counts=True)[1].tolist()))
    return areas


def test_adapt_aug_paints_15_boxes_on_every_frame_mostly_one_pixel_wide():
    # VAI (encoder.py): 15 boxes per RGB frame, side int(N(0, 2)) clamped to 1..5 (P(1 px) = 0.84).
    generator = torch.Generator().manual_seed(0)
    areas = []
    for _ in range(100):
        painted = adapt_aug(torch.zeros(2, 9, 84, 84), boxes=15, noise=0.0, generator=generator)
        frames = box_areas(painted.view(6, 3, 84, 84))
        # One side per box for the whole batch: frames whose boxes do not overlap (the most pixels
        # painted) show the same areas; overlaps may hide a box or part of it, no frame has more.
        assert max(len(frame) for frame in frames) == 15
        most = max(sum(frame) for frame in frames)
        whole = [frame for frame in frames if sum(frame) == most and len(frame) == 15]
        assert len(whole) >= 3 and all(frame == whole[0] for frame in whole)
        areas += whole[0]
    assert set(areas) <= {1, 4, 9, 16, 25} and {4, 9} <= set(areas)  # squares of side 1 to 5
    assert 0.78 < areas.count(1) / len(areas) < 0.9


def test_adapt_aug_draws_places_and_colours_per_frame_within_vai_bounds():
    generator = torch.Generator().manual_seed(1)
    painted = adapt_aug(torch.zeros(64, 9, 42, 42), boxes=15, noise=0.0, generator=generator)
    mask = (painted != 0).any(1)  # (B, S, S)
    # Each frame of a stack has its own boxes (VAI views the stack as single frames).
    frame_masks = (painted.view(64, 3, 3, 42, 42) != 0).any(2)
    assert (frame_masks[:, 0] != frame_masks[:, 1]).flatten(1).any(1).all()
    # Corners in [0, S - side): the last row and column are never painted, the ones before are.
    assert not mask[:, -1, :].any() and not mask[:, :, -1].any()
    assert mask[:, -2, :].any() and mask[:, :, -2].any() and mask[:, 0, :].any()
    # Pooled views (downsample 2): sides halved, at least 1 px, so at most 2 px.
    generator = torch.Generator().manual_seed(2)
    areas = []
    for _ in range(40):
        pooled = adapt_aug(torch.zeros(1, 3, 42, 42), 15, 0.0, generator, downsample=2)
        areas += box_areas(pooled)[0]
    assert set(areas) <= {1, 2, 3, 4} and areas.count(1) / len(areas) > 0.9


def test_adapt_aug_noise_has_vai_std_and_no_clamp():
    generator = torch.Generator().manual_seed(3)
    noisy = adapt_aug(torch.full((4, 9, 84, 84), 0.5), boxes=0, noise=0.005, generator=generator)
    assert 0.0048 < (noisy - 0.5).std() < 0.0052 and abs(float((noisy - 0.5).mean())) < 2e-4
    # VAI adds the noise after the boxes and clamps nothing: black goes below 0, white above 1.
    assert adapt_aug(torch.zeros(2, 9, 84, 84), 15, 0.005, generator).min() < 0
    assert adapt_aug(torch.ones(2, 9, 84, 84), 15, 0.005, generator).max() > 1
    images = torch.rand(2, 9, 84, 84)
    assert torch.equal(adapt_aug(images, 0, 0.0, generator), images)  # nothing asked, nothing changed


def test_boxes_are_painted_in_order_at_their_places_in_every_frame():
    generator = torch.Generator().manual_seed(2)
    batch, boxes, box_max, side_px = 6, 5, 7, 20
    images = torch.rand(batch, 9, side_px, side_px, generator=generator)
    side = torch.randint(1, box_max + 1, (batch, boxes, 2), generator=generator)
    top = torch.randint(0, side_px - box_max + 1, (batch, boxes), generator=generator)
    left = torch.randint(0, side_px - box_max + 1, (batch, boxes), generator=generator)
    top[:, 1], left[:, 1] = top[:, 0], left[:, 0]  # the second box covers (part of) the first
    colour = torch.rand(batch, boxes, 3, generator=generator)
    expected = images.clone()
    for b in range(batch):
        for k in range(boxes):  # later boxes paint over earlier ones
            rows = slice(int(top[b, k]), int(top[b, k] + side[b, k, 0]))
            cols = slice(int(left[b, k]), int(left[b, k] + side[b, k, 1]))
            for frame in range(3):
                expected[b, 3 * frame : 3 * frame + 3, rows, cols] = colour[b, k][:, None, None]
    painted = images.clone()
    paint_boxes(painted, top, left, side, colour, box_max)
    assert torch.equal(painted, expected)


def test_noise_from_a_bank_is_a_window_of_it_at_a_random_offset():
    bank = torch.randn(10_000, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    first, second = (standard_normal((4, 3, 10, 10), generator, torch.device("cpu"), bank) for _ in range(2))
    assert first.shape == (4, 3, 10, 10)
    flat = first.flatten()
    offset = int(torch.nonzero(bank == flat[0])[0])
    assert torch.equal(bank[offset : offset + flat.numel()], flat)  # one contiguous window
    assert not torch.equal(first, second)  # another offset on the next call
    with pytest.raises(ValueError, match="cannot fill"):
        standard_normal((200, 100), generator, torch.device("cpu"), bank)
    banked = adapt_aug(
        torch.full((4, 9, 84, 84), 0.5), 0, 0.005, generator, noise_bank=torch.randn(4 * 9 * 84 * 84 * 2)
    )
    assert 0.003 < (banked - 0.5).std() < 0.007


@pytest.mark.parametrize("name, banked", [("quick", True), ("paper", False)])
def test_adapt_aug_noise_comes_from_the_bank_only_where_the_preset_asks(name, banked):
    preset = replace(get_rl_preset(name), adapt_boxes=0, adapt_noise=1.0)
    observe = ObservationPipeline(algorithm_spec("vai"), preset, AttentionAdapter(channels=4))
    view = torch.zeros(preset.batch_size, 9, 6, 6)
    noise = observe.augment(view, torch.Generator().manual_seed(3)).flatten()
    assert noise.std() > 0.5  # noise was added
    bank = observe._bank_for(view)
    assert (bank is not None) == banked
    if banked:  # a window of the bank; fresh noise would not be in it
        offset = int(torch.nonzero(bank == noise[0])[0])
        assert torch.equal(bank[offset : offset + noise.numel()], noise)
