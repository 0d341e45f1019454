"""DrawerWorld: Meta-World drawer tasks from VAI's top-down camera, table textures as test modes.

Rendering is real (MuJoCo, the same GL backend as the environments). Where a test needs to know which
object a pixel shows, it renders MuJoCo's segmentation of the environment's own model and data from
the camera in the task preset, with its own renderer, after the environment has drawn its frames.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from vai.errors import UserError
from vai.tasks import DRAWER_MODES, DRAWER_TASKS, DRAWER_TEXTURES, FRAME_STACK, IMAGE_SIZE

SEED = 0
SUPERSAMPLE = 4
"""Segmentation is drawn at 4x the frame size to see what each pixel's anti-aliasing samples saw."""


# -- helpers ---------------------------------------------------------------------------------------
def last_frame(obs: np.ndarray) -> np.ndarray:
    return obs[-3:]


def render_segmentation(env, size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """RGB (size, size, 3) and segmentation (size, size, 2: id, type) of the env's current state."""
    import mujoco

    task, sim = env.unwrapped.task, env.unwrapped.simulator
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    camera.azimuth = task.camera["azimuth"]
    camera.elevation = task.camera["elevation"]
    camera.distance = task.camera["distance"]
    camera.lookat[:] = task.camera["lookat"]
    renderer = mujoco.Renderer(sim.model, size, size)
    try:
        renderer.update_scene(sim.data, camera=camera)
        rgb = renderer.render().copy()
        renderer.enable_segmentation_rendering()
        segments = renderer.render().copy()
    finally:
        renderer.close()
    return rgb, segments


def pixel_bodies(model, segments: np.ndarray) -> np.ndarray:
    """Body id drawn at each pixel (-1 where no geom or site was drawn)."""
    import mujoco

    ids, types = segments[..., 0], segments[..., 1]
    bodies = np.full(ids.shape, -1)
    geoms = types == int(mujoco.mjtObj.mjOBJ_GEOM)
    sites = types == int(mujoco.mjtObj.mjOBJ_SITE)
    bodies[geoms] = model.geom_bodyid[ids[geoms]]
    bodies[sites] = model.site_bodyid[ids[sites]]
    return bodies


def subtree(model, name: str) -> np.ndarray:
    """Ids of body ``name`` and all its descendants."""
    import mujoco

    root = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
    assert root >= 0, name
    members = [root]
    for body in range(root + 1, model.nbody):  # parents precede children in MuJoCo's body order
        if model.body_parentid[body] in members:
            members.append(body)
    return np.array(members)


def table_pixels(model, segments: np.ndarray, material: str) -> np.ndarray:
    """Where the segmentation shows a geom that uses the table's material."""
    import mujoco

    material_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_MATERIAL, material)
    assert material_id >= 0, material
    table_geoms = np.flatnonzero(model.geom_matid == material_id)
    assert len(table_geoms) > 0
    return (segments[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM)) & np.isin(segments[..., 0], table_geoms)


def dilate(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy : dy + mask.shape[0], dx : dx + mask.shape[1]]
    return out


# -- rendering, stepping, the mask -----------------------------------------------------------------
@pytest.mark.parametrize("task", list(DRAWER_TASKS))
def test_renders_and_steps_with_a_mask(env_factory, data_dir, task):
    env = env_factory(task, data_dir=data_dir, foreground_mask=True)
    preset = DRAWER_TASKS[task]
    assert env.unwrapped.action_repeat == preset.action_repeat == 2
    assert env.unwrapped.max_episode_steps == preset.episode_env_steps // 2 == 100
    assert env.action_space.shape == (4,)
    obs, info = env.reset(seed=SEED)
    assert info["mode"] == "train" and info["success"] is False and info["episode_success"] is False
    observations, masks = [obs], [info["foreground_mask"]]
    rng = np.random.default_rng(0)
    for _ in range(2):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        assert isinstance(reward, float) and math.isfinite(reward)
        assert not terminated and not truncated
        assert isinstance(info["success"], bool) and isinstance(info["episode_success"], bool)
        observations.append(obs)
        masks.append(info["foreground_mask"])
    for obs, mask in zip(observations, masks):
        assert obs.shape == (9, 100, 100) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
        assert mask.dtype == np.bool_ and mask.shape == (FRAME_STACK, 100, 100)
        counts = mask.reshape(FRAME_STACK, -1).sum(axis=1)
        assert np.all(counts > 0) and np.all(counts < 0.6 * mask[0].size), counts
    for t in range(1, len(observations)):
        assert np.array_equal(observations[t][:-3], observations[t - 1][3:])
        assert np.array_equal(masks[t][:-1], masks[t - 1][1:])
    assert not np.array_equal(observations[-1][-3:], observations[0][-3:]), "the arm did not move"


