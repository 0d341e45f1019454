"""DeepMind Control pixel environments: every task in every DMControl-GB mode, on real MuJoCo renders.

The per-task tests share one environment per task (made once per task by a class-scoped fixture) and
switch modes between episodes with ``env.reset(options={"mode": m})``, exactly as a user evaluating
one agent in several modes would. Every comparison between modes replays the same seed and the same
actions, so frames can only differ in what the mode changes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import vai
from vai.data.video import VideoCache
from vai.errors import UserError
from vai.tasks import COLOR_MODES, DMC_MODES, DMC_TASKS, FRAME_STACK, IMAGE_SIZE, TASKS

SEED = 11
STEPS = 3
"""Agent steps per rollout: enough for the frame stack to hold three different frames."""

VIDEO_N = "video2"
"""The ``videoN`` mode tested (a video of the easy set that is present in the data)."""

MODES = (*DMC_MODES, VIDEO_N)
DISTRACTIONS = tuple(mode for mode in MODES if mode != "train")
VIDEO_MODES = ("video_easy", "video_hard", VIDEO_N)

UNCHANGED_BY_DESIGN = {("reacher_easy", "video_easy"), ("reacher_easy", VIDEO_N)}
"""The one documented exception: reacher's camera looks straight down and sees no sky, so the
sky-only video modes cannot change its frames (docs/data.md, "The test modes")."""

MIN_BACKGROUND_CHANGED = {
    "color_easy": 0.5,
    "color_hard": 0.5,
    "video_easy": 0.2,
    VIDEO_N: 0.2,
    "video_hard": 0.9,
}
"""Least fraction of background pixels that must differ from ``train``. Colour modes recolour floor
and sky, ``video_hard`` replaces every background pixel, sky-only modes replace the sky (20-90% of a
frame here; measured 58% walker, 64% cartpole, 73% finger, 75% ball_in_cup, 86% cheetah)."""


# -- helpers ---------------------------------------------------------------------------------------
@dataclass
class Rollout:
    """One episode prefix: index 0 is the reset, index t the state after step t."""

    observations: list[np.ndarray] = field(default_factory=list)
    infos: list[dict] = field(default_factory=list)
    states: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    terminated: list[bool] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)


def random_actions(space, count: int = STEPS, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(space.low, space.high).astype(space.dtype) for _ in range(count)]


def rollout(env, mode: str, actions, seed: int = SEED) -> Rollout:
    result = Rollout()
    obs, info = env.reset(seed=seed, options={"mode": mode})
    result.observations.append(obs)
    result.infos.append(info)
    result.states.append(env.unwrapped.physics.get_state().copy())
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        result.observations.append(obs)
        result.infos.append(info)
        result.states.append(env.unwrapped.physics.get_state().copy())
        result.rewards.append(reward)
        result.terminated.append(terminated)
        result.truncated.append(truncated)
    return result


def frame(obs: np.ndarray, k: int) -> np.ndarray:
    """Stacked frame ``k`` (0 = oldest) of an observation, as (3, H, W)."""
    return obs[3 * k : 3 * k + 3]


def step_of(t: int, k: int) -> int:
    """The step whose render is stacked frame ``k`` of the observation after step ``t``."""
    return max(0, t - (FRAME_STACK - 1) + k)


def video_frames(data_dir: Path, cache: VideoCache, mode: str, name: str) -> np.ndarray:
    """The decoded frames (T, H, W, 3) of the video called ``name`` used by ``mode``."""
    folder = "video_hard" if mode == "video_hard" else "video_easy"
    return cache.get(data_dir / folder / f"{name}.mp4", IMAGE_SIZE)


def video_names(folder: Path) -> list[str]:
    """``videoN`` stems of a folder, in the order of N."""
    return [p.stem for p in sorted(folder.glob("video*.mp4"), key=lambda p: int(p.stem[len("video") :]))]


@dataclass
class TaskCase:
    task: str
    env: object
    actions: list[np.ndarray]
    _rollouts: dict[str, Rollout] = field(default_factory=dict)

    def rollout(self, mode: str) -> Rollout:
        """The rollout of ``mode`` (same seed, same actions for every mode), made once."""
        if mode not in self._rollouts:
            self._rollouts[mode] = rollout(self.env, mode, self.actions)
        return self._rollouts[mode]


@pytest.fixture(scope="class", params=list(DMC_TASKS))
def dmc(request, data_dir, video_cache):
    env = vai.make_env(request.param, data_dir=data_dir, foreground_mask=True, video_cache=video_cache)
    try:
        yield TaskCase(request.param, env, random_actions(env.action_space))
    finally:
        env.close()


# -- every task x every mode -----------------------------------------------------------------------
class TestEveryTaskAndMode:
    @pytest.mark.parametrize("mode", MODES)
    def test_renders_and_steps(self, dmc, mode):
        env, preset = dmc.env, DMC_TASKS[dmc.task]
        assert env.unwrapped.action_repeat == preset.action_repeat
        assert env.unwrapped.max_episode_steps == 1000 // preset.action_repeat
        assert env.observation_space.shape == (3 * FRAME_STACK, IMAGE_SIZE, IMAGE_SIZE) == (9, 100, 100)
        assert env.observation_space.dtype == np.uint8

        run = dmc.rollout(mode)
        for t, (obs, info) in enumerate(zip(run.observations, run.infos)):
            assert obs.shape == (9, 100, 100) and obs.dtype == np.uint8
            assert env.observation_space.contains(obs)
            assert info["mode"] == mode
            mask = info["foreground_mask"]
            assert mask.dtype == np.bool_ and mask.shape == (FRAME_STACK, 100, 100)
            counts = mask.reshape(FRAME_STACK, -1).sum(axis=1)
            assert np.all(counts > 0), f"step {t}: empty foreground mask {counts}"
            # The agent never covers half of a DMC frame; a mask that does marks background too.
            assert np.all(counts < 0.5 * mask[0].size), f"step {t}: mask covers too much {counts}"
            if mode in COLOR_MODES:  # one setting per episode, reported at reset
                assert 0 <= run.infos[0]["color_index"] < 100
                assert info.get("color_index", run.infos[0]["color_index"]) == run.infos[0]["color_index"]
            if mode in VIDEO_MODES:
                assert info["video_frame"] == t
                assert info["video"] == run.infos[0]["video"]
        assert all(isinstance(r, float) and math.isfinite(r) for r in run.rewards), run.rewards
        assert run.terminated == [False] * STEPS and run.truncated == [False] * STEPS

        # The stack holds the last three frames, oldest first, and the masks are stacked alike.
        first, first_mask = run.observations[0], run.infos[0]["foreground_mask"]
        for k in range(1, FRAME_STACK):
            assert np.array_equal(frame(first, k), frame(first, 0))
            assert np.array_equal(first_mask[k], first_mask[0])
        for t in range(1, len(run.observations)):
            previous, current = run.observations[t - 1], run.observations[t]
            assert np.array_equal(current[:-3], previous[3:])
            masks, previous_masks = run.infos[t]["foreground_mask"], run.infos[t - 1]["foreground_mask"]
            assert np.array_equal(masks[:-1], previous_masks[1:])
        assert not np.array_equal(run.states[-1], run.states[0]), "stepping did not move the simulation"

    @pytest.mark.parametrize("mode", DISTRACTIONS)
    def test_distraction_changes_background_only(self, dmc, mode, data_dir, video_cache):
        train, test = dmc.rollout("train"), dmc.rollout(mode)
        for t in range(len(test.observations)):
            assert np.array_equal(test.states[t], train.states[t]), "a visual mode changed the physics"
            assert np.array_equal(test.infos[t]["foreground_mask"], train.infos[t]["foreground_mask"]), (
                f"step {t}: the ground-truth mask depends on the mode"
            )
        assert test.rewards == train.rewards

        if (dmc.task, mode) in UNCHANGED_BY_DESIGN:
            for t in range(len(test.observations)):
                assert np.array_equal(test.observations[t], train.observations[t]), (
                    f"{dmc.task} in {mode} was expected to be unchanged (no sky in view)"
                )
            return

        video = None
        if mode in VIDEO_MODES:
            video = video_frames(data_dir, video_cache, mode, test.infos[0]["video"])
        for t, (obs, info) in enumerate(zip(test.observations, test.infos)):
            for k in range(FRAME_STACK):
                pixels, reference = frame(obs, k), frame(train.observations[t], k)
                mask = info["foreground_mask"][k]
                changed = np.any(pixels != reference, axis=0)
                fraction = changed[~mask].mean()
                assert fraction >= MIN_BACKGROUND_CHANGED[mode], (
                    f"step {t} frame {k}: only {fraction:.0%} of background pixels differ from train"
                )
                if video is None:
                    continue
                # Compositing never touches the agent, and what it changes shows the video frame.
                assert not changed[mask].any(), f"step {t} frame {k}: video drawn over the agent"
                shown = video[step_of(t, k) % len(video)].transpose(2, 0, 1)
                assert np.array_equal(pixels[:, changed], shown[:, changed])
                if mode == "video_hard":
                    assert np.array_equal(pixels[:, ~mask], shown[:, ~mask]), "background not all video"

    def test_seed_controls_the_initial_state(self, dmc):
        env = dmc.env
        first, _ = env.reset(seed=1, options={"mode": "train"})
        state = env.unwrapped.physics.get_state().copy()
        other, _ = env.reset(seed=2)
        other_state = env.unwrapped.physics.get_state().copy()
        again, _ = env.reset(seed=1)
        assert np.array_equal(env.unwrapped.physics.get_state(), state)
        assert np.array_equal(again, first)
        assert not np.array_equal(other_state, state), "different seeds gave the same initial state"


# -- episodes, seeds, videos, modes ----------------------------------------------------------------
def test_episode_truncates_after_1000_simulator_steps(env_factory, data_dir):
    """Cartpole repeats each action 8 times: 125 agent steps make the 1000-step episode."""
    env = env_factory("cartpole_swingup", seed=0, data_dir=data_dir)
    assert DMC_TASKS["cartpole_swingup"].action_repeat == 8
    steps = 1000 // 8
    action = np.zeros(env.action_space.shape, dtype=np.float32)
    for i in range(1, steps + 1):
        _, reward, terminated, truncated, _ = env.step(action)
        assert math.isfinite(reward) and not terminated
        assert truncated == (i == steps), f"step {i}: truncated={truncated}"
    physics = env.unwrapped.physics
    # Cartpole's control step is one physics step, so simulated time = 1000 physics steps.
    assert physics.data.time == pytest.approx(1000 * physics.model.opt.timestep)
    import gymnasium

    with pytest.raises(gymnasium.error.ResetNeeded):  # not a silent restart by dm_control
        env.step(action)
    env.reset()
    env.step(action)


def test_two_envs_with_the_same_seed_replay_the_same_episode(env_factory, data_dir, video_cache):
    kwargs = dict(data_dir=data_dir, video_cache=video_cache)
    a = env_factory("walker_walk", seed=7, **kwargs)
    b = env_factory("walker_walk", seed=7, **kwargs)
    c = env_factory("walker_walk", seed=8, **kwargs)
    physics_a, physics_b = a.unwrapped.physics, b.unwrapped.physics
    initial = physics_a.get_state().copy()
    assert np.array_equal(physics_b.get_state(), initial)
    assert not np.array_equal(c.unwrapped.physics.get_state(), initial), "seeds 7 and 8 start alike"
    for action in random_actions(a.action_space, count=4, seed=3):
        obs_a, reward_a, *_ = a.step(action)
        obs_b, reward_b, *_ = b.step(action)
        assert np.array_equal(physics_a.get_state(), physics_b.get_state())
        assert np.array_equal(obs_a, obs_b) and reward_a == reward_b
    assert not np.array_equal(physics_a.get_state(), initial)
    # make_env(seed=7) seeds the first reset exactly as reset(seed=7) does.
    a.reset(seed=7)
    assert np.array_equal(physics_a.get_state(), initial)


def test_colour_setting_follows_the_seed(env_factory, data_dir):
    env = env_factory("cartpole_swingup", "color_hard", data_dir=data_dir)
    indices = {}
    for seed in range(6):
        _, info = env.reset(seed=seed)
        indices[seed] = info["color_index"]
    first, info = env.reset(seed=3)
    second, again = env.reset(seed=3)
    assert info["color_index"] == again["color_index"] == indices[3]
    assert np.array_equal(first, second)
    assert len(set(indices.values())) > 1, f"the seed does not choose the colour setting: {indices}"


def test_video_advances_with_the_steps_and_videos_go_in_turn(env_factory, data_dir, video_cache):
    env = env_factory("cartpole_swingup", data_dir=data_dir, video_cache=video_cache)
    available = video_names(data_dir / "video_easy")
    actions = random_actions(env.action_space, count=3, seed=1)
    train = rollout(env, "train", actions, seed=0)
    test = rollout(env, "video_easy", actions, seed=0)
    assert test.infos[0]["video"] in available
    video = video_frames(data_dir, video_cache, "video_easy", test.infos[0]["video"])
    previous_region = None
    for t, (obs, info) in enumerate(zip(test.observations, test.infos)):
        assert info["video_frame"] == t
        current = frame(obs, FRAME_STACK - 1)
        # Where the frame differs from train, the video shows, and it shows the frame of this step.
        region = np.any(current != frame(train.observations[t], FRAME_STACK - 1), axis=0)
        assert region.mean() > 0.2
        assert np.array_equal(current[:, region], video[t % len(video)].transpose(2, 0, 1)[:, region])
        if previous_region is not None:
            before = frame(test.observations[t - 1], FRAME_STACK - 1)
            moved = np.any(current != before, axis=0) & region & previous_region
            assert moved.sum() > 100, f"step {t}: the background video did not advance"
        previous_region = region

    # One video per episode, in turn (in the order of N, wrapping around).
    names = [test.infos[0]["video"]]
    for _ in range(2):
        _, info = env.reset()
        assert info["video_frame"] == 0
        names.append(info["video"])
    for before, after in zip(names, names[1:]):
        assert available.index(after) == (available.index(before) + 1) % len(available), names

    # A seeded reset reproduces the choice.
    _, chosen = env.reset(seed=4)
    env.reset()
    _, again = env.reset(seed=4)
    assert chosen["video"] == again["video"]


@pytest.mark.parametrize("mode", ["video_easy", "video_hard", VIDEO_N])
def test_evaluation_seed_i_plays_clip_i_in_every_episode(env_factory, data_dir, video_cache, mode):
    """VAI evaluates seed i as ``--mode video$i``: seed i of video_easy plays clip i, and a seed whose
    clip the data lacks is not evaluated (never given another clip). video_hard, which VAI does not
    evaluate: seed i plays the i-th clip of the development split, clip 30 + i. videoN: clip N."""
    from vai.rl.evaluate import env_seed, seed_videos

    env = env_factory("cartpole_balance", mode, data_dir=data_dir, video_cache=video_cache)
    seeds, episodes = 10, 3
    plan = seed_videos(mode, seeds, data_dir)
    videos = env.unwrapped.video_count  # read before the first reset, as the evaluation does
    assert videos == len(plan.videos)
    env_seeds = {
        (seed, episode): env_seed(seed, episode, seeds, videos, position)
        for seed, position in plan.positions.items()
        for episode in range(episodes)
    }
    assert len(set(env_seeds.values())) == len(env_seeds)  # every episode its own physics
    played = {seed: set() for seed in plan.positions}
    for (seed, _), value in env_seeds.items():
        played[seed].add(env.reset(seed=value)[1]["video"])
    assert videos == env.unwrapped.video_count  # the same after a reset
    if mode == "video_easy":
        available = {int(name.removeprefix("video")) for name in video_names(data_dir / mode)}
        assert sorted(played) == sorted(available & set(range(seeds)))
        assert plan.skipped == tuple(sorted(set(range(seeds)) - available))
        assert played == {seed: {f"video{seed}"} for seed in played}
        if 3 not in available and 6 in available:  # the shared data: seed 3 skipped, not given clip 6
            assert 3 in plan.skipped and played[6] == {"video6"}
    elif mode == "video_hard":
        assert played == {seed: {f"video{30 + seed}"} for seed in range(seeds)}
    else:
        assert played == {seed: {VIDEO_N} for seed in range(seeds)}


def test_video_n_always_uses_video_n(env_factory, data_dir, video_cache):
    env = env_factory("cartpole_swingup", VIDEO_N, data_dir=data_dir, video_cache=video_cache)
    seen = [env.reset(seed=0)[1]["video"], env.reset()[1]["video"], env.reset(seed=5)[1]["video"]]
    seen += [env.reset()[1]["video"]]
    assert seen == [VIDEO_N] * 4


def test_mode_switches_between_episodes_and_train_colours_come_back(env_factory, data_dir):
    env = env_factory("cartpole_swingup", data_dir=data_dir)
    train_before, _ = env.reset(seed=5)
    env.unwrapped.set_mode("color_hard")
    # Modes switch between episodes, never within one.
    _, _, _, _, info = env.step(np.zeros(1, dtype=np.float32))
    assert info["mode"] == "train"
    coloured, info = env.reset(seed=5)
    assert info["mode"] == "color_hard" and "color_index" in info
    assert not np.array_equal(coloured, train_before)

    back, info = env.reset(seed=5, options={"mode": "train"})
    assert info["mode"] == "train" and "color_index" not in info
    fresh = env_factory("cartpole_swingup", data_dir=data_dir)
    fresh_obs, _ = fresh.reset(seed=5)
    assert np.array_equal(back, fresh_obs), "train colours were not restored after a colour episode"
    assert np.array_equal(back, train_before)


def test_mode_switch_with_another_env_alive_restores_train_colours(env_factory, data_dir):
    first = env_factory("cartpole_swingup", data_dir=data_dir)
    train, _ = first.reset(seed=0)
    coloured, _ = first.reset(seed=0, options={"mode": "color_hard"})
    assert not np.array_equal(coloured, train)
    other = env_factory("cartpole_swingup", data_dir=data_dir)  # its GL context is now current
    other.reset(seed=0)
    back, _ = first.reset(seed=0, options={"mode": "train"})
    assert np.array_equal(back, train), "first env still draws the colour setting after switching to train"


def test_render_returns_the_latest_frame(env_factory, data_dir):
    import gymnasium

    env = env_factory("cartpole_swingup", data_dir=data_dir, render_mode="rgb_array")
    with pytest.raises(gymnasium.error.ResetNeeded):
        env.render()
    obs, _ = env.reset(seed=0)
    assert np.array_equal(env.render(), frame(obs, FRAME_STACK - 1).transpose(1, 2, 0))
    obs, *_ = env.step(np.ones(1, dtype=np.float32))
    assert np.array_equal(env.render(), frame(obs, FRAME_STACK - 1).transpose(1, 2, 0))
    with pytest.raises(UserError, match="render_mode"):
        env_factory("cartpole_swingup", data_dir=data_dir, render_mode="human")


# -- bad input -------------------------------------------------------------------------------------
def test_unknown_task_lists_the_tasks():
    with pytest.raises(UserError) as error:
        vai.make_env("walker_run")
    message = str(error.value)
    assert "walker_run" in message and "\n" not in message
    assert all(task in message for task in TASKS), message


def test_unknown_mode_lists_the_modes(env_factory, data_dir):
    with pytest.raises(UserError) as error:
        env_factory("cartpole_swingup", "video_medium", data_dir=data_dir)
    message = str(error.value)
    assert "video_medium" in message and "videoN" in message
    assert all(mode in message for mode in DMC_MODES), message

    env = env_factory("cartpole_swingup", data_dir=data_dir)
    with pytest.raises(UserError, match="color_medium"):
        env.unwrapped.set_mode("color_medium")
    _, info = env.reset(seed=0)
    assert info["mode"] == "train"


def test_bad_actions_are_value_errors_and_change_nothing(env_factory, data_dir):
    env = env_factory("cartpole_swingup", seed=0, data_dir=data_dir)
    physics = env.unwrapped.physics
    state = physics.get_state().copy()
    cases = [
        (np.zeros(2, dtype=np.float32), r"shape \(2,\).*\(1,\)"),
        (np.zeros((1, 1), dtype=np.float32), r"shape \(1, 1\)"),
        (np.array([1.5]), "outside the bounds"),
        (np.array([-3.0]), "outside the bounds"),
        (np.array([np.nan]), "NaN"),
    ]
    for action, message in cases:
        with pytest.raises(ValueError, match=message):
            env.step(action)
        assert np.array_equal(physics.get_state(), state), f"{action} was refused but simulated"
    _, reward, *_ = env.step([0.5])  # a plain list of the right length is fine
    assert math.isfinite(reward)


@pytest.mark.parametrize(
    ("mode", "data_set"),
    [("video_easy", "video_easy"), ("video_hard", "video_hard"), (VIDEO_N, "video_easy")],
)
def test_missing_video_data_names_the_data_set_and_the_fetch_command(env_factory, tmp_path, mode, data_set):
    with pytest.raises(UserError) as error:
        env = env_factory("cartpole_swingup", mode, data_dir=tmp_path / "empty")
        env.reset(seed=0)
    message = str(error.value)
    assert data_set in message and f"vai data fetch {data_set}" in message and "\n" not in message


def test_missing_colour_data_falls_back_to_the_generator_with_a_warning(env_factory, tmp_path, data_dir):
    train = env_factory("cartpole_swingup", data_dir=data_dir)
    train_obs, _ = train.reset(seed=0)
    with pytest.warns(UserWarning, match="vai data fetch colors"):
        env = env_factory("cartpole_swingup", "color_easy", data_dir=tmp_path / "empty")
        obs, info = env.reset(seed=0)
    assert info["mode"] == "color_easy" and 0 <= info["color_index"] < 100
    assert not np.array_equal(obs, train_obs)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupted_video_is_a_user_error(env_factory, tmp_path, data_dir, damage):
    folder = tmp_path / "data" / "video_easy"
    folder.mkdir(parents=True)
    original = (data_dir / "video_easy" / "video0.mp4").read_bytes()
    if damage == "garbage":
        content = np.random.default_rng(0).integers(0, 256, len(original) // 4, dtype=np.uint8).tobytes()
    else:
        content = original[: len(original) // 2]
    (folder / "video0.mp4").write_bytes(content)
    with pytest.raises(UserError) as error:
        env = env_factory("cartpole_swingup", "video0", data_dir=tmp_path / "data", video_cache=VideoCache())
        env.reset(seed=0)
    message = str(error.value)
    assert "video0.mp4" in message and "vai data" in message and "\n" not in message


def test_video_not_in_the_set_names_the_available_ones(env_factory, data_dir):
    available = video_names(data_dir / "video_easy")
    missing = next(f"video{n}" for n in range(100) if f"video{n}" not in available)
    with pytest.raises(UserError) as error:
        env_factory("cartpole_swingup", missing, data_dir=data_dir)
    message = str(error.value)
    assert missing in message
    assert all(name in message for name in available), message


# -- Gymnasium -------------------------------------------------------------------------------------
def test_gymnasium_env_checker_passes(env_factory, data_dir, video_cache):
    from gymnasium.utils.env_checker import check_env

    env = env_factory(
        "cartpole_swingup", "video_hard", data_dir=data_dir, foreground_mask=True, video_cache=video_cache
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    assert not [str(w.message) for w in caught if "gymnasium" in str(w.filename)]


def test_gymnasium_make_after_import_vai(monkeypatch, data_dir):
    import gymnasium

    from vai.envs.factory import gym_id

    assert all(gym_id(task) in gymnasium.registry for task in TASKS)
    monkeypatch.setenv("VAI_DATA_DIR", str(data_dir))
    env = gymnasium.make("vai/walker_walk-v0", mode="color_easy")
    try:
        assert env.spec.nondeterministic is True
        assert env.spec.max_episode_steps == 1000 // DMC_TASKS["walker_walk"].action_repeat
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            obs, info = env.reset(seed=0)
        assert not [str(w.message) for w in caught if "colour set" in str(w.message)], "used the generator"
        assert obs.shape == (9, 100, 100) and info["mode"] == "color_easy" and "color_index" in info
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and math.isfinite(reward)
    finally:
        env.close()
