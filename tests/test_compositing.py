"""Video compositing: DMControl-GB's green screen and key beside vai's segmentation, on real renders.

Both compositings replay the same seed and actions, so frames differ only in how the video is put
behind the agent; the physics, rewards and ground-truth masks must not differ at all.
"""

from __future__ import annotations

import colorsys
import json

import numpy as np
import pytest

import vai
from vai.tasks import IMAGE_SIZE

STEPS = 12


def reference_key(pixel: np.ndarray) -> bool:
    """DMControl-GB's key of one pixel, written from its definition with Python's colorsys."""
    hue, saturation, value = colorsys.rgb_to_hsv(*(pixel / 255.0))
    return 100 <= hue * 360 <= 185 and 80 <= saturation * 255 <= 255 and 70 <= value * 255 <= 255


def test_green_key_is_dmcontrol_gbs_hsv_key():
    from vai.envs.distractions import GREEN, green_pixels

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (20000, 3), dtype=np.uint8)
    corners = [
        [round(c * 255) for c in GREEN],  # the screen itself
        [0, 0, 0],
        [255, 255, 255],
        [90, 90, 90],
        [0, 255, 0],
        [0, 69, 0],  # too dark
        [0, 70, 0],  # just bright enough
        [60, 100, 200],  # the suite's blue sky: not keyed
        [178, 127, 76],  # the agent's orange
    ]
    pixels = np.concatenate([np.array(corners, dtype=np.uint8), pixels])
    keyed = green_pixels(pixels.reshape(-1, 1, 3)).reshape(-1)
    assert keyed.tolist() == [reference_key(p.astype(np.float64)) for p in pixels]
    assert keyed[:9].tolist() == [True, False, False, False, True, False, True, False, False]
    assert 0.05 < keyed.mean() < 0.5  # the random pixels reach both sides of the key


def test_green_screen_paints_the_sky_and_floor_and_restore_undoes_it():
    import mujoco

    from vai.envs.distractions import ColorRandomizer, green_pixels, green_screen

    env = vai.make_env("walker_walk", seed=0)
    try:
        scene = env.unwrapped
        model = scene._model
        original = model.tex_data.copy()
        colors = ColorRandomizer(model, scene._renderer, [])
        for floor in (False, True):
            colors.paint(green_screen(floor=floor))
            rgb, segments = scene._renderer.render(scene._data, segmentation=True)
            sky = segments[..., 1] == -1
            floor_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "floor")
            floor_pixels = (segments[..., 0] == floor_id) & (segments[..., 1] == mujoco.mjtObj.mjOBJ_GEOM)
            assert sky.mean() > 0.2 and floor_pixels.mean() > 0.1
            # The sky is keyed but for pixels at the agent's anti-aliased edges.
            assert green_pixels(rgb)[sky].mean() > 0.98, "the green sky falls outside the key"
            keyed_floor = green_pixels(rgb)[floor_pixels].mean()
            # Unpainted, the floor is keyed only where it reflects the green sky.
            assert keyed_floor > 0.9 if floor else keyed_floor < 0.2
            colors.restore()
            assert np.array_equal(model.tex_data, original)
    finally:
        env.close()


def rollout(env, seed: int = 3):
    """Observations, infos, rewards and states of a seeded episode prefix with fixed random actions."""
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=seed)
    out = {"obs": [obs], "info": [info], "reward": [], "state": [env.unwrapped.physics.get_state().copy()]}
    for _ in range(STEPS):
        action = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        obs, reward, _, _, info = env.step(action)
        out["obs"].append(obs)
        out["info"].append(info)
        out["reward"].append(reward)
        out["state"].append(env.unwrapped.physics.get_state().copy())
    return out


@pytest.mark.parametrize("task", ["cartpole_balance", "walker_walk"])
@pytest.mark.parametrize("mode", ["video_easy", "video_hard"])
def test_greenscreen_keys_the_video_in_and_leaves_the_physics(task, mode, data_dir, video_cache):
    from vai.envs.distractions import green_pixels

    runs = {}
    for compositing in ("segmentation", "greenscreen"):
        env = vai.make_env(
            task, mode, data_dir=data_dir, foreground_mask=True, video_cache=video_cache, compositing=compositing
        )
        try:
            assert env.unwrapped.compositing == compositing
            runs[compositing] = rollout(env)
        finally:
            env.close()
    segmented, keyed = runs["segmentation"], runs["greenscreen"]
    assert keyed["reward"] == segmented["reward"]
    video = video_cache.get(data_dir / mode / f"{keyed['info'][0]['video']}.mp4", IMAGE_SIZE)
    for t in range(STEPS + 1):
        assert np.array_equal(keyed["state"][t], segmented["state"][t])
        truth = keyed["info"][t]["foreground_mask"][-1]
        assert np.array_equal(truth, segmented["info"][t]["foreground_mask"][-1])
        assert keyed["info"][t]["video_frame"] == segmented["info"][t]["video_frame"] == t
        frame = keyed["obs"][t][-3:].transpose(1, 2, 0)
        behind = video[t % len(video)]
        shows_video = np.all(frame == behind, axis=-1)
        # Every pixel shows the video or lies outside the green key: no green screen is left over.
        assert not green_pixels(frame)[~shows_video].any()
        # What segmentation replaces in video_easy (the sky) the key replaces too; in video_hard the
        # floor is keyed as well, so nearly all the background shows the video.
        segmented_frame = segmented["obs"][t][-3:].transpose(1, 2, 0)
        sky = np.all(segmented_frame == behind, axis=-1) & ~truth
        assert shows_video[sky].mean() > 0.99
        if mode == "video_hard":
            assert shows_video[~truth].mean() > 0.95
        # The agent keeps its colours but for the key's fringes.
        assert np.all(frame == segmented_frame, axis=-1)[truth].mean() > 0.7


def test_presets_name_their_compositing_and_older_agents_keep_segmentation():
    from vai.presets.rl import get_rl_preset, preset_from_record
    from vai.pretrained import find_bundle

    for name in ("paper", "quick"):  # VAI evaluates on DMControl-GB's
        assert get_rl_preset(name).video_compositing == "greenscreen"
    older = {k: v for k, v in vars(get_rl_preset("paper")).items() if k != "video_compositing"}
    assert preset_from_record(older).video_compositing == "segmentation"
    bundle = find_bundle("cartpole_balance-vai-seed0").agent()
    assert "video_compositing" not in json.dumps(bundle.card["settings"]["rl"])
    env = bundle.make_env("video_easy")
    try:
        assert env.unwrapped.compositing == "segmentation"
    finally:
        env.close()


def test_a_run_recorded_before_the_field_continues_only_under_its_compositing(tmp_path):
    from dataclasses import asdict

    from vai.errors import UserError
    from vai.pipeline import check_same_settings
    from vai.presets.rl import get_rl_preset

    rl = asdict(get_rl_preset("quick"))
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"rl": {k: v for k, v in rl.items() if k != "video_compositing"}}))
    with pytest.raises(UserError, match="video_compositing 'segmentation' -> 'greenscreen'"):
        check_same_settings(path, {"rl": rl})
    check_same_settings(path, {"rl": {**rl, "video_compositing": "segmentation"}})  # --set continues it


def test_an_unknown_compositing_is_refused():
    with pytest.raises(ValueError, match="segmentation, greenscreen"):
        vai.make_env("walker_walk", "video_easy", compositing="chroma")
