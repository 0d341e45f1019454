"""Evaluation of an agent over seeds x modes, following VAI's protocol (10 seeds x 10 episodes).

Which video a seed plays (VAI's README evaluates seed ``i`` as ``eval.py --seed i --mode video$i``):

- ``video_easy``: evaluation seed ``i`` plays clip ``video{i}.mp4`` in every episode. A seed whose
  clip is not in the data directory (the data set has clips 0, 1, 2, 6, 8 and 9 of DMControl-GB's ten)
  is *not evaluated*: its row is absent from the returns, :attr:`ModeResult.seeds` names the rows
  there are and :attr:`ModeResult.skip_reason` says which seeds are missing and why. It is never given
  another clip, nor counted as a zero.
- ``videoN``: every seed plays clip N, as VAI's ``--mode videoN``.
- ``video_hard``: VAI has no protocol for it (its GreenScreen refuses the mode); seed ``i`` plays the
  ``i``-th clip of the development split (clip 30 + i with the whole split), modulo its number of clips.

Every episode has its own environment seed, disjoint from training's, so physics, colours and videos
are reproducible. The policy acts with its mean action. A DrawerWorld episode ends at its first success,
as VAI's ``eval.py`` ends it, so its return is the reward summed up to that step; the success rate
(success reached at any step) is what an early end cannot change. With ``test_time_adaptation``
(PAD), a fresh copy of the agent per episode updates its shared encoder layers after every step from
the self-supervised heads, then is thrown away (as PAD evaluates): episodes do not depend on each
other's order, and the checkpoint itself never changes.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vai.data.video import VideoCache
from vai.envs import make_env
from vai.envs.datasets import mode_videos
from vai.rl.observe import StoredStack
from vai.threads import stage_threads, torch_threads, usable_cores

EVAL_BASE = 10_000_000
"""Evaluation environment seeds start here (training uses ``seed x 100003 + episode``)."""

EASY_CLIPS_UPSTREAM = 10
"""DMControl-GB's ``video_easy`` has clips 0-9; VAI's seed ``i`` plays clip ``i``."""


def env_seed(seed_index: int, episode: int, seeds: int, videos: int, position: int | None = None) -> int:
    """Environment seed of ``episode`` of evaluation seed ``seed_index``, distinct for all pairs.

    It is congruent to ``position`` modulo ``videos``, so a video mode's environment plays the video at
    that position of its list (``reset(seed=s)`` plays video ``s mod video_count``); by default the
    seed's own place, ``seed_index mod videos``. Different seeds must have different positions when
    they are given."""
    videos = max(videos, 1)
    position = seed_index % videos if position is None else position
    rounds = -(-seeds // videos)
    return position + videos * (EVAL_BASE + episode * rounds + seed_index // videos)


@dataclass(frozen=True)
class SeedVideos:
    """Which evaluation seeds of a mode are played, and the video each plays (VAI's protocol)."""

    videos: tuple[str, ...]
    """The mode's videos in the environment's order (empty outside the video modes)."""
    positions: dict[int, int]
    """Evaluation seed -> position of its video in ``videos`` (0 outside the video modes)."""
    skipped: tuple[int, ...] = ()
    """Seeds that are not evaluated: their clip is not in the data directory."""
    reason: str = ""
    """One line: which seeds are skipped, why, and how to get their clips."""


def seed_videos(mode: str, seeds: int, data_dir: str | Path | None = None) -> SeedVideos:
    """The seeds of ``mode`` that ``seeds`` evaluation seeds play, and their videos (see the module)."""
    paths = mode_videos(mode, None if data_dir is None else Path(data_dir))
    names = tuple(path.stem for path in paths)
    if mode != "video_easy":
        return SeedVideos(names, {seed: seed % max(len(paths), 1) for seed in range(seeds)})
    position_of_clip = {int(name.removeprefix("video")): position for position, name in enumerate(names)}
    positions = {seed: position_of_clip[seed] for seed in range(seeds) if seed in position_of_clip}
    skipped = tuple(seed for seed in range(seeds) if seed not in position_of_clip)
    reason = _skip_reason(mode, skipped, paths[0].parent) if skipped else ""
    return SeedVideos(names, positions, skipped, reason)


def _skip_reason(mode: str, skipped: tuple[int, ...], folder: Path) -> str:
    """One line: the skipped seeds, their missing clips, and how to get them."""
    from vai.data.registry import get_dataset

    registered = {Path(entry.path).name for entry in get_dataset(mode).files}

    def clips(chosen: list[int]) -> str:
        return ", ".join(f"video{seed}.mp4" for seed in chosen)

    fetchable = [seed for seed in skipped if f"video{seed}.mp4" in registered]
    unchecked = [seed for seed in skipped if seed < EASY_CLIPS_UPSTREAM and f"video{seed}.mp4" not in registered]
    beyond = [seed for seed in skipped if seed >= EASY_CLIPS_UPSTREAM]
    hints = []
    if fetchable:
        hints.append(f"'vai data fetch {mode}' gets {clips(fetchable)}")
    if unchecked:
        them, their = ("them", "their seeds") if len(unchecked) > 1 else ("it", "its seed")
        hints.append(
            f"'vai data fetch' has no checksum for {clips(unchecked)}: copy {them} from DMControl-GB's "
            f"src/env/data/video_easy/ into that folder to evaluate {their}"
        )
    if beyond:
        hints.append(f"DMControl-GB's {mode} has clips 0-{EASY_CLIPS_UPSTREAM - 1} only")
    plural = len(skipped) > 1
    return (
        f"{mode}: seed{'s' if plural else ''} {', '.join(map(str, skipped))} not evaluated: VAI's seed i plays "
        f"clip i, and {clips(list(skipped))} {'are' if plural else 'is'} not in {folder} ({'; '.join(hints)})"
    )


@dataclass
class ModeResult:
    """Episode returns (seeds, episodes) of one mode, and success flags where the task has them.

    Row ``r`` is evaluation seed ``seeds[r]``; seeds of ``skipped`` were asked for but not evaluated
    (``skip_reason`` says why), so ``returns`` may have fewer rows than seeds were asked, even none.
    """

    returns: np.ndarray
    success: np.ndarray | None = None
    videos: list[str] = field(default_factory=list)
    """The video each evaluated seed played, in the order of ``seeds`` (empty outside video modes)."""
    seeds: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    skip_reason: str = ""


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
    end_at_success: bool = True,
    compositing: str | None = None,
) -> dict[str, ModeResult]:
    """Returns per mode of ``agent`` on ``task``: ``episodes`` episodes of each evaluated seed.

    Seeds ``0 .. seeds - 1`` are asked for; in ``video_easy`` those whose clip is missing are skipped
    (see the module). The seeds of a mode run on ``workers`` threads at once (default: one per seed,
    at most one per usable core), each with an environment of its own, built and closed on its thread (GL
    contexts belong to one thread); they share the cores as torch threads (:mod:`vai.threads`). The
    environments' physics and rendering release Python's lock, so the seeds overlap; the policy's
    forward passes take turns. Every seed's episodes are what they
    would be alone: the returns do not depend on ``workers``. ``end_at_success=False`` plays DrawerWorld
    episodes to their time limit (VAI's training-time evaluation, ``train.py``). Video modes are
    composited as ``compositing`` says (default: the agent's preset's ``video_compositing``).
    """
    video_cache = video_cache or VideoCache()
    compositing = compositing or agent.preset.video_compositing
    oracle = agent.spec.oracle  # an oracle agent sees true mask x frame in every mode, as in training
    workers = max(1, min(seeds, workers or usable_cores()))
    results = {}
    threads = stage_threads(sharing=workers)
    with torch_threads(threads), ThreadPoolExecutor(workers, thread_name_prefix="vai-eval") as pool:
        for mode in modes:
            plan = seed_videos(mode, seeds, data_dir)

            def play(seed_index: int, mode: str = mode, plan: SeedVideos = plan) -> ModeResult:
                env = make_env(
                    task, mode, data_dir=data_dir, video_cache=video_cache, oracle=oracle, compositing=compositing
                )
                try:
                    return _evaluate_seed(
                        env, agent, seed_index, seeds, episodes, plan, test_time_adaptation, end_at_success
                    )
                finally:
                    env.close()

            evaluated = sorted(plan.positions)
            per_seed = list(pool.map(play, evaluated))
            success = [result.success for result in per_seed]
            results[mode] = ModeResult(
                np.stack([result.returns for result in per_seed]) if per_seed else np.zeros((0, episodes)),
                None if not per_seed or any(flags is None for flags in success) else np.stack(success),
                [video for result in per_seed for video in result.videos],
                evaluated,
                list(plan.skipped),
                plan.reason,
            )
    return results


