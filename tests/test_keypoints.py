"""Transporter (vai.vision.keypoints): every stage's shapes, transport's meaning, training, checkpoints.

Training runs for real on a tiny synthetic video (a yellow square moving over a fixed background
with a static stripe), small enough to learn in seconds on a CPU.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import damaged_copy

from vai.checkpoints import tensors_digest
from vai.errors import UserError
from vai.presets.vision import VISION_PRESETS, VisionPreset
from vai.vision.keypoints import (
    Transporter,
    _pair_starts,
    _sample_pairs,
    frames_to_inputs,
    gaussian_maps,
    load_transporter,
    max_map,
    save_transporter,
    spatial_softmax,
    train_transporter,
    transport,
)

SQUARE_COLOUR = np.array([230, 200, 30], dtype=np.uint8)
BACKGROUND_COLOUR = np.array([40, 60, 80], dtype=np.uint8)


def square_frames(count: int = 64, episodes: int = 2, side: int = 20, seed: int = 0):
    """A square moving smoothly (Lissajous path) over a fixed background with a static stripe.

    Returns uint8 frames (count, 3, 100, 100), episode ids, the square's mask (count, 100, 100),
    and the background alone (3, 100, 100). Episodes differ in phase.
    """
    rng = np.random.default_rng(seed)
    background = np.empty((3, 100, 100), dtype=np.uint8)
    background[:] = BACKGROUND_COLOUR[:, None, None]
    background[:, 30:36, :] = 140  # static: it must not become foreground
    per_episode = count // episodes
    episode = np.arange(count) // per_episode
    step = np.arange(count) % per_episode
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(episodes, 2))[episode]
    low, high = 10, 90 - side  # keeps the square inside the centre crop (8..92)
    top = (low + (high - low) * (0.5 + 0.5 * np.sin(0.35 * step + phase[:, 0]))).astype(int)
    left = (low + (high - low) * (0.5 + 0.5 * np.sin(0.23 * step + phase[:, 1]))).astype(int)
    pixels = np.arange(100)
    rows = (pixels[None, :] >= top[:, None]) & (pixels[None, :] < top[:, None] + side)
    columns = (pixels[None, :] >= left[:, None]) & (pixels[None, :] < left[:, None] + side)
    inside = rows[:, :, None] & columns[:, None, :]
    frames = np.where(inside[:, None], SQUARE_COLOUR[None, :, None, None], background[None]).astype(np.uint8)
    return frames, episode, inside, background


def small_preset(**changes) -> VisionPreset:
    """The quick preset shrunk to seconds on a CPU: 48 px, batch 8, 120 steps."""
    settings = dict(
        transporter_size=48,
        transporter_batch=8,
        transporter_steps=120,
        transporter_lr_every=50,
        max_pair_gap=10,
        keypoint_std=0.15,
    )
    settings.update(changes)
    return dataclasses.replace(VISION_PRESETS["quick"], **settings)


@pytest.fixture(scope="module")
def trained():
    frames, episodes, _, _ = square_frames()
    model, metrics = train_transporter(small_preset(), frames, episodes, 4, channels=8, seed=0)
    return model, metrics, frames


# -- Inputs and shapes ----------------------------------------------------------------------------


def test_frames_to_inputs_keeps_the_whole_frame_and_scales_to_unit_range():
    """VAI's Transporter sees the whole 100x100 observation: nothing is cropped away."""
    frames = np.zeros((2, 3, 100, 100), dtype=np.uint8)
    frames[:, 0, 0, 0] = 255  # the frame's corner, outside the agent's 84x84 centre crop
    frames[:, 1, 50, 50] = 255
    inputs = frames_to_inputs(frames, 100)
    assert inputs.shape == (2, 3, 100, 100) and inputs.dtype == torch.float32
    assert inputs[:, 0, 0, 0].tolist() == [1.0, 1.0] and inputs[:, 1, 50, 50].tolist() == [1.0, 1.0]
    assert float(inputs.sum()) == 4.0
    resized = frames_to_inputs(np.full((2, 3, 100, 100), 255, dtype=np.uint8), 64)
    assert resized.shape == (2, 3, 64, 64)
    assert torch.allclose(resized, torch.ones_like(resized))
    corner = frames_to_inputs(frames, 50)  # the corner pixel still reaches the resized input
    assert float(corner[:, 0, 0, 0].min()) > 0