def test_image_is_upright_and_the_mask_is_arm_plus_drawer(env_factory, data_dir):
    """Arm from the left, drawer on the right, world x pointing down the image.

    MuJoCo's free camera at azimuth 180 deg and elevation -90 deg looks straight down with world +y
    to the right of the image and world +x towards its bottom. The drawer sits at y = 0.9 (right of
    the look-at point y = 0.6) and the seed moves it along x, so a larger x must draw it lower.
    """
    env = env_factory("drawer_open", data_dir=data_dir, foreground_mask=True)
    sim = env.unwrapped.simulator
    model = sim.model
    drawer_x = {}
    for seed in range(8):
        env.reset(seed=seed)
        drawer_x[seed] = float(sim.data.body("drawer").xpos[0])
    low, high = min(drawer_x, key=drawer_x.get), max(drawer_x, key=drawer_x.get)
    spread = drawer_x[high] - drawer_x[low]
    assert spread > 0.05, f"the seed hardly moves the drawer: {drawer_x}"

    drawer_bodies, arm_bodies = subtree(model, "drawer"), subtree(model, "right_arm_base_link")
    rows = {}
    for seed in (low, high):
        obs, info = env.reset(seed=seed)
        rgb, segments = render_segmentation(env)
        assert np.array_equal(rgb.transpose(2, 0, 1), last_frame(obs)), "env frame is not the preset camera"
        bodies = pixel_bodies(model, segments)
        drawer, arm = np.isin(bodies, drawer_bodies), np.isin(bodies, arm_bodies)
        assert np.array_equal(info["foreground_mask"][-1], drawer | arm), "mask is not exactly arm + drawer"
        drawer_rows, drawer_cols = np.nonzero(drawer)
        _, arm_cols = np.nonzero(arm)
        assert drawer_cols.mean() > 60, "the drawer is not on the right"
        assert arm_cols.mean() < 50 and arm[:, :2].any(), "the arm does not come in from the left"
        assert drawer_cols.mean() > arm_cols.mean()
        rows[seed] = drawer_rows.mean()
    fovy = math.radians(model.vis.global_.fovy)
    expected = spread * (IMAGE_SIZE / 2) / (env.unwrapped.task.camera["distance"] * math.tan(fovy / 2))
    assert rows[high] - rows[low] > 0.5 * expected, (
        f"drawer at x={drawer_x[high]:.3f} should be {expected:.1f} px lower than at x={drawer_x[low]:.3f}; "
        f"rows {rows[high]:.1f} vs {rows[low]:.1f} (image upside down?)"
    )


def test_textures_change_the_table_only(env_factory, data_dir):
    env = env_factory("drawer_open", data_dir=data_dir)
    frames = {}
    for mode in ("train", *DRAWER_TEXTURES):
        obs, info = env.reset(seed=SEED, options={"mode": mode})
        assert info["mode"] == mode
        frames[mode] = last_frame(obs)
    back, info = env.reset(seed=SEED, options={"mode": "train"})
    assert info["mode"] == "train"
    assert np.array_equal(last_frame(back), frames["train"]), "train texture not restored"
    assert np.array_equal(frames["grid"], frames["train"]), "grid is the training texture"

    # Same state in every mode (seeded resets), so the segmentation of the current state fits all.
    model, material = env.unwrapped.simulator.model, env.unwrapped.task.table_material
    _, segments = render_segmentation(env)
    table = table_pixels(model, segments, material)
    _, fine = render_segmentation(env, IMAGE_SIZE * SUPERSAMPLE)
    fine_table = table_pixels(model, fine, material).reshape(IMAGE_SIZE, SUPERSAMPLE, IMAGE_SIZE, SUPERSAMPLE)
    # A frame pixel blends several anti-aliasing samples, so it may show some table where the table
    # is seen by any of its 4x4 sub-samples: at object edges (also covered by a 1 px dilation of the
    # table) and through the sub-pixel cracks of the Sawyer arm's meshes seen from above.
    may_show_table = fine_table.any(axis=(1, 3)) | dilate(table)
    only_table = fine_table.all(axis=(1, 3))
    assert only_table.mean() > 0.5

    for mode in DRAWER_TEXTURES:
        if mode == "grid":
            continue
        changed = np.any(frames[mode] != frames["train"], axis=0)
        off_table = changed & ~may_show_table
        assert not off_table.any(), (
            f"{mode} changed {off_table.sum()} pixels off the table, e.g. {np.argwhere(off_table)[:5].tolist()}"
        )
        assert changed[only_table].mean() > 0.9, f"{mode} left most of the table as in train"
    textures = [mode for mode in DRAWER_TEXTURES if mode != "grid"]
    for i, first in enumerate(textures):
        for second in textures[i + 1 :]:
            assert not np.array_equal(frames[first], frames[second]), f"{first} and {second} look the same"


