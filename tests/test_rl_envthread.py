"""The environment on its own thread: the same episodes as on the caller's, and the same training."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from test_rl_agent import TINY, BrightSide, train_tiny

import vai
from vai.rl.envthread import EnvThread, start_step


def rollout(env, actions):
    obs, _ = env.reset(seed=3)
    frames, rewards = [obs], []
    for action in actions:
        finish = start_step(env, action)
        obs, reward, terminated, truncated, _ = finish()
        frames.append(obs)
        rewards.append(reward)
    return np.stack(frames), np.array(rewards)


def test_a_threaded_environment_renders_the_same_episode():
    # Built, reset and stepped on the worker thread (its GL context lives there), yet frame for frame
    # what the same environment gives on the caller's thread.
    actions = np.random.default_rng(0).uniform(-1, 1, (12, 1)).astype(np.float32)
    plain = vai.make_env("cartpole_balance", "color_hard", seed=0)
    try:
        expected = rollout(plain, actions)
    finally:
        plain.close()
    threads = []

    def make():
        threads.append(threading.current_thread())
        return vai.make_env("cartpole_balance", "color_hard", seed=0)

    with EnvThread(make) as threaded:
        got = rollout(threaded, actions)
        assert threaded.action_space.shape == (1,) and threaded.observation_space.shape == (9, 100, 100)
    assert threads[0] is not threading.current_thread()
    assert got[0].std() > 0 and np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    with pytest.raises(RuntimeError, match="closed"):
        threaded.step(actions[0])


def test_a_step_that_fails_on_the_worker_raises_in_the_caller():
    class Broken(BrightSide):
        def step(self, action):
            raise ValueError("broken step")

    with EnvThread(Broken) as env:
        env.reset(seed=0)
        finish = start_step(env, np.zeros(2, np.float32))
        with pytest.raises(ValueError, match="broken step"):
            finish()


def test_training_on_a_threaded_environment_equals_training_on_the_callers_thread(tmp_path):
    from dataclasses import replace

    preset = replace(TINY, aux_tasks=("inverse",), train_steps=40, init_steps=20)
    plain = train_tiny(tmp_path / "plain", preset)
    with EnvThread(BrightSide) as env:
        threaded = train_tiny(tmp_path / "threaded", preset, env=env)
    assert all(torch.equal(plain[name], threaded[name]) for name in plain)


def test_the_thread_is_used_on_a_gpu_and_where_a_core_is_free_for_it(monkeypatch):
    from vai import threads as thread_rules
    from vai.rl.envthread import overlap_pays

    assert overlap_pays("cuda")  # the host mostly launches kernels
    threads = torch.get_num_threads()
    for cores, pays in ((threads, False), (threads + 1, True), (16 * threads, True)):
        monkeypatch.setattr(thread_rules, "usable_cores", lambda cores=cores: cores)
        assert overlap_pays("cpu") is pays  # never where torch's threads take every core
