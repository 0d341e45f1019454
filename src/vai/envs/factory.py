"""One factory for every vai environment, and their Gymnasium ids."""

from __future__ import annotations

import os
from pathlib import Path

from vai.envs.gl import ensure_backend
from vai.tasks import DMC_TASKS, TASKS, DMCTask, check_compositing, check_mode, get_task

GYM_NAMESPACE = "vai"


def make_env(
    task: str,
    mode: str = "train",
    seed: int | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    foreground_mask: bool = False,
    render_mode: str | None = None,
    video_cache=None,
    oracle: bool = False,
    compositing: str = "segmentation",
):
    """A pixel environment for ``task`` in test ``mode``.

    Example::

        env = vai.make_env("walker_walk", mode="color_hard", seed=0)
        obs, info = env.reset()          # obs: uint8 (9, 100, 100), 3 stacked RGB frames

    ``seed`` seeds the first reset (``env.reset(seed=...)`` overrides it). ``foreground_mask=True``
    adds the ground-truth mask of each stacked frame to ``info`` (for measurement only); ``oracle=True``
    blacks out every pixel off the agent by that mask (the tables' oracle row: what a perfect
    attention adapter would give; never a preset default). ``compositing`` is how video modes put the
    video behind the agent: ``"segmentation"`` (exactly the pixels segmentation marks) or
    ``"greenscreen"`` (DMControl-GB's green key, as VAI evaluates; DeepMind Control only). Modes switch
    between episodes with ``env.unwrapped.set_mode(...)`` or ``env.reset(options={"mode": ...})``.
    Pass one ``vai.data.video.VideoCache`` to many environments to decode each video once.
    """
    preset = get_task(task)
    check_mode(preset, mode)
    ensure_backend()
    directory = Path(data_dir) if data_dir is not None else None
    if isinstance(preset, DMCTask):
        from vai.envs.dmc import DMCEnv

        env = DMCEnv(preset, mode, directory, foreground_mask, render_mode, video_cache, oracle, compositing)
    else:
        check_compositing(compositing)  # DrawerWorld has no video modes
        from vai.envs.drawer import DrawerEnv

        env = DrawerEnv(preset, mode, directory, foreground_mask, render_mode, oracle)
    if seed is not None:
        env.reset(seed=seed)
    return env


def gym_id(task: str) -> str:
    """The Gymnasium id of a task, e.g. ``vai/walker_walk-v0``."""
    return f"{GYM_NAMESPACE}/{task}-v0"


def register_envs() -> None:
    """Register every task with Gymnasium: ``gymnasium.make("vai/walker_walk-v0", mode="video_easy")``.

    Rendering makes pixels that can differ in the last bit between GL drivers, so the ids are
    registered as nondeterministic.
    """
    import gymnasium

    for name, preset in TASKS.items():
        if gym_id(name) in gymnasium.registry:
            continue
        steps = (
            preset.episode_sim_steps // preset.action_repeat
            if name in DMC_TASKS
            else preset.episode_env_steps // preset.action_repeat
        )
        gymnasium.register(
            id=gym_id(name),
            entry_point="vai.envs.factory:make_env",
            kwargs={"task": name},
            nondeterministic=True,
            max_episode_steps=steps,
            disable_env_checker=True,
        )