# -- seeds -----------------------------------------------------------------------------------------
def test_seed_controls_the_drawer_position_and_replays_the_episode(env_factory, data_dir):
    env = env_factory("drawer_open", data_dir=data_dir)
    sim = env.unwrapped.simulator

    def start(seed):
        obs, _ = env.reset(seed=seed)
        return obs, sim._last_rand_vec.copy(), sim.data.body("drawer").xpos.copy()

    obs_a, vec_a, drawer_a = start(1)
    obs_b, vec_b, drawer_b = start(2)
    obs_a2, vec_a2, drawer_a2 = start(1)
    assert np.array_equal(vec_a, vec_a2) and np.array_equal(drawer_a, drawer_a2)
    assert np.array_equal(obs_a, obs_a2)
    assert not np.allclose(vec_a, vec_b), "Meta-World's task vector ignores the seed"
    assert not np.allclose(drawer_a, drawer_b) and not np.array_equal(obs_a, obs_b)

    actions = np.random.default_rng(5).uniform(-1, 1, (3, 4)).astype(np.float32)

    def replay():
        env.reset(seed=3)
        observations = [env.step(action)[0] for action in actions]
        return observations, sim.data.qpos.copy(), sim.data.qvel.copy(), sim.data.mocap_pos.copy()

    first, second = replay(), replay()
    for one, other in zip(first[0], second[0]):
        assert np.array_equal(one, other)
    for one, other in zip(first[1:], second[1:]):
        assert np.array_equal(one, other)


# -- Meta-World's own expert -----------------------------------------------------------------------
def test_scripted_policy_opens_the_drawer(env_factory, data_dir):
    """Meta-World's scripted expert succeeds through our wrapper (action repeat 2, top-down camera).

    Meta-World's policies emit actions beyond [-1, 1] and rely on Meta-World's step clipping them;
    our wrapper refuses out-of-bound actions (ValueError), so the test clips exactly as Meta-World would.
    """
    from metaworld.policies import SawyerDrawerOpenV3Policy

    env = env_factory("drawer_open", data_dir=data_dir)
    policy = SawyerDrawerOpenV3Policy()
    _, info = env.reset(seed=SEED)
    assert env.unwrapped.last_state_observation.shape == (39,)
    assert info["episode_success"] is False
    limit = 99  # all but the last step of the episode; the expert needs about 45 steps
    flags, episode_flags = [], []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Constant.*too high")  # metaworld's own warning
        for _step in range(1, limit + 1):
            action = np.clip(policy.get_action(env.unwrapped.last_state_observation), -1.0, 1.0)
            _, reward, terminated, truncated, info = env.step(action)
            assert math.isfinite(reward) and not terminated and not truncated
            flags.append(info["success"])
            episode_flags.append(info["episode_success"])
            if info["episode_success"]:
                break
    assert info["episode_success"], f"the drawer was not opened within {limit} steps"
    # VAI's criterion: the flag an agent step returns was set at some step (the last of its Meta-World steps).
    assert episode_flags == list(np.logical_or.accumulate(flags))
    _, _, _, _, info = env.step(np.zeros(4, dtype=np.float32))
    assert info["episode_success"], "episode_success must stay set for the rest of the episode"
    _, info = env.reset(seed=SEED)
    assert info["episode_success"] is False


# -- VAI's v1 reward and success ---------------------------------------------------------------------
def vai_v1_reward(handle: np.ndarray, fingers: np.ndarray, distance: float, d_max: float) -> float:
    """VAI's drawer reward (its v1 ``compute_reward``), written out from the formula."""
    reach = float(np.linalg.norm(handle - fingers))
    if reach >= 0.05:
        return -reach
    pull = 1000 * (d_max - distance) + 1000 * (math.exp(-(distance**2) / 0.01) + math.exp(-(distance**2) / 0.001))
    return -reach + max(pull, 0.0)


