"""The oracle rows (``ALGORITHM+oracle``): the agent sees true mask x frame, from MuJoCo's segmentation,
in training and in every evaluation mode, and needs no adapter."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_cli import assert_user_error, run_vai
from test_rl_agent import TINY
from test_rl_cli import TINY as TINY_COMMAND

from vai.context import RunContext
from vai.rl.algorithms import algorithm_spec, with_attention
from vai.rl.evaluate import env_seed, evaluate, seed_videos
from vai.rl.sac import SACAgent
from vai.rl.stages import training_env
from vai.run_dir import RunDir

TASK = "cartpole_balance"
DMC_MODES = ("train", "color_easy", "color_hard", "video_easy", "video_hard")


def masked(observation: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Stacked frames (3F, H, W) x their true masks (F, H, W)."""
    return observation * np.repeat(masks, 3, axis=0).astype(np.uint8)


def assert_true_mask_x_frame(oracle_env, plain_env, seed: int, steps: int = 5) -> None:
    """Same seed, same actions: the oracle environment's observations and render are the plain one's
    times its true masks, and the agent's pixels are really there."""
    oracle, _ = oracle_env.reset(seed=seed)
    plain, info = plain_env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for step in range(steps + 1):
        masks = info["foreground_mask"]
        assert 0 < masks.mean() < 0.5
        np.testing.assert_array_equal(oracle, masked(plain, masks))
        np.testing.assert_array_equal(oracle_env.render(), masked(plain, masks)[-3:].transpose(1, 2, 0))
        assert np.count_nonzero(oracle[-3:].max(axis=0)) > 0.5 * masks[-1].sum()  # not all black
        if step < steps:
            action = rng.uniform(-1, 1, plain_env.action_space.shape).astype(np.float32)
            oracle, *_ = oracle_env.step(action)
            plain, _, _, _, info = plain_env.step(action)


@pytest.mark.parametrize("mode", DMC_MODES)
def test_an_oracle_environment_shows_true_mask_x_frame_in_every_mode(env_factory, data_dir, mode):
    oracle = env_factory(TASK, mode, data_dir=data_dir, oracle=True)
    plain = env_factory(TASK, mode, data_dir=data_dir, foreground_mask=True)
    assert_true_mask_x_frame(oracle, plain, seed=3)


def test_an_oracle_drawerworld_shows_true_mask_x_frame(env_factory, data_dir):
    oracle = env_factory("drawer_open", "marble", data_dir=data_dir, oracle=True)
    plain = env_factory("drawer_open", "marble", data_dir=data_dir, foreground_mask=True)
    assert_true_mask_x_frame(oracle, plain, seed=1, steps=2)


def test_every_algorithm_has_an_oracle_row_without_an_adapter():
    assert with_attention("vai", "oracle") == "vai+oracle" == with_attention("vai+oracle", "oracle")
    assert with_attention("sac", "learned") == "sac"
    oracle, learned = algorithm_spec("vai+oracle"), algorithm_spec("vai")
    assert (oracle.name, oracle.oracle, oracle.adapter, oracle.adapt_aug) == ("vai+oracle", True, False, True)
    assert (learned.oracle, learned.adapter) == (False, True)
    assert algorithm_spec("svea+oracle").convolved_critic and algorithm_spec("svea+oracle").oracle
    with pytest.raises(ValueError, match="ALGORITHM\\+oracle"):
        algorithm_spec("ppo+oracle")
    with pytest.raises(ValueError, match="learned, oracle"):
        with_attention("vai", "perfect")


def test_an_oracle_row_trains_on_true_mask_x_frame(tmp_path, data_dir, env_factory):
    context = RunContext.create(TASK, RunDir(tmp_path), seed=0, data_dir=data_dir)
    trained_on = training_env(context, "vai+oracle")
    try:
        assert_true_mask_x_frame(trained_on, env_factory(TASK, data_dir=data_dir, foreground_mask=True), seed=5)
    finally:
        trained_on.close()
    plain = training_env(context, "vai")
    try:
        assert not plain.unwrapped.oracle
    finally:
        plain.close()


def test_an_oracle_agent_is_evaluated_on_true_mask_x_frame_in_every_mode(data_dir, env_factory):
    agent = SACAgent("vai+oracle", (9, 100, 100), 1, TINY, (TINY.num_layers, TINY.num_shared_layers), seed=0)
    seen: list[tuple[np.ndarray, np.ndarray]] = []  # (newest stored frame, action), step by step
    act = agent.act_stored

    def recording(frames):
        action = act(frames)
        seen.append((np.array(frames[-1]), action))
        return action

    agent.act_stored = recording
    for mode in DMC_MODES:
        seen.clear()
        evaluate(agent, TASK, [mode], seeds=1, episodes=1, data_dir=data_dir, workers=1)
        plan = seed_videos(mode, 1, data_dir)
        compositing = agent.preset.video_compositing  # video modes as its evaluation composites them
        plain = env_factory(TASK, mode, data_dir=data_dir, foreground_mask=True, compositing=compositing)
        observation, info = plain.reset(seed=env_seed(0, 0, 1, len(plan.videos), plan.positions[0]))
        for frame, action in seen[:8]:  # the agent saw the plain episode's frames x their true masks
            np.testing.assert_array_equal(frame, masked(observation, info["foreground_mask"])[-3:], err_msg=mode)
            observation, _, _, _, info = plain.step(action)


def test_vai_attention_oracle_trains_and_evaluates_without_an_adapter(tmp_path, data_dir):
    out = tmp_path / "oracle"
    env = {"VAI_DATA_DIR": str(data_dir)}
    command = ["train", TASK, "--algo", "vai", "--attention", "oracle", "--run", str(tmp_path / "no-vision")]
    trained = run_vai(*command, *TINY_COMMAND, "train_steps=125", "--out", str(out), env=env)
    assert trained.returncode == 0, trained.stderr
    assert json.loads((out / "config.json").read_text())["algorithm"] == "vai+oracle"
    checkpoint = str(out / "checkpoints" / "last.pt")
    evaluated = run_vai("eval", checkpoint, "--mode", "video_hard", "--seeds", "1", "--episodes", "1", env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "vai+oracle" in evaluated.stdout
    unknown = run_vai("train", TASK, "--algo", "ppo", "--attention", "oracle", env=env)
    assert_user_error(unknown, "unknown algorithm 'ppo+oracle'", "vai, sac, drq, svea")