def _evaluate_seed(
    env,
    agent,
    seed_index: int,
    seeds: int,
    episodes: int,
    plan: SeedVideos,
    test_time_adaptation: bool,
    end_at_success: bool,
) -> ModeResult:
    """Evaluation seed ``seed_index``'s episodes: returns (episodes,), success flags, its video."""
    videos, position = len(plan.videos), plan.positions[seed_index]
    returns = np.zeros(episodes)
    success = np.zeros(episodes, dtype=bool)
    has_success = False
    for episode in range(episodes):
        actor = copy.deepcopy(agent) if test_time_adaptation else agent
        obs, info = env.reset(seed=env_seed(seed_index, episode, seeds, videos, position))
        if videos and info.get("video") != plan.videos[position]:  # never silently another clip
            raise RuntimeError(
                f"evaluation seed {seed_index} must play {plan.videos[position]}, the environment "
                f"played {info.get('video')}"
            )
        done, total = False, 0.0
        # The same pixels as actor.act(obs); in the stored form each frame is adapted once (the
        # adapter is frozen, test-time adaptation included).
        stack = StoredStack(actor.observe, obs)
        while not done:
            action = actor.act_stored(stack.frames)
            next_obs, reward, terminated, truncated, info = env.step(action)
            stack.push(next_obs)
            if test_time_adaptation:
                actor.adapt(obs, action, next_obs)
            total += float(reward)
            # VAI's eval.py ends a DrawerWorld episode at its first success.
            reached = end_at_success and bool(info.get("success", False))
            obs, done = next_obs, terminated or truncated or reached
        returns[episode] = total
        if "episode_success" in info:
            has_success = True
            success[episode] = info["episode_success"]
    played = [plan.videos[position]] if videos else []
    return ModeResult(returns, success if has_success else None, played, [seed_index])


