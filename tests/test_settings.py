"""``--set KEY=VALUE``: each preset field's type and range, read from the field itself."""

from __future__ import annotations

import dataclasses

import pytest

from vai.errors import UserError
from vai.presets.rl import get_rl_preset
from vai.presets.settings import Range, override, value_problem
from vai.presets.vision import get_vision_preset

VISION, RL = get_vision_preset("paper"), get_rl_preset("paper")


def accepted(preset, key: str, value) -> bool:
    return value_problem(next(field for field in dataclasses.fields(preset) if field.name == key), value) is None


def numeric_fields(preset) -> list[str]:
    return [field.name for field in dataclasses.fields(preset) if field.type in ("int", "float")]


def test_each_numeric_field_takes_positive_numbers_unless_it_says_otherwise():
    signed = {"mask_morphology", "adapter_hue_mean", "actor_log_std_min", "actor_log_std_max"}
    zero = {
        "init_steps",
        "replay_capacity",
        "adapt_boxes",
        "adapt_box_std",
        "adapt_noise",
        "num_layers",
        "num_shared_layers",
        "svea_alpha",
        "svea_beta",
        "feature_weight",
        "mask_threshold",
        "adapter_threshold",
        "adapter_boxes",
        "transporter_restarts",
        "adapter_box_mean",
        "adapter_box_std",
        "adapter_hue_std",
        "adapter_brightness_std",
        "adapter_contrast_std",
        "adapter_saturation_std",
        "adapter_original_prob",
        "adapter_color_prob",
        "adapter_confusing_prob",
        "adapter_confusing_std",
        "adapter_base_weight",
        "adapter_noise_level",
        "adapter_natural_prob",
        "adapter_alpha_low",
        "adapter_alpha_high",
    }
    at_most_one = {
        "discount",
        "critic_tau",
        "encoder_tau",
        "transporter_lr_decay",
        "adapter_lr_decay",
        "mask_threshold",
        "adapter_threshold",
        "adapter_original_prob",
        "adapter_color_prob",
        "adapter_confusing_prob",
        "adapter_natural_prob",
        "adapter_alpha_low",
        "adapter_alpha_high",
    }
    for preset in (VISION, RL):
        for key in numeric_fields(preset):
            assert accepted(preset, key, -1) == (key in signed), key
            assert accepted(preset, key, 0) == (key in signed | zero), key
            assert accepted(preset, key, 1.5) == (key not in at_most_one), key
            assert accepted(preset, key, 1), key
            assert accepted(preset, key, getattr(preset, key)), key  # the presets' own values are accepted
            assert not accepted(preset, key, float("nan")) or key in signed, key


def test_range_messages():
    assert Range().problem(0) == "must be > 0"
    assert Range(inclusive=True).problem(-1) == "must be >= 0"
    assert Range(maximum=1).problem(2) == "must be at most 1"
    assert Range(None).problem(-5) is None


def test_values_are_read_by_the_fields_type_and_refused_in_one_line():
    changed = override(VISION, ["adapter_steps=7", "mask_abs_effect=yes", "adapter_norm=group", "pos_weight=3"])
    assert (changed.adapter_steps, changed.mask_abs_effect, changed.adapter_norm) == (7, True, "group")
    assert changed.pos_weight == 3.0 and override(VISION, None) is VISION
    refused = {
        "adapter_steps=many": "cannot set adapter_steps='many': expected int",
        "adapter_steps=0": "cannot set adapter_steps='0': it must be > 0",
        "adapter_boxes=-1": "cannot set adapter_boxes='-1': it must be >= 0",
        "mask_threshold=1.5": "cannot set mask_threshold='1.5': it must be at most 1",
        "adapter_norm=layer": "cannot set adapter_norm='layer': choose one of batch, group",
        "mask_abs_effect=maybe": "cannot set mask_abs_effect='maybe': expected bool",
        "name=other": "cannot set 'name=other': use KEY=VALUE with KEY one of collect_frames,",
        "adapter_steps": "cannot set 'adapter_steps': use KEY=VALUE",
    }
    for assignment, message in refused.items():
        with pytest.raises(UserError) as error:
            override(VISION, [assignment])
        assert str(error.value).startswith(message) and "\n" not in str(error.value), assignment


def test_tuples_are_written_with_commas():
    assert override(RL, ["aux_tasks=inverse,reward"]).aux_tasks == ("inverse", "reward")
    assert override(RL, ["aux_tasks=rotation"]).aux_tasks == ("rotation",)
    assert override(RL, ["aux_tasks="]).aux_tasks == ()
    with pytest.raises(UserError, match="aux_tasks='inverse,colour': 'colour' is not one of inverse, reward, rotation"):
        override(RL, ["aux_tasks=inverse,colour"])
    assert override(VISION, ["adapter_crop_scale=0.5,1"]).adapter_crop_scale == (0.5, 1.0)
    with pytest.raises(UserError, match="adapter_crop_scale='0.5': expected tuple"):
        override(VISION, ["adapter_crop_scale=0.5"])
    with pytest.raises(UserError, match="adapter_crop_scale='0.5,2': it must be at most 1"):
        override(VISION, ["adapter_crop_scale=0.5,2"])


def test_settings_that_contradict_each_other_are_refused_in_one_line():
    with pytest.raises(UserError, match="adapter_color_prob=0.6: adapter_original_prob .* must be 1, not 1.1"):
        override(VISION, ["adapter_color_prob=0.6"])
    assert override(VISION, ["adapter_color_prob=0.4", "adapter_confusing_prob=0.3"]).adapter_color_prob == 0.4
    with pytest.raises(UserError, match="adapter_alpha_low must be at most adapter_alpha_high"):
        override(VISION, ["adapter_alpha_low=0.9", "adapter_alpha_high=0.5"])
    with pytest.raises(UserError, match="adapter_box_min must be at most adapter_box_max"):
        override(VISION, ["adapter_box_min=12"])
    with pytest.raises(UserError, match=r"adapter_crop_ratio must be \(low, high\), not \(2, 1\)"):
        override(VISION, ["adapter_crop_ratio=2,1"])