@pytest.mark.parametrize("task, threshold", [("drawer_open", 0.08), ("drawer_close", 0.06)])
def test_reward_and_success_are_vais_v1_rules(env_factory, data_dir, task, threshold):
    """Every Meta-World step of the scripted expert's episode: the reward and the success flag are VAI's
    v1 formulas, computed here from the handle's and the fingers' positions; the episode passes through
    each of their regimes (fingers away, fingers on the handle, success)."""
    from metaworld.policies import SawyerDrawerCloseV3Policy, SawyerDrawerOpenV3Policy

    env = env_factory(task, data_dir=data_dir)
    policy = SawyerDrawerOpenV3Policy() if task == "drawer_open" else SawyerDrawerCloseV3Policy()
    env.reset(seed=SEED)
    drawer = env.unwrapped
    sim = drawer.simulator
    target_y = sim._target_pos[1]
    d_max = 0.2 if task == "drawer_open" else abs(drawer.last_state_observation[5] - target_y)
    regimes = set()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Constant.*too high")  # metaworld's own warning
        for _ in range(120):
            action = np.clip(policy.get_action(drawer.last_state_observation), -1.0, 1.0).astype(np.float32)
            reward, info = drawer._simulate(action)  # one Meta-World step, as the action repeat makes them
            handle = drawer.last_state_observation[4:7]
            fingers = (sim._get_site_pos("rightEndEffector") + sim._get_site_pos("leftEndEffector")) / 2
            distance = abs(handle[1] - target_y)
            assert info["handle_distance"] == pytest.approx(distance, abs=1e-12)
            assert reward == pytest.approx(vai_v1_reward(handle, fingers, distance, d_max), rel=1e-9, abs=1e-9)
            assert info["success"] == (distance <= threshold)
            regimes.add("success" if info["success"] else "near" if reward > 0 else "away")
    assert regimes == {"away", "near", "success"}


# -- episode length ----------------------------------------------------------------------------------
@pytest.mark.parametrize("task", list(DRAWER_TASKS))
def test_an_episode_lasts_100_agent_steps_as_in_vai(env_factory, data_dir, task):
    """VAI's wrapper ends an episode when its count of Meta-World steps reaches ``max_path_length``
    (200 in the Meta-World it forked): 100 agent steps at action repeat 2, not Meta-World v3's 500."""
    import gymnasium

    from vai.envs.factory import gym_id, register_envs

    env = env_factory(task, data_dir=data_dir)
    env.reset(seed=SEED)
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(np.zeros(4, dtype=np.float32))
        assert not terminated
        steps += 1
    assert steps == 100 and env.unwrapped.simulator.curr_path_length == 200
    with pytest.raises(gymnasium.error.ResetNeeded):
        env.step(np.zeros(4, dtype=np.float32))
    register_envs()
    assert gymnasium.spec(gym_id(task)).max_episode_steps == 100


# -- Gymnasium and bad input -----------------------------------------------------------------------
def test_gymnasium_env_checker_passes(env_factory, data_dir):
    from gymnasium.utils.env_checker import check_env

    env = env_factory("drawer_open", "blanket", data_dir=data_dir, foreground_mask=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    assert not [str(w.message) for w in caught if "gymnasium" in str(w.filename)]


def test_bad_modes_missing_textures_and_bad_actions(env_factory, tmp_path):
    env = env_factory("drawer_open", data_dir=tmp_path / "empty")  # train needs no data
    with pytest.raises(UserError) as error:
        env.unwrapped.set_mode("velvet")
    message = str(error.value)
    assert "velvet" in message and all(mode in message for mode in DRAWER_MODES), message

    with pytest.raises(UserError) as error:
        env.unwrapped.set_mode("blanket")
    message = str(error.value)
    assert "drawerworld" in message and "vai data fetch drawerworld" in message and "\n" not in message

    train, info = env.reset(seed=SEED)
    assert info["mode"] == "train"
    marble, info = env.reset(seed=SEED, options={"mode": "marble"})  # ships with metaworld
    assert info["mode"] == "marble" and not np.array_equal(marble, train)

    qpos = env.unwrapped.simulator.data.qpos.copy()
    for action, pattern in [(np.zeros(3), "shape"), (np.full(4, 2.0), "outside the bounds")]:
        with pytest.raises(ValueError, match=pattern):
            env.step(action)
    assert np.array_equal(env.unwrapped.simulator.data.qpos, qpos)
