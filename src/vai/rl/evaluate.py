"""Evaluation of an agent over seeds x modes, following VAI's protocol (10 seeds x 10 episodes).

Seed ``i`` of a video mode plays video ``i`` (modulo the number of videos), as VAI evaluates; every
episode has its own environment seed, disjoint from training's, so physics, colours and videos are
reproducible. The policy acts with its mean action. With ``test_time_adaptation`` (PAD), a fresh
copy of the agent per episode updates its shared encoder layers after every step from the
self-supervised heads, then is thrown away (as PAD evaluates): episodes do not depend on each other's
order, and the checkpoint itself never changes.
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vai.data.video import VideoCache
from vai.envs import make_env
from vai.rl.observe import StoredStack

EVAL_BASE = 10_000_000
"""Evaluation environment seeds start here (training uses ``seed x 100003 + episode``)."""


def env_seed(seed_index: int, episode: int, seeds: int, videos: int) -> int:
    """Environment seed of ``episode`` of evaluation seed ``seed_index``: congruent to the seed index
    modulo the number of videos (so it plays video ``seed_index mod videos``), distinct for all pairs."""
    videos = max(videos, 1)
    rounds = -(-seeds // videos)
    return seed_index % videos + videos * (EVAL_BASE + episode * rounds + seed_index // videos)


@dataclass
class ModeResult:
    """Episode returns (seeds, episodes) of one mode, and success flags where the task has them."""

    returns: np.ndarray
    success: np.ndarray | None = None
    videos: list[str] = field(default_factory=list)


def evaluate(
    agent,
    task: str,
    modes: list[str],
    seeds: int = 10,
    episodes: int = 10,
    data_dir: str | Path | None = None,
    test_time_adaptation: bool = False,
    video_cache: VideoCache | None = None,
    workers: int | None = None,
) -> dict[str, ModeResult]:
    """Returns per mode of ``agent`` on ``task``: ``seeds`` x ``episodes`` episodes each.

    The seeds of a mode run on ``workers`` threads at once (default: one per seed, at most one per
    CPU core), each with an environment of its own, built and closed on its thread (GL contexts
    belong to one thread). The environments' physics and rendering release Python's lock, so the
    seeds overlap; the policy's forward passes take turns. Every seed's episodes are what they would
    be alone: the returns do not depend on ``workers``.
    """
    video_cache = video_cache or VideoCache()
    workers = max(1, min(seeds, workers or os.cpu_count() or 1))
    results = {}
    with ThreadPoolExecutor(workers, thread_name_prefix="vai-eval") as pool:
        for mode in modes:

            def play(seed_index: int, mode: str = mode) -> ModeResult:
                env = make_env(task, mode, data_dir=data_dir, video_cache=video_cache)
                try:
                    return _evaluate_seed(env, agent, seed_index, seeds, episodes, test_time_adaptation)
                finally:
                    env.close()

            per_seed = list(pool.map(play, range(seeds)))
            success = [result.success for result in per_seed]
            results[mode] = ModeResult(
                np.stack([result.returns for result in per_seed]),
                None if any(flags is None for flags in success) else np.stack(success),
                [video for result in per_seed for video in result.videos],
            )
    return results


def _evaluate_seed(env, agent, seed_index: int, seeds: int, episodes: int, test_time_adaptation: bool) -> ModeResult:
    """Evaluation seed ``seed_index``'s episodes: returns (episodes,), success flags, its video."""
    videos = getattr(env.unwrapped, "video_count", 0)
    returns = np.zeros(episodes)
    success = np.zeros(episodes, dtype=bool)
    has_success = False
    played: list[str] = []
    for episode in range(episodes):
        actor = copy.deepcopy(agent) if test_time_adaptation else agent
        obs, info = env.reset(seed=env_seed(seed_index, episode, seeds, videos))
        if episode == 0 and "video" in info:
            played.append(str(info["video"]))
        done, total = False, 0.0
        # The same pixels as actor.act(obs), each frame adapted once (the adapter is frozen,
        # test-time adaptation included).
        stack = StoredStack(actor.observe, obs)
        while not done:
            action = actor.act_stored(stack.frames)
            next_obs, reward, terminated, truncated, info = env.step(action)
            stack.push(next_obs)
            if test_time_adaptation:
                actor.adapt(obs, action, next_obs)
            total += float(reward)
            obs, done = next_obs, terminated or truncated
        returns[episode] = total
        if "episode_success" in info:
            has_success = True
            success[episode] = info["episode_success"]
    return ModeResult(returns, success if has_success else None, played)


def training_evaluator(task: str, modes: list[str], episodes: int, data_dir=None):
    """``evaluate(agent) -> {mode: {"return": mean, "return_std": std}}`` for the training loop.

    The ``episodes`` of a mode are played as that many evaluation seeds of one episode each, so they
    run at once (one thread and environment each, as :func:`evaluate` plays seeds) and, in a video
    mode, on as many videos; the same episodes at every evaluation of a run.
    """
    video_cache = VideoCache()

    def run(agent) -> dict[str, dict[str, float]]:
        results = evaluate(agent, task, modes, episodes, 1, data_dir, video_cache=video_cache)
        summary = {}
        for mode, result in results.items():
            summary[mode] = {"return": float(result.returns.mean()), "return_std": float(result.returns.std())}
            if result.success is not None:
                summary[mode]["success"] = float(result.success.mean())
        return summary

    return run
