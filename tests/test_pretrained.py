"""The committed pretrained bundles: they load in one call and play the episodes their cards record."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from test_cli import assert_user_error, run_vai

from vai.errors import UserError
from vai.pretrained import CHECK_TOLERANCE, bundle_names, load, pretrained_folder

COMMITTED = "cartpole_balance-vai-seed0"


def test_a_committed_bundle_plays_the_episodes_its_card_records(data_dir):
    assert COMMITTED in bundle_names()
    agent = load("cartpole_balance", "vai", seed=0)
    assert agent.card["agent_steps"] == 12_500 and agent.agent.observe.adapter is not None
    for mode in ("train", "video_hard"):
        expected = agent.card["first_episode"][mode]
        assert agent.first_episode(mode, data_dir) == pytest.approx(expected, rel=CHECK_TOLERANCE)
    env = agent.make_env("color_hard", data_dir=data_dir)
    try:
        obs, _ = env.reset(seed=0)
        action = agent.act(obs)
        assert action.shape == env.action_space.shape and np.all(np.abs(action) <= 1)
    finally:
        env.close()


def test_a_damaged_or_missing_bundle_is_one_line(tmp_path):
    folder = tmp_path / "bundles"
    shutil.copytree(pretrained_folder() / COMMITTED, folder / COMMITTED)
    card = folder / COMMITTED / "card.json"
    card.write_text(card.read_text()[:-20])
    with pytest.raises(UserError, match="card.json is damaged"):
        load("cartpole_balance", "vai", seed=0, folder=folder)
    env = {"VAI_PRETRAINED": str(folder)}
    assert_user_error(run_vai("pretrained", "show", "cartpole_balance-sac-seed7", env=env), "no pretrained bundle")
    listed = run_vai("pretrained", "list", env=env)
    assert listed.returncode == 1 and "damaged" in listed.stdout
