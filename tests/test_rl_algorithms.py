"""Algorithm specs: one per name the command line takes, each saying what it adds to SAC."""

from __future__ import annotations

import pytest

from vai.presets.rl import ALGORITHMS, get_rl_preset
from vai.rl.algorithms import ALGORITHM_SPECS, algorithm_spec
from vai.rl.observe import ObservationPipeline
from vai.vision.adapter import AttentionAdapter


def test_every_algorithm_has_one_spec_of_what_it_adds():
    assert tuple(ALGORITHM_SPECS) == ALGORITHMS
    assert all(algorithm_spec(name).name == name for name in ALGORITHMS)
    added = {
        name: {field for field in ("adapter", "adapt_aug", "shift", "convolved_critic") if getattr(spec, field)}
        for name, spec in ALGORITHM_SPECS.items()
    }
    assert added == {"vai": {"adapter", "adapt_aug"}, "sac": set(), "drq": {"shift"}, "svea": {"convolved_critic"}}
    with pytest.raises(ValueError, match="vai, sac, drq, svea"):
        algorithm_spec("ppo")


def test_the_pipeline_takes_an_adapter_exactly_where_the_spec_wants_one():
    preset = get_rl_preset("quick")
    adapter = AttentionAdapter(channels=4)
    with pytest.raises(ValueError, match="the vai algorithm needs an adapter"):
        ObservationPipeline(algorithm_spec("vai"), preset)
    with pytest.raises(ValueError, match="the sac algorithm takes no adapter"):
        ObservationPipeline(algorithm_spec("sac"), preset, adapter)
    assert ObservationPipeline(algorithm_spec("vai"), preset, adapter).adapter is adapter
