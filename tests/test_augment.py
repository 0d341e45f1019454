"""The adapter's distraction augmentation and its background pool (vai.vision.augment, .backgrounds)."""

from __future__ import annotations

import colorsys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vai.errors import UserError
from vai.vision.augment import Distractor, _Draw, resized_crops, shift_hue
from vai.vision.backgrounds import load_background_images, procedural_backgrounds

BACKGROUNDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "backgrounds"
NO_JITTER = {"hue_mean": 0.0, "hue_std": 0.0, "brightness_std": 0.0, "contrast_std": 0.0, "saturation_std": 0.0}


@pytest.fixture(autouse=True)
def one_thread():
    """Small batches: with the cores busy (parallel test runs), OpenMP's spinning threads made such
    work many times slower than one thread (measured). Results do not depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


@pytest.fixture(scope="module")
def pool() -> torch.Tensor:
    return procedural_backgrounds(16, 100, generator(1))


def random_batch(batch: int = 6, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise frames and, per frame, a blob-shaped random mask (each frame's mask differs)."""
    draw = generator(seed)
    frames = torch.randint(0, 256, (batch, 9, 100, 100), dtype=torch.uint8, generator=draw)
    coarse = torch.rand(batch, 3, 10, 10, generator=draw)
    masks = torch.nn.functional.interpolate(coarse, size=(100, 100), mode="bilinear") > 0.6
    return frames, masks


def crop_offset(target: torch.Tensor, masks: torch.Tensor) -> tuple[int, int]:
    """The one (top, left) at which ``masks`` (F, 100, 100) cropped to 84 equal ``target`` (F, 84, 84)."""
    found = [
        (top, left)
        for top in range(17)
        for left in range(17)
        if torch.equal(masks[:, top : top + 84, left : left + 84].float(), target)
    ]
    assert len(found) == 1, f"target matches {len(found)} crops of the input mask"
    return found[0]


def test_shapes_dtypes_and_ranges(pool):
    frames, masks = random_batch()
    batch = Distractor(pool, boxes=3)(frames, masks, generator())
    assert batch.distracted.shape == batch.clean_masked.shape == (6, 9, 84, 84)
    assert batch.target.shape == (6, 3, 84, 84)
    for tensor in batch:
        assert tensor.dtype == torch.float32 and tensor.device == frames.device
        assert tensor.min() >= 0 and tensor.max() <= 1
    assert set(batch.target.unique().tolist()) <= {0.0, 1.0}


def test_foreground_keeps_its_positions_and_pixels(pool):
    frames, masks = random_batch()
    batch = Distractor(pool, boxes=5, **NO_JITTER)(frames, masks, generator())
    clean = frames.float() / 255
    for index in range(len(frames)):
        top, left = crop_offset(batch.target[index], masks[index])  # one crop for all 3 frames
        window = clean[index, :, top : top + 84, left : left + 84]
        foreground = batch.target[index].repeat_interleave(3, dim=0).bool()
        assert torch.equal(batch.distracted[index][foreground], window[foreground])
        assert torch.equal(batch.clean_masked[index], window * foreground)


def test_stacked_frames_stay_aligned(pool):
    """Three identical frames with identical masks: their foregrounds come out identical (one crop,
    one colour jitter per stack)."""
    frames, masks = random_batch()
    frames = frames[:, :3].repeat(1, 3, 1, 1)
    masks = masks[:, :1].repeat(1, 3, 1, 1)
    batch = Distractor(pool)(frames, masks, generator())
    target = batch.target
    assert torch.equal(target[:, 0], target[:, 1]) and torch.equal(target[:, 0], target[:, 2])
    foreground = batch.distracted.reshape(6, 3, 3, 84, 84) * target.unsqueeze(2)
    assert torch.equal(foreground[:, 0], foreground[:, 1]) and torch.equal(foreground[:, 0], foreground[:, 2])
    assert target.sum() > 0


def test_backgrounds_really_change(pool):
    frames, masks = random_batch()
    batch = Distractor(pool, **NO_JITTER)(frames, masks, generator())
    clean = frames.float() / 255
    for index in range(len(frames)):
        top, left = crop_offset(batch.target[index], masks[index])
        window = clean[index, :, top : top + 84, left : left + 84]
        background = ~batch.target[index].repeat_interleave(3, dim=0).bool()
        change = (batch.distracted[index] - window).abs()[background]
        assert (change > 1 / 255).float().mean() > 0.9
        assert change.mean() > 0.1


