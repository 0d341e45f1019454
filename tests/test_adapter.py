"""The attention adapter: architecture, loss, training, checkpoints, and its use on observations."""

from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest
import torch
from conftest import damaged_copy
from safetensors.torch import save_file

from vai.errors import UserError
from vai.presets.vision import get_vision_preset
from vai.vision.adapter import (
    AdaptedObservation,
    AdapterWrapper,
    AttentionAdapter,
    adapter_loss,
    distractor_settings,
    load_adapter,
    parameter_count,
    place_masks,
    save_adapter,
    stack_indices,
    train_adapter,
)
from vai.vision.augment import Distractor


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: with the cores busy (parallel test runs), OpenMP's spinning threads made these
    tests up to 80x slower than one thread (measured). Results do not depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def seeded_adapter(seed: int = 0, **kwargs) -> AttentionAdapter:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AttentionAdapter(**kwargs).eval()


def moving_square(frames: int = 64, size: int = 56, side: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two episodes of a red square gliding over a fixed striped background, with exact masks."""
    rows = torch.arange(size).view(size, 1)
    cols = torch.arange(size).view(1, size)
    background = torch.stack([40 + 2 * cols + 0 * rows, 90 + (rows // 7 % 2) * 60 + 0 * cols, 150 + 0 * rows * cols])
    images = background.expand(frames, 3, size, size).clone()
    masks = torch.zeros(frames, size, size, dtype=torch.bool)
    steps = torch.arange(frames) % (frames // 2)
    tops = (4 + steps * 3 % (size - side - 8)).tolist()
    lefts = (6 + steps * 5 % (size - side - 8)).tolist()
    for index, (top, left) in enumerate(zip(tops, lefts)):  # building the fixture, not a hot path
        masks[index, top : top + side, left : left + side] = True
    colour = torch.tensor([220, 30, 30]).view(3, 1, 1)
    images = torch.where(masks.unsqueeze(1), colour, images).to(torch.uint8)
    episodes = torch.arange(frames) // (frames // 2)
    return images, episodes, masks


def test_shapes_and_parameter_count():
    adapter = seeded_adapter()
    frames = torch.rand(2, 3, 84, 84)
    mask = adapter(frames)
    assert mask.shape == (2, 1, 84, 84) and mask.dtype == torch.float32
    assert mask.min() >= 0 and mask.max() <= 1
    assert adapter.encode(frames).shape == (2, 16, 21, 21)
    assert adapter.masks_for_stack(torch.rand(2, 9, 84, 84)).shape == (2, 3, 84, 84)
    assert parameter_count(adapter) == 17_091  # VAI's adapter: about 17k


def test_the_default_architecture_is_vais():
    """Batch norm, a 16-channel attention gate, and a ReLU head clamped to [0, 1] that can say
    exactly 0 for background (VAI); group norm and a sigmoid head are options."""
    adapter = seeded_adapter()
    assert (adapter.norm, adapter.output) == ("batch", "clamp")
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in adapter.modules())
    assert adapter.attention[0].out_channels == 16
    with torch.no_grad():
        mask = adapter.train()(torch.rand(8, 3, 84, 84))  # batch statistics: about half the head is < 0
    assert float((mask == 0).float().mean()) > 0.01  # exact zeros: the clamped ReLU
    sigmoid = seeded_adapter(output="sigmoid", norm="group")
    assert any(isinstance(m, torch.nn.GroupNorm) for m in sigmoid.modules())
    with torch.no_grad():
        soft = sigmoid(torch.rand(8, 3, 84, 84))
    assert float(soft.min()) > 0 and float(soft.max()) < 1
    with pytest.raises(ValueError, match="unknown norm"):
        AttentionAdapter(norm="layer")


def test_in_eval_mode_a_frames_mask_does_not_depend_on_its_batch():
    adapter = seeded_adapter(4)
    frames = torch.rand(6, 3, 84, 84)
    with torch.no_grad():
        alone = adapter(frames[:1])
        together = adapter(frames)[:1]
    assert torch.allclose(alone, together, atol=1e-6)


def test_the_presets_adapter_settings_reach_training():
    frames, episodes, masks = moving_square(frames=16, size=40, side=10)
    preset = dataclasses.replace(get_vision_preset("quick"), adapter_size=32, adapter_batch=2, adapter_steps=2)
    assert (preset.adapter_norm, preset.adapter_output, preset.adapter_coherent_stack) == ("batch", "clamp", False)
    assert get_vision_preset("paper").adapter_steps == 3000  # VAI's ~3000 iterations at batch 64
    trained, _ = train_adapter(preset, frames, episodes, masks, None, "cpu", seed=0)
    assert (trained.norm, trained.output) == ("batch", "clamp")
    other = dataclasses.replace(preset, adapter_norm="group", adapter_output="sigmoid")
    trained, _ = train_adapter(other, frames, episodes, masks, None, "cpu", seed=0)
    assert (trained.norm, trained.output) == ("group", "sigmoid")


def test_loss_weighs_missing_foreground_more_than_leaked_background():
    adapter = seeded_adapter()
    stack = torch.rand(1, 9, 32, 32)
    on = (torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    loss_low, metrics = adapter_loss(adapter, stack, stack, on, pos_weight=1.0, feature_weight=0.0)
    loss_high, _ = adapter_loss(adapter, stack, stack, on, pos_weight=15.0, feature_weight=0.0)
    assert loss_high > loss_low
    assert float(metrics["feature_loss"]) == 0.0  # identical inputs: identical features
    shifted, metrics = adapter_loss(adapter, stack, stack * 0.5, on, pos_weight=15.0, feature_weight=0.5)
    assert float(metrics["feature_loss"]) > 0
    assert torch.isclose(shifted, metrics["mask_loss"] + 0.5 * metrics["feature_loss"])


def test_training_lowers_the_loss_on_a_moving_square():
    frames, episodes, masks = moving_square(size=40, side=10)
    preset = dataclasses.replace(
        get_vision_preset("quick"), adapter_size=32, adapter_batch=4, adapter_steps=60, adapter_lr=3e-3
    )
    logged = []
    adapter, metrics = train_adapter(preset, frames, episodes, masks, None, "cpu", seed=0, log=logged.append)
    curve = metrics["loss"]
    assert len(curve) == 60 and metrics["steps"] == 60 and metrics["seconds_per_step"] > 0
    assert np.mean(curve[-10:]) < 0.6 * np.mean(curve[:5]), curve  # measured: 0.06-0.10 for seeds 0-3
    assert [entry["step"] for entry in logged] == list(range(3, 61, 3))  # about LOG_CALLS (20) times, the last at 60
    assert not adapter.training and adapter.size == 32


def test_preset_boxes_reach_the_distracted_inputs():
    frames, episodes, masks = moving_square(frames=16, size=40, side=10)
    preset = dataclasses.replace(get_vision_preset("quick"), adapter_size=32, adapter_batch=2, adapter_steps=3)

    def curve(boxes: int) -> list[float]:
        with_boxes = dataclasses.replace(preset, adapter_boxes=boxes)
        return train_adapter(with_boxes, frames, episodes, masks, None, "cpu", seed=0)[1]["loss"]

    assert curve(0) == curve(0)  # the same seed trains the same adapter
    assert curve(4) != curve(0)  # boxes change what the adapter sees


def test_every_distraction_knob_is_a_vision_setting_whose_default_is_vais():
    arguments = inspect.signature(Distractor).parameters.values()
    vais = {argument.name: argument.default for argument in arguments if argument.kind is argument.KEYWORD_ONLY}
    assert distractor_settings(get_vision_preset("paper")) == distractor_settings(get_vision_preset("quick")) == vais
    frames, episodes, masks = moving_square(frames=16, size=40, side=10)
    preset = dataclasses.replace(get_vision_preset("quick"), adapter_size=32, adapter_batch=2, adapter_steps=3)
    noisier = dataclasses.replace(preset, adapter_noise_level=0.5)
    assert distractor_settings(noisier)["noise_level"] == 0.5
    losses = [train_adapter(p, frames, episodes, masks, None, "cpu", seed=0)[1]["loss"] for p in (preset, noisier)]
    assert losses[0] != losses[1]  # the knob reaches the distracted inputs


def test_stacks_repeat_the_first_frame_of_each_episode():
    episodes = torch.tensor([4, 4, 4, 4, 9, 9, 2])
    expected = [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3], [4, 4, 4], [4, 4, 5], [6, 6, 6]]
    assert stack_indices(episodes).tolist() == expected
    with pytest.raises(ValueError, match="one after another"):
        stack_indices(torch.tensor([0, 1, 0]))


def test_centre_crop_masks_go_back_into_the_frame():
    masks = torch.rand(3, 84, 84, generator=torch.Generator().manual_seed(0)) > 0.5
    placed = place_masks(masks, (100, 100))
    assert placed.shape == (3, 100, 100) and placed.dtype == torch.bool
    assert torch.equal(placed[:, 8:92, 8:92], masks)
    assert torch.equal(placed[:, 0, 8:92], masks[:, 0]) and torch.equal(placed[:, 99, 8:92], masks[:, -1])
    assert torch.equal(placed[:, 8:92, 0], masks[:, :, 0])


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    adapter = seeded_adapter(3)
    path = save_adapter(adapter, tmp_path / "run" / "adapter.safetensors")
    assert [p.name for p in path.parent.iterdir()] == ["adapter.safetensors"]  # no temporary left
    loaded = load_adapter(path, "cpu")
    stack = torch.rand(2, 9, 84, 84)
    with torch.no_grad():
        assert torch.equal(adapter.masks_for_stack(stack), loaded.masks_for_stack(stack))


def test_bad_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_adapter(tmp_path / "absent.safetensors")

    path = save_adapter(seeded_adapter(), tmp_path / "adapter.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-500])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00not a checkpoint at all" * 10)
    for broken in (truncated, garbage):
        with pytest.raises(UserError, match=f"{broken.name}.*unreadable"):
            load_adapter(broken)

    damaged = damaged_copy(path, tmp_path / "damaged.safetensors", -400, -300)  # in the weights
    with pytest.raises(UserError, match="damaged.safetensors is damaged .*checksum"):
        load_adapter(damaged)

    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2)}, str(foreign), metadata={"format": "something else"})
    with pytest.raises(UserError, match="not a vai attention adapter"):
        load_adapter(foreign)

    small = seeded_adapter(channels=8)
    tensors = {name: value.contiguous() for name, value in small.state_dict().items()}
    lying = tmp_path / "lying.safetensors"
    metadata = {"format": "vai.attention_adapter", "version": "2", "config": json.dumps({"channels": 16, "size": 84})}
    save_file(tensors, str(lying), metadata=metadata)
    with pytest.raises(UserError, match="does not match"):
        load_adapter(lying)

    older = tmp_path / "older.safetensors"  # an adapter of the first, GroupNorm architecture
    save_file(tensors, str(older), metadata={**metadata, "version": "1"})
    with pytest.raises(UserError, match="version 1 attention adapter checkpoint; this vai reads version 2 only"):
        load_adapter(older)


def test_adapted_observation_is_mask_times_centre_crop():
    adapter = seeded_adapter(1)
    adapted = AdaptedObservation(adapter)
    observations = torch.randint(0, 256, (2, 9, 100, 100), dtype=torch.uint8)
    crop = observations[:, :, 8:92, 8:92].float() / 255
    with torch.no_grad():
        masks = adapter.masks_for_stack(crop)
    expected = crop * masks.repeat_interleave(3, dim=1)
    out = adapted(observations)
    assert out.shape == (2, 9, 84, 84) and out.dtype == torch.float32
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(adapted(crop), expected, atol=1e-6)  # float, already cropped
    adapted.train()
    assert not adapted.adapter.training
    assert all(not p.requires_grad for p in adapted.parameters())


def test_wrapper_masks_real_observations(env_factory):
    env = AdapterWrapper(env_factory("cartpole_balance", seed=0), seeded_adapter(2), device="cpu")
    assert env.observation_space.shape == (9, 84, 84) and env.observation_space.dtype == np.uint8
    observation, _ = env.reset(seed=0)
    assert observation.dtype == np.uint8 and observation.shape == (9, 84, 84)
    assert env.observation_space.contains(observation)
    observation, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(observation)


def test_mask_picture_shows_the_probability_and_what_the_agent_sees():
    from vai.vision.evaluate import CROP, ModeFrames, adapter_probabilities, mask_grid

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 3, 100, 100), dtype=np.uint8)
    truth = np.zeros((4, 100, 100), bool)
    truth[:, 40:60, 45:55] = True
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        adapter = AttentionAdapter(channels=4, norm="group", output="sigmoid").eval()
    image = mask_grid([ModeFrames("train", frames, truth)], adapter, samples=1)
    probability = adapter_probabilities(adapter, frames[:1])[0]
    assert 0.05 < probability.std()  # a soft mask, so the check below can tell it from a binary one
    # Layout: 36-px header, 130-px label, then 84-px tiles drawn at 2x; sample pixels of each tile.
    tile = [image[36 : 36 + 2 * CROP : 2, 130 + 2 * CROP * k : 130 + 2 * CROP * (k + 1) : 2] for k in range(4)]
    observed = frames[0, :, 8:92, 8:92].transpose(1, 2, 0)
    assert np.array_equal(tile[0], observed)
    assert np.abs(tile[1][..., 0].astype(int) - probability * 255).max() <= 0.5 + 1e-3
    assert np.abs(tile[2].astype(int) - observed * probability[..., None]).max() <= 0.5 + 1e-3
    assert np.array_equal(tile[3][..., 0] > 0, truth[0, 8:92, 8:92])