def training_evaluator(task: str, modes: list[str], episodes: int, data_dir=None):
    """``evaluate(agent) -> {mode: {"return": mean, "return_std": std, "seeds": n, ...}}`` for the
    training loop.

    The ``episodes`` of a mode are played as that many evaluation seeds of one episode each, so they
    run at once (one thread and environment each, as :func:`evaluate` plays seeds) and, in a video
    mode, on as many videos; the same episodes at every evaluation of a run. In ``video_easy`` the
    seeds whose clip is missing are skipped as in :func:`evaluate`: a warning names the seeds played
    and the skipped ones once, ``seeds`` counts the seeds a mean covers, and a mode with none is left
    out. DrawerWorld episodes run to their time limit, as VAI's training-time evaluation.
    """
    import warnings

    for mode in modes:
        plan = seed_videos(mode, episodes, data_dir)
        if plan.skipped:
            covered = ", ".join(map(str, sorted(plan.positions))) or "none"
            warnings.warn(f"training evaluations play seeds {covered} of {mode}; {plan.reason}", stacklevel=2)
    video_cache = VideoCache()

    def run(agent) -> dict[str, dict[str, float]]:
        results = evaluate(agent, task, modes, episodes, 1, data_dir, video_cache=video_cache, end_at_success=False)
        summary = {}
        for mode, result in results.items():
            if not result.seeds:
                continue
            summary[mode] = {
                "return": float(result.returns.mean()),
                "return_std": float(result.returns.std()),
                "seeds": len(result.seeds),
            }
            if result.success is not None:
                summary[mode]["success"] = float(result.success.mean())
        return summary

    return run