@pytest.mark.parametrize("size, feature_side", [(48, 12), (50, 13)])
def test_every_stage_has_the_documented_shape(size, feature_side):
    torch.manual_seed(0)
    model = Transporter(keypoints=5, size=size, channels=4).eval()
    images = torch.rand(3, 3, size, size)
    with torch.no_grad():
        features = model.encode(images)
        coords, maps = model.keypoints(images)
        moved = model.transport(features, maps, features.flip(0), maps.flip(0))
        image = model.decode(moved)
        reconstruction = model(images, images.flip(0))
    assert features.shape == (3, 16, feature_side, feature_side) and features.dtype == torch.float32
    assert coords.shape == (3, 5, 2) and coords.dtype == torch.float32
    assert float(coords.abs().max()) <= 1.0
    assert maps.shape == (3, 5, feature_side, feature_side)
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    assert moved.shape == features.shape
    assert image.shape == reconstruction.shape == (3, 3, size, size)


def test_spatial_softmax_of_a_one_hot_heatmap_is_that_pixels_coordinate():
    height, width = 7, 11  # not square, so swapped x and y would show
    logits = torch.zeros(2, 3, height, width)
    picks = [(0, 0, 0, 0), (0, 1, 6, 10), (0, 2, 2, 5), (1, 0, 3, 1), (1, 1, 6, 0), (1, 2, 0, 7)]
    for b, k, row, column in picks:
        logits[b, k, row, column] = 60.0  # softmax is one-hot to float precision
    coords = spatial_softmax(logits)
    for b, k, row, column in picks:
        expected = (-1.0 + 2.0 * column / (width - 1), -1.0 + 2.0 * row / (height - 1))
        assert coords[b, k].tolist() == pytest.approx(expected, abs=1e-6)


def test_gaussian_maps_peak_at_the_coordinates_with_vais_width_convention():
    size = (9, 17)
    grid_y, grid_x = torch.linspace(-1, 1, 9), torch.linspace(-1, 1, 17)
    coords = torch.tensor([[[grid_x[3], grid_y[7]], [grid_x[12], grid_y[1]]]])
    maps = gaussian_maps(coords, size, std=0.2)
    assert maps.shape == (1, 2, 9, 17)
    for k, (row, column) in enumerate([(7, 3), (1, 12)]):
        peak = int(maps[0, k].argmax())
        assert divmod(peak, 17) == (row, column)
        assert float(maps[0, k, row, column]) == pytest.approx(1.0)
        # One pixel to the right is grid_x spacing (0.125) away: exp(-d^2 / std^2), VAI's convention
        # (not exp(-d^2 / (2 std^2)), which is sqrt(2) wider).
        assert float(maps[0, k, row, column + 1]) == pytest.approx(np.exp(-(0.125**2) / 0.2**2), rel=1e-5)
    at_std = gaussian_maps(torch.tensor([[[0.0, 0.0]]]), (3, 3), std=1.0)  # pixel (1, 2) is std away
    assert float(at_std[0, 0, 1, 2]) == pytest.approx(np.exp(-1.0), rel=1e-6)


def test_max_map_is_the_pixelwise_maximum_of_the_keypoints():
    coords = torch.tensor([[[-0.5, 0.0], [0.5, 0.0], [0.4, 0.0]]])  # two keypoints close together
    maps = gaussian_maps(coords, (21, 21), std=0.1)
    combined = max_map(maps)
    assert combined.shape == (1, 1, 21, 21)
    assert torch.equal(combined[0, 0], maps[0].max(dim=0).values)
    assert float(combined[0, 0, 10, 5]) == pytest.approx(1.0) and float(combined[0, 0, 10, 15]) == pytest.approx(1.0)
    # Where two maps overlap, the maximum, not the union 1 - prod(1 - H), which is larger.
    union = 1 - torch.prod(1 - maps, dim=1)
    assert float((union - combined[:, 0]).max()) > 0.01


# -- Transport (Kulkarni et al., Eq. 1) -----------------------------------------------------------


