"""Evaluation over seeds x modes: seeds on parallel threads give what they give one after another."""

from __future__ import annotations

import numpy as np
from test_rl_agent import TINY

from vai.rl.evaluate import evaluate, training_evaluator
from vai.rl.sac import SACAgent
from vai.vision.adapter import AttentionAdapter


def tiny_agent() -> SACAgent:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        adapter = AttentionAdapter(channels=4)
    return SACAgent("vai", (9, 100, 100), 1, TINY, (TINY.num_layers, TINY.num_shared_layers), adapter, seed=0)


def test_seeds_evaluated_on_parallel_threads_return_what_they_return_in_turn():
    agent = tiny_agent()
    # color_hard: every reset rebuilds and uploads textures, in each thread's own GL context.
    in_turn = evaluate(agent, "cartpole_balance", ["color_hard"], seeds=2, episodes=1, workers=1)["color_hard"]
    parallel = evaluate(agent, "cartpole_balance", ["color_hard"], seeds=2, episodes=1, workers=2)["color_hard"]
    assert in_turn.returns.shape == (2, 1) and in_turn.success is None
    assert in_turn.returns[0, 0] != in_turn.returns[1, 0]  # two seeds, two episodes
    assert np.array_equal(parallel.returns, in_turn.returns)


def test_training_evaluations_play_their_episodes_as_seeds_of_one_episode():
    agent = tiny_agent()
    summary = training_evaluator("cartpole_balance", ["train"], episodes=2)(agent)["train"]
    returns = evaluate(agent, "cartpole_balance", ["train"], seeds=2, episodes=1, workers=1)["train"].returns
    assert summary == {"return": returns.mean(), "return_std": returns.std()}
    assert returns[0, 0] != returns[1, 0]
