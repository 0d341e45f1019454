"""Evaluation over seeds x modes with VAI's protocol: seed i of video_easy plays clip i (a seed without
its clip is not evaluated, and the results say so), DrawerWorld episodes end at their first success,
and seeds on parallel threads give what they give one after another."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
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
    assert summary == {"return": returns.mean(), "return_std": returns.std(), "seeds": 2}
    assert returns[0, 0] != returns[1, 0]


# -- VAI's protocol: seed i plays clip i ---------------------------------------------------------------
def test_video_easy_seed_i_plays_clip_i_and_a_seed_without_its_clip_is_not_evaluated(data_dir):
    """VAI evaluates seed i as ``--mode video$i``. The data set lacks clip 3: seed 3 is not evaluated
    (it was given clip 6, the fourth clip there is, before), nor counted as a zero."""
    agent = tiny_agent()
    result = evaluate(agent, "cartpole_balance", ["video_easy"], seeds=4, episodes=2, data_dir=data_dir)["video_easy"]
    assert result.videos == ["video0", "video1", "video2"]  # every episode of a seed checks its clip
    assert result.returns.shape == (3, 2) and np.all(np.isfinite(result.returns)) and np.all(result.returns > 0)
    assert result.seeds == [0, 1, 2] and result.skipped == [3]
    assert "seed 3 not evaluated" in result.skip_reason and "video3.mp4" in result.skip_reason
    assert "\n" not in result.skip_reason


def test_eval_results_name_the_seeds_they_cover(data_dir, tmp_path):
    from vai.context import RunContext
    from vai.rl.checkpoint import save_checkpoint
    from vai.rl.stages import eval_stage

    checkpoint = save_checkpoint(tiny_agent(), tmp_path / "agent.pt", "cartpole_balance", {"step": 0})
    context = RunContext.create(None, tmp_path, data_dir=data_dir)  # the checkpoint names its task
    record = eval_stage(context, [checkpoint], modes=["train", "video_easy"], seeds=4, episodes=1)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results == json.loads(json.dumps(record))
    group = "vai"  # the algorithm of the checkpoint
    returns = results["returns"][group]["cartpole_balance"]
    assert len(returns["train"]) == 4 and len(returns["video_easy"]) == 3  # no row for seed 3
    assert results["evaluation_seeds"][group]["cartpole_balance"] == {"train": [0, 1, 2, 3], "video_easy": [0, 1, 2]}
    summary = results["summary"][group]["tasks"]["cartpole_balance"]
    assert summary["video_easy"]["seeds"] == 3 and summary["video_easy"]["evaluation_seeds"] == [0, 1, 2]
    assert results["videos"]["cartpole_balance"]["video_easy"] == ["video0", "video1", "video2"]
    assert results["not_evaluated"]["cartpole_balance"]["video_easy"]["seeds"] == [3]
    table = (tmp_path / "results.md").read_text()
    assert "Evaluation seeds: 0-3 in train; 0-2 in video_easy." in table
    assert "video_easy: seed 3 not evaluated" in table


def test_training_evaluations_name_the_seeds_they_cover(data_dir):
    agent = tiny_agent()
    with pytest.warns(UserWarning, match=r"play seeds 0, 1, 2 of video_easy; video_easy: seed 3 not evaluated"):
        evaluator = training_evaluator("cartpole_balance", ["video_easy"], episodes=4, data_dir=data_dir)
    summary = evaluator(agent)["video_easy"]
    returns = evaluate(agent, "cartpole_balance", ["video_easy"], 4, 1, data_dir, workers=1)["video_easy"].returns
    assert summary == {"return": returns.mean(), "return_std": returns.std(), "seeds": 3}


# -- DrawerWorld: VAI's eval.py ends an episode at its first success ------------------------------------
class ExpertDrawerAgent:
    """Meta-World's scripted expert behind the interface evaluation uses; it reads the simulator state."""

    def __init__(self, env):
        from metaworld.policies import SawyerDrawerOpenV3Policy

        self.env, self.policy = env, SawyerDrawerOpenV3Policy()
        self.observe = SimpleNamespace(store=lambda observation: observation[-3:])

    def act_stored(self, frames):
        return np.clip(self.policy.get_action(self.env.unwrapped.last_state_observation), -1.0, 1.0)


def test_a_drawerworld_evaluation_episode_ends_at_its_first_success(env_factory, data_dir):
    from vai.rl.evaluate import _evaluate_seed, seed_videos

    env = env_factory("drawer_open", data_dir=data_dir)
    steps: list[tuple[float, bool]] = []
    step = env.step

    def recording_step(action):
        result = step(action)
        steps.append((result[1], result[4]["success"]))
        return result

    env.step = recording_step
    agent, plan = ExpertDrawerAgent(env), seed_videos("train", 1, data_dir)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Constant.*too high")  # metaworld's own warning
        early = _evaluate_seed(env, agent, 0, 1, 1, plan, False, True)
        early_steps = list(steps)
        steps.clear()
        full = _evaluate_seed(env, agent, 0, 1, 1, plan, False, False)  # the same episode, played out
    first = next(index for index, (_, success) in enumerate(steps) if success)
    assert len(early_steps) == first + 1 < len(steps) == 100
    assert early.returns[0] == pytest.approx(sum(reward for reward, _ in steps[: first + 1]))
    assert early.returns[0] != full.returns[0]  # the return is VAI's: summed up to the success
    assert early.success[0] and full.success[0]  # the success rate is not changed by ending early