def test_transport_pastes_target_features_at_target_keypoints_and_keeps_source_elsewhere():
    side = 21
    source_features = torch.full((1, 4, side, side), 1.0)
    target_features = torch.full((1, 4, side, side), 5.0)
    no_keypoint = torch.zeros(1, 1, side, side)
    # Target keypoint exactly on pixel (row 5, column 15): x = 0.5, y = -0.5 on a 21-pixel grid.
    target_maps = gaussian_maps(torch.tensor([[[0.5, -0.5]]]), (side, side), std=0.1)
    moved = transport(source_features, no_keypoint, target_features, target_maps)
    assert torch.allclose(moved[0, :, 5, 15], torch.full((4,), 5.0))  # Φ(t) under the target keypoint
    assert torch.allclose(moved[0, :, 15, 5], torch.full((4,), 1.0))  # Φ(s) far from it
    # Swapping the frames' roles gives something else: the formula is not symmetric.
    swapped = transport(target_features, target_maps, source_features, no_keypoint)
    assert not torch.allclose(swapped[0, :, 5, 15], moved[0, :, 5, 15])


def test_transport_erases_source_features_under_source_keypoints():
    side = 21
    source_features = torch.full((1, 2, side, side), 3.0)
    target_features = torch.full((1, 2, side, side), 7.0)
    source_maps = gaussian_maps(torch.tensor([[[-0.5, 0.5]]]), (side, side), std=0.1)  # row 15, col 5
    moved = transport(source_features, source_maps, target_features, torch.zeros(1, 1, side, side))
    assert torch.allclose(moved[0, :, 15, 5], torch.zeros(2), atol=1e-6)  # the object left: erased
    assert torch.allclose(moved[0, :, 5, 15], torch.full((2,), 3.0))


def test_transport_applies_eq_1_keypoint_by_keypoint_as_vai():
    """The vectorised form equals Eq. 1 applied to each keypoint in turn (VAI's loop), which differs
    from one step with the union of the maps wherever keypoints overlap."""
    generator = torch.Generator().manual_seed(0)
    source_features, target_features = torch.rand(2, 3, 4, 9, 9, generator=generator)
    source_maps, target_maps = torch.rand(2, 3, 5, 9, 9, generator=generator)
    expected = source_features
    for k in range(5):
        s, t = source_maps[:, k : k + 1], target_maps[:, k : k + 1]
        expected = (1 - s) * (1 - t) * expected + t * target_features
    moved = transport(source_features, source_maps, target_features, target_maps)
    assert torch.allclose(moved, expected, atol=1e-6)
    union_s = 1 - torch.prod(1 - source_maps, 1, keepdim=True)
    union_t = 1 - torch.prod(1 - target_maps, 1, keepdim=True)
    one_step = (1 - union_s) * (1 - union_t) * source_features + union_t * target_features
    assert float((one_step - moved).abs().max()) > 0.01


def test_transport_sends_no_gradient_to_the_source_frame():
    """VAI detaches the source's keypoints and features: only the target's pass learns."""
    torch.manual_seed(0)
    model = Transporter(keypoints=3, size=32, channels=4).train()
    source = torch.rand(2, 3, 32, 32, requires_grad=True)
    target = torch.rand(2, 3, 32, 32, requires_grad=True)
    model(source, target).square().mean().backward()
    assert source.grad is None or float(source.grad.abs().max()) == 0.0
    assert float(target.grad.abs().max()) > 0.0


def test_the_refine_net_ends_in_vais_block_and_draws_non_negative_images():
    torch.manual_seed(0)
    model = Transporter(keypoints=3, size=32, channels=4).eval()
    last = list(model.refiner.full_stage)
    assert isinstance(last[-3], torch.nn.Conv2d) and last[-3].kernel_size == (7, 7)
    assert isinstance(last[-2], torch.nn.BatchNorm2d) and isinstance(last[-1], torch.nn.ReLU)
    with torch.no_grad():
        drawn = model.decode(torch.randn(4, 16, 8, 8))
    assert drawn.shape == (4, 3, 32, 32) and float(drawn.min()) >= 0.0


# -- Pair sampling --------------------------------------------------------------------------------