def test_colour_jitter_changes_the_foreground(pool):
    frames, masks = random_batch()
    strong = {"hue_std": 0.1, "brightness_std": 0.2, "contrast_std": 0.2, "saturation_std": 0.2}
    batch = Distractor(pool, **strong)(frames, masks, generator())
    foreground = batch.target.repeat_interleave(3, dim=1).bool()
    assert not torch.allclose(batch.distracted[foreground], batch.clean_masked[foreground])


def test_deterministic_given_the_generator_seed(pool):
    frames, masks = random_batch()
    distractor = Distractor(pool, boxes=2)
    first = distractor(frames, masks, generator(7))
    second = distractor(frames, masks, generator(7))
    other = distractor(frames, masks, generator(8))
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert not torch.equal(first.distracted, other.distracted)


def test_float_input(pool):
    frames, masks = random_batch(batch=2)
    batch = Distractor(pool)(frames.float() / 255, masks.float(), generator())
    assert batch.distracted.shape == (2, 9, 84, 84)


def test_each_frame_draws_its_own_background_unless_stacks_are_coherent(pool):
    """VAI draws the background (choice, colour, natural image, alpha) per frame; ``coherent_stack``
    shares it across a stack's frames, leaving only the pixel noise to differ."""
    frames, masks = random_batch(batch=16)
    frames = frames[:, :3].repeat(1, 3, 1, 1)  # three identical frames per stack
    masks = torch.zeros_like(masks)  # all background
    per_frame = Distractor(pool, **NO_JITTER)(frames, masks, generator()).distracted.reshape(16, 3, 3, 84, 84)
    coherent = Distractor(pool, coherent_stack=True, **NO_JITTER)(frames, masks, generator())
    coherent = coherent.distracted.reshape(16, 3, 3, 84, 84)
    # Coherent: frames differ by the noise alone, at most noise_level x base... under alpha <= 1.
    assert float((coherent[:, 0] - coherent[:, 1]).abs().max()) <= 0.1 + 1e-6
    assert float((per_frame[:, 0] - per_frame[:, 1]).abs().mean()) > 0.1


def test_the_crop_corner_is_drawn_from_0_to_15_as_vais():
    """VAI's (and PAD's) random crop draws corners in [0, 100 - 84), so offset 16, the only crop
    that shows the frame's last row or column, never occurs; offset 0 does."""
    side = 100
    masks = torch.zeros(400, 1, side, side, dtype=torch.bool)
    masks[:, 0, :, side - 1] = True  # last column
    masks[:, 0, side - 1, :] = True  # last row
    masks[:, 0, :, 0] = True  # first column
    frames = torch.zeros(400, 3, side, side, dtype=torch.uint8)
    target = Distractor(procedural_backgrounds(2, 100, generator(1)))(frames, masks, generator(3)).target[:, 0]
    assert not bool(target[:, 40, -1].any()) and not bool(target[:, -1, 40].any())
    assert 0.02 < float(target[:, 40, 0].float().mean()) < 0.12  # left == 0 about 1 in 16


def test_hue_is_shifted_around_vais_mean():
    """VAI's hue factor is N(-0.015, 0.015): the average shift is -0.015 turns, not 0."""
    frames = torch.zeros(2000, 3, 100, 100)
    frames[:, 0] = 0.8  # a saturated red of hue 0
    frames[:, 1] = 0.1
    frames[:, 2] = 0.1
    only_hue = {key: 0.0 for key in NO_JITTER if key not in ("hue_mean", "hue_std")}
    distractor = Distractor(procedural_backgrounds(2, 100, generator(1)), **only_hue)
    jittered = distractor._jitter(frames.reshape(2000, 1, 3, 100, 100), _Draw(generator(4), frames.device))
    hues = []
    for rgb in jittered[:, 0, :, 50, 50].tolist():
        hue = colorsys.rgb_to_hsv(*rgb)[0]
        hues.append(hue - 1 if hue > 0.5 else hue)
    assert np.mean(hues) == pytest.approx(-0.015, abs=0.002)
    assert np.std(hues) == pytest.approx(0.015, abs=0.002)