def test_pairs_look_0_to_gap_minus_1_steps_ahead_inside_one_episode():
    """VAI: source t < L - gap, target t + U{0, ..., gap - 1}, never past the episode's end."""
    episodes = np.array([0] * 30 + [1] * 5 + [2] * 1 + [0] * 10 + [3] * 40)  # episode 0 resumes
    starts = _pair_starts(episodes, max_gap=4)
    source, target = _sample_pairs(starts, 20000, 4, np.random.default_rng(0))
    assert np.all(episodes[source] == episodes[target])
    assert 2 not in episodes[source]  # a one-frame episode has no pair
    # Gap in time order: position within the episode's own frames.
    rank = np.empty(len(episodes), dtype=int)
    for episode in np.unique(episodes):
        members = np.flatnonzero(episodes == episode)
        rank[members] = np.arange(len(members))
    gaps = rank[target] - rank[source]
    assert set(np.unique(gaps)) == {0, 1, 2, 3}  # forward only; a frame may pair with itself
    lengths = {episode: np.count_nonzero(episodes == episode) for episode in np.unique(episodes)}
    assert all(rank[s] < lengths[episodes[s]] - 4 for s in np.unique(source))
    # Episode 0's frames 29 and 30 are stored 16 apart but are consecutive in its time order.
    assert np.any((source == 29) & (target == 36))
    with pytest.raises(ValueError, match="more than 40 frames"):
        _pair_starts(episodes, max_gap=40)


# -- Training -------------------------------------------------------------------------------------


def test_training_lowers_the_reconstruction_loss(trained):
    model, metrics, _ = trained
    curve = metrics["loss_curve"]
    assert len(curve) == metrics["steps"] == 120
    initial = float(np.mean(curve[:3]))
    assert metrics["final_loss"] < 0.5 * initial, (initial, metrics["final_loss"])
    assert metrics["seconds_per_step"] > 0 and metrics["parameters"] == sum(p.numel() for p in model.parameters())
    assert not model.training


def test_training_is_reproducible_from_the_seed():
    frames, episodes, _, _ = square_frames(count=16)
    preset = small_preset(transporter_size=32, transporter_batch=4, transporter_steps=3, max_pair_gap=4)
    runs = [train_transporter(preset, frames, episodes, 2, channels=4, seed=7)[1]["loss_curve"] for _ in range(2)]
    other = train_transporter(preset, frames, episodes, 2, channels=4, seed=8)[1]["loss_curve"]
    assert runs[0] == runs[1]
    assert runs[0] != other


class Stop(Exception):
    """Raised from the log callback: the training is killed part of the way."""


def test_a_killed_training_resumes_from_its_partial_checkpoint_and_ends_as_if_never_stopped(tmp_path):
    frames, episodes, _, _ = square_frames(count=24)
    preset = small_preset(transporter_size=32, transporter_batch=4, transporter_steps=8, max_pair_gap=4)
    preset = dataclasses.replace(preset, transporter_lr_every=3)  # the schedule's state matters too
    partial = tmp_path / "transporter-seed3.partial.pt"
    whole, whole_metrics = train_transporter(preset, frames, episodes, 2, channels=4, seed=3)

    def stop_at_five(values):
        if values["step"] == 5:
            raise Stop

    with pytest.raises(Stop):  # saves after every step (save_seconds=0), dies after step 5
        train_transporter(
            preset, frames, episodes, 2, channels=4, seed=3, log=stop_at_five, partial=partial, save_seconds=0
        )
    assert partial.is_file()
    resumed, metrics = train_transporter(preset, frames, episodes, 2, channels=4, seed=3, partial=partial)
    assert metrics["resumed_at"] == 4 and whole_metrics["resumed_at"] == 0  # step 5 had not been saved yet
    assert metrics["loss_curve"] == whole_metrics["loss_curve"]
    for name, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
    assert not partial.exists()  # removed once the training ends