def test_natural_images_are_random_resized_crops():
    """VAI overlays RandomResizedCrop(84) of its images: 8-100 % of the area, aspect 3/4-4/3."""
    width = 128
    ramp = torch.linspace(0, 255, width).round().to(torch.uint8)
    pool = ramp.view(1, 1, 1, width).expand(1, 3, width, width).contiguous()  # a horizontal ramp
    crops = resized_crops(pool, torch.zeros(3000, dtype=torch.long), 84, _Draw(generator(5), pool.device))
    assert crops.shape == (3000, 3, 84, 84) and 0 <= float(crops.min()) and float(crops.max()) <= 1
    span = crops[:, 0, 42, -1] - crops[:, 0, 42, 0]  # the fraction of the image's width in the crop
    assert float(span.min()) < 0.3 and float(span.max()) > 0.95
    whole = resized_crops(pool, torch.zeros(4, dtype=torch.long), 84, _Draw(generator(5), pool.device), (1, 1), (1, 1))
    assert torch.allclose(whole, whole[:1].expand_as(whole))  # the whole image, every time
    assert float(whole[0, 0, 0, -1] - whole[0, 0, 0, 0]) > 0.95


def test_optional_boxes_are_squares_of_one_side_per_box_across_the_batch():
    """VAI's add_random_boxes: one side per box for the whole batch, a place and colour per frame."""
    distractor = Distractor(procedural_backgrounds(2, 100, generator(1)), boxes=1)
    background = torch.full((64, 1, 3, 84, 84), -1.0)
    painted = distractor._draw_boxes(background, _Draw(generator(6), background.device), 1)
    covered = (painted[:, 0, 0] != -1).sum(dim=(1, 2))
    rows = (painted[:, 0, 0] != -1).any(2).sum(1)
    assert torch.all(covered == covered[0]) and torch.all(covered == rows**2)  # the same square everywhere
    corners = (painted[:, 0, 0] != -1).float().flatten(1).argmax(1)
    assert len(corners.unique()) > 30  # but placed per frame


def test_hue_shift_matches_hsv():
    rgb = torch.rand(1, 3, 4, 4, generator=generator(3))
    shifted = shift_hue(rgb, torch.tensor(0.3))
    for row in range(4):
        for col in range(4):
            hue, saturation, value = colorsys.rgb_to_hsv(*rgb[0, :, row, col].tolist())
            expected = colorsys.hsv_to_rgb((hue + 0.3) % 1, saturation, value)
            assert np.allclose(shifted[0, :, row, col].numpy(), expected, atol=1e-5)
    gray = torch.full((1, 3, 2, 2), 0.4)
    assert torch.allclose(shift_hue(gray, torch.tensor(0.25)), gray)


def test_procedural_backgrounds_look_varied_and_repeat_by_seed():
    images = procedural_backgrounds(8, 64, generator(5))
    assert images.shape == (8, 3, 64, 64) and images.dtype == torch.uint8
    assert torch.equal(images, procedural_backgrounds(8, 64, generator(5)))
    per_image_std = images.float().flatten(1).std(dim=1)
    assert per_image_std.min() > 10  # not flat colours
    assert images.float().mean(dim=(1, 2, 3)).std() > 3  # not all alike


def test_loads_the_natural_image_pool():
    if not BACKGROUNDS.is_dir():
        pytest.skip(f"no background images at {BACKGROUNDS}")
    images = load_background_images(BACKGROUNDS, 32)
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
    assert len(images) == len(list(BACKGROUNDS.glob("*.jpg")))
    assert len(load_background_images(BACKGROUNDS, 16, max_images=10)) == 10


def test_loader_converts_bgr_and_crops_to_a_square(tmp_path):
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :, 2] = 255  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), image)
    loaded = load_background_images(tmp_path, 20)
    assert loaded.shape == (1, 3, 20, 20)
    assert loaded[0, 0].min() == 255 and loaded[0, 1:].max() == 0


@pytest.mark.parametrize("video", ["video_easy", "video_hard"])
def test_refuses_test_videos(tmp_path, video):
    inside = tmp_path / video / "frames"
    inside.mkdir(parents=True)
    cv2.imwrite(str(inside / "frame.png"), np.zeros((8, 8, 3), np.uint8))
    for folder in (inside, tmp_path / video, tmp_path):
        with pytest.raises(UserError, match="test data"):
            load_background_images(folder, 16)


def test_missing_or_empty_folder_names_the_fix(tmp_path):
    with pytest.raises(UserError, match="not found.*--backgrounds"):
        load_background_images(tmp_path / "absent", 16)
    with pytest.raises(UserError, match="no .jpg or .png.*Places365"):
        load_background_images(tmp_path, 16)