def test_a_partial_checkpoint_of_another_training_or_a_damaged_one_is_replaced(tmp_path):
    frames, episodes, _, _ = square_frames(count=24)
    preset = small_preset(transporter_size=32, transporter_batch=4, transporter_steps=4, max_pair_gap=4)
    partial = tmp_path / "partial.pt"

    def stop_at_three(values):
        if values["step"] == 3:
            raise Stop

    with pytest.raises(Stop):
        train_transporter(
            preset, frames, episodes, 2, channels=4, seed=3, log=stop_at_three, partial=partial, save_seconds=0
        )
    _, metrics = train_transporter(preset, frames, episodes, 2, channels=4, seed=4, partial=partial)  # another seed
    assert metrics["resumed_at"] == 0
    partial.write_bytes(b"not a checkpoint")
    _, metrics = train_transporter(preset, frames, episodes, 2, channels=4, seed=3, partial=partial)
    assert metrics["resumed_at"] == 0 and not partial.exists()
    # A file of this training whose weights no longer fit (the last one's shape) leaves nothing half-loaded:
    # torch copies every weight that fits before it raises for the one that does not.
    with pytest.raises(Stop):
        train_transporter(
            preset, frames, episodes, 2, channels=4, seed=3, log=stop_at_three, partial=partial, save_seconds=0
        )
    payload = torch.load(partial, weights_only=True)
    last = next(name for name in reversed(payload["model"]) if name.endswith("weight"))
    payload["model"][last] = torch.zeros(1)
    payload["sha256"] = tensors_digest(payload["model"])
    torch.save(payload, partial)
    clean = train_transporter(preset, frames, episodes, 2, channels=4, seed=3)[1]["loss_curve"]
    _, metrics = train_transporter(preset, frames, episodes, 2, channels=4, seed=3, partial=partial)
    assert metrics["resumed_at"] == 0 and metrics["loss_curve"] == clean


# -- Checkpoints ----------------------------------------------------------------------------------


def test_checkpoint_round_trip_gives_identical_outputs(trained, tmp_path):
    model, _, frames = trained
    path = save_transporter(model, tmp_path / "nested" / "transporter.safetensors")
    assert [p.name for p in path.parent.iterdir()] == ["transporter.safetensors"]  # no temporary left
    loaded = load_transporter(path, "cpu", keypoints=4, size=48)
    assert not loaded.training
    assert (loaded.num_keypoints, loaded.size, loaded.channels, loaded.keypoint_std) == (4, 48, 8, 0.15)
    images = frames_to_inputs(frames[:6], 48)
    with torch.no_grad():
        assert torch.equal(loaded(images[:3], images[3:]), model(images[:3], images[3:]))
        assert torch.equal(loaded.keypoints(images)[0], model.keypoints(images)[0])


def test_loading_a_missing_corrupt_or_mismatched_checkpoint_is_a_user_error(tmp_path):
    from safetensors.torch import save_file

    model = Transporter(keypoints=3, size=32, channels=4)
    good = save_transporter(model, tmp_path / "good.safetensors")

    with pytest.raises(UserError, match="Transporter checkpoint .*absent.safetensors not found"):
        load_transporter(tmp_path / "absent.safetensors")

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(UserError, match="Transporter checkpoint .*truncated.safetensors is unreadable"):
        load_transporter(truncated)

    damaged = damaged_copy(good, tmp_path / "damaged.safetensors", -400, -300)  # in the weights
    with pytest.raises(UserError, match="damaged .*checksum"):
        load_transporter(damaged)

    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2)}, str(foreign))
    with pytest.raises(UserError, match="not a vai Transporter checkpoint"):
        load_transporter(foreign)

    # Right format tag, wrong description: the weights are for 4 channels, the metadata says 8.
    tensors = {name: value.contiguous() for name, value in model.state_dict().items()}
    metadata = {"format": "vai.transporter/2", "keypoints": "3", "size": "32", "channels": "8", "keypoint_std": "0.1"}
    lying = tmp_path / "lying.safetensors"
    save_file(tensors, str(lying), metadata=metadata)
    with pytest.raises(UserError, match="does not match"):
        load_transporter(lying)

    older = tmp_path / "older.safetensors"
    save_file(tensors, str(older), metadata={**metadata, "format": "vai.transporter/1", "channels": "4"})
    with pytest.raises(UserError, match="version 1 Transporter checkpoint; this vai reads version 2 only"):
        load_transporter(older)

    with pytest.raises(UserError, match="has 3 keypoints but 12 are wanted"):
        load_transporter(good, keypoints=12)
    with pytest.raises(UserError, match="trained at size 32 but 84"):
        load_transporter(good, size=84)
    for error_path in (truncated, damaged, foreign, lying, older):
        with pytest.raises(UserError) as caught:
            load_transporter(error_path)
        assert "\n" not in str(caught.value) and str(error_path) in str(caught.value)
