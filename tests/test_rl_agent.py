"""SAC with PAD heads: update shapes and finite losses, target moves by tau, checkpoints, learning."""

from __future__ import annotations

import copy
import csv
import struct
import zipfile
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import damaged_copy
from torch import nn

from vai.errors import UserError
from vai.presets.rl import RLPreset, get_rl_preset, replay_transitions
from vai.rl.checkpoint import load_agent, save_checkpoint
from vai.rl.episodes import refill
from vai.rl.logger import RunLogger
from vai.rl.loop import LoopState, Trainer, update_numbers
from vai.rl.replay import ReplayBuffer
from vai.rl.sac import SACAgent, nstep_return
from vai.tasks import get_task
from vai.vision.adapter import AttentionAdapter

TINY = RLPreset(
    "tiny",
    train_steps=600,
    init_steps=100,
    batch_size=16,
    num_filters=8,
    feature_dim=16,
    hidden_dim=32,
    num_layers=2,
    num_shared_layers=1,
    aux_tasks=("inverse", "reward", "rotation"),
    eval_every=10**9,
    checkpoint_every=10**9,
)


def make_agent(
    algorithm: str = "sac", preset: RLPreset = TINY, seed: int = 0, adapter: AttentionAdapter | None = None
) -> SACAgent:
    if algorithm == "vai" and adapter is None:
        with torch.random.fork_rng(devices=[]):  # the same adapter in every test, whatever ran before
            torch.manual_seed(seed)
            adapter = AttentionAdapter(channels=4)
    return SACAgent(
        algorithm, (9, 100, 100), 2, preset, (preset.num_layers, preset.num_shared_layers), adapter, seed=seed
    )


def calibrated_adapter(seed: int = 0) -> AttentionAdapter:
    """A real adapter whose masks vary from pixel to pixel and from crop to crop: random weights,
    batch-norm statistics measured on random frames (a new adapter's 0 and 1 make its clamped masks
    all but constant). About a fifth of its mask is 0, a tenth 1, the rest in between."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adapter = AttentionAdapter(channels=4)
        frames = torch.rand(8, 3, 84, 84)
    for module in adapter.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # the plain mean over what it sees
            module.reset_running_stats()
    with torch.no_grad():
        adapter.train()(frames)
    return adapter.eval()


def adapted_by_hand(adapter: AttentionAdapter, crop: torch.Tensor, downsample: int = 1) -> torch.Tensor:
    """One raw uint8 crop (3F, S, S) as VAI's encoder adapts it: each frame times its clamped mask."""
    frames = crop.float().reshape(-1, 3, *crop.shape[-2:]) / 255
    with torch.no_grad():
        masked = (frames * adapter(frames)).reshape(crop.shape)
    return torch.nn.functional.avg_pool2d(masked, downsample) if downsample > 1 else masked


def filled_buffer(steps: int = 40, seed: int = 0) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(100, (3, 100, 100), 2)
    buffer.start_episode(rng.integers(0, 256, (9, 100, 100), dtype=np.uint8))
    for _ in range(steps):
        frame = rng.integers(0, 256, (9, 100, 100), dtype=np.uint8)
        buffer.add(rng.uniform(-1, 1, 2).astype(np.float32), float(rng.uniform()), False, frame)
    return buffer


@pytest.mark.parametrize(("algorithm", "nstep"), [("sac", 1), ("drq", 1), ("svea", 1), ("vai", 1), ("sac", 3)])
def test_update_gives_finite_losses_for_every_algorithm(algorithm, nstep):
    agent = make_agent(algorithm)
    buffer = filled_buffer()
    metrics = {}
    for step in (1, 2):
        metrics.update(agent.update(buffer.sample(16, nstep=nstep), step))
    expected = {
        "critic_loss",
        "q",
        "actor_loss",
        "alpha_loss",
        "alpha",
        "entropy",
        "aux_inverse_loss",
        "aux_reward_loss",
        "aux_rotation_loss",
    }
    assert set(metrics) == expected
    assert all(value.ndim == 0 and torch.isfinite(value) for value in metrics.values())
    action = agent.act(buffer.frames[:3].flatten(0, 1).numpy(), sample=True)
    assert action.shape == (2,) and np.all(np.abs(action) <= 1)


def test_target_critic_moves_by_tau():
    agent = make_agent()
    before = copy.deepcopy(agent.critic_target.state_dict())
    online = {k: v.clone() for k, v in agent.critic.state_dict().items()}
    with torch.no_grad():
        for parameter in agent.critic.parameters():
            parameter.add_(1.0)
    agent.soft_update_target()
    after = agent.critic_target.state_dict()
    for name, value in after.items():
        tau = TINY.encoder_tau if name.startswith("encoder.") else TINY.critic_tau
        expected = (1 - tau) * before[name] + tau * (online[name] + 1.0)
        assert torch.allclose(value, expected, atol=1e-6), name


def test_updates_move_the_target_by_tau_every_target_update_every_steps():
    agent = make_agent(preset=replace(TINY, aux_tasks=()))  # no heads: nothing changes the critic after
    assert TINY.target_update_every == 2
    buffer = filled_buffer()
    start = copy.deepcopy(agent.critic_target.state_dict())
    agent.update(buffer.sample(16), 1)
    assert all(torch.equal(value, start[name]) for name, value in agent.critic_target.state_dict().items())
    agent.update(buffer.sample(16), 2)
    online = agent.critic.state_dict()
    moved = 0
    for name, value in agent.critic_target.state_dict().items():
        tau = TINY.encoder_tau if name.startswith("encoder.") else TINY.critic_tau
        assert torch.allclose(value, (1 - tau) * start[name] + tau * online[name], atol=1e-6), name
        moved += not torch.equal(value, start[name])
    assert moved > 0


def test_actor_update_leaves_the_shared_convolutions_alone():
    # Two identical agents take one update on the same batch; only one of them updates its actor.
    preset = replace(TINY, aux_tasks=())
    with_actor = make_agent(preset=replace(preset, actor_update_every=1))
    without = make_agent(preset=replace(preset, actor_update_every=10**6))
    batch = filled_buffer().sample(16, torch.Generator().manual_seed(0))
    with_actor.update(batch, 1)
    without.update(batch, 1)
    convs = list(with_actor.critic.encoder.own.parameters())
    assert all(torch.equal(a, b) for a, b in zip(convs, without.critic.encoder.own.parameters()))
    assert not torch.equal(with_actor.actor.trunk[0].weight, without.actor.trunk[0].weight)
    assert not torch.equal(with_actor.actor.encoder.projection.weight, without.actor.encoder.projection.weight)


def test_heads_train_only_the_layers_they_share():
    agent = make_agent()
    convs = [p.clone() for p in agent.critic.encoder.own.parameters()]
    obs = agent.observe.train_view(filled_buffer().sample(16).obs)
    agent._update_aux(obs, torch.zeros(16, 2), torch.zeros(16, 1), obs)
    shared, own = list(agent.critic.encoder.own)[:1], list(agent.critic.encoder.own)[1:]
    assert not torch.equal(convs[0], shared[0].weight)
    assert torch.equal(convs[2], own[0].weight)


def test_checkpoint_round_trip_gives_identical_actions(tmp_path):
    agent = make_agent("vai", seed=3)
    buffer = filled_buffer()
    for step in (1, 2):
        agent.update(buffer.sample(16), step)
    save_checkpoint(agent, tmp_path / "agent.pt", "cartpole_balance", {"step": 2})
    loaded, payload = load_agent(tmp_path / "agent.pt")
    observations = buffer.sample(8).obs.numpy()
    assert payload["loop"] == {"step": 2} and payload["algorithm"] == "vai"
    for observation in observations:
        assert np.array_equal(agent.act(observation), loaded.act(observation))


def test_bad_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_agent(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="unreadable .not a torch checkpoint archive"):
        load_agent(tmp_path / "junk.pt")
    # A good file with some bytes of its largest tensor flipped: torch would load it without complaint.
    good = save_checkpoint(make_agent(), tmp_path / "good.pt", "cartpole_balance", {"step": 0})
    with zipfile.ZipFile(good) as archive:
        largest = max(archive.infolist(), key=lambda member: member.file_size)
    header = good.read_bytes()[largest.header_offset + 26 : largest.header_offset + 30]
    name_length, extra_length = struct.unpack("<HH", header)
    middle = largest.header_offset + 30 + name_length + extra_length + largest.file_size // 2
    damaged_copy(good, tmp_path / "damaged.pt", middle, middle + 64)
    with pytest.raises(UserError, match="damaged.pt is damaged .*checksum"):
        load_agent(tmp_path / "damaged.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a vai agent checkpoint"):
        load_agent(tmp_path / "other.pt")


def test_test_time_adaptation_changes_only_the_copy_it_is_given():
    agent = make_agent()
    buffer = filled_buffer()
    batch = buffer.sample(1)
    adapted = copy.deepcopy(agent)
    metrics = adapted.adapt(batch.obs[0].numpy(), np.zeros(2, np.float32), batch.next_obs[0].numpy())
    assert set(metrics) == {"aux_inverse_loss", "aux_rotation_loss"}  # no reward at test time
    assert not torch.equal(adapted.critic.encoder.own[0].weight, agent.critic.encoder.own[0].weight)
    assert torch.equal(adapted.actor.trunk[0].weight, agent.actor.trunk[0].weight)


class BrightSide(gym.Env):
    """A trivial pixel control problem: the bright half of the image says which action pays.

    Left half bright: the best action is +0.8; right half: -0.8. Reward 1 - |a0 - best| / 2 per step,
    episodes of 5 steps, a new random side every step. A random policy earns about 0.6 per step.
    """

    def __init__(self):
        self.observation_space = gym.spaces.Box(0, 255, (9, 100, 100), np.uint8)
        self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        self.side, self.steps = 0, 0

    def _observe(self) -> np.ndarray:
        image = np.zeros((9, 100, 100), np.uint8)
        columns = slice(0, 50) if self.side == 0 else slice(50, 100)
        image[:, :, columns] = 255
        return image

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.side, self.steps = int(self.np_random.integers(2)), 0
        return self._observe(), {}

    def step(self, action):
        best = 0.8 if self.side == 0 else -0.8
        reward = 1 - abs(float(action[0]) - best) / 2
        self.side, self.steps = int(self.np_random.integers(2)), self.steps + 1
        return self._observe(), reward, False, self.steps >= 5, {}


def test_sac_learns_a_trivial_pixel_problem_in_seconds(tmp_path):
    preset = replace(TINY, discount=0.5, aux_tasks=(), train_steps=400, init_steps=100, batch_size=32, actor_lr=3e-3)
    env = BrightSide()
    agent = make_agent(preset=preset, seed=0)
    buffer = ReplayBuffer(1000, (3, 100, 100), 2)
    with RunLogger(tmp_path, tensorboard=False) as logger:
        Trainer(env, agent, buffer, logger, preset, 1, tmp_path, "bright_side", seed=0, progress=False).train()
    left = np.zeros((9, 100, 100), np.uint8)
    left[:, :, :50] = 255
    right = 255 - left
    assert agent.act(left)[0] > 0.4 and agent.act(right)[0] < -0.4


def test_vai_view_is_the_adapted_centre_crop_and_replay_stores_adapted_frames():
    from vai.vision.adapter import AdaptedObservation

    agent = make_agent("vai", replace(TINY, adapter_per_crop=False), adapter=calibrated_adapter())
    raw = torch.randint(0, 256, (2, 9, 100, 100), dtype=torch.uint8)
    expected = AdaptedObservation(agent.observe.adapter)(raw)
    assert torch.allclose(agent.observe.eval_view(raw), expected, atol=1 / 255 + 1e-6)
    stored = agent.observe.store(raw[0].numpy())
    assert stored.shape == (3, 100, 100) and stored.dtype == np.uint8
    assert np.abs(stored[:, 8:92, 8:92] / 255 - expected[0, 6:9].numpy()).max() <= 1 / 255 + 1e-6
    assert np.array_equal(make_agent("sac").observe.store(raw[0].numpy()), raw[0, 6:9].numpy())


def test_downsampled_views_feed_a_smaller_encoder():
    agent = make_agent("drq", replace(TINY, downsample=2))
    raw = np.random.default_rng(0).integers(0, 256, (9, 100, 100), dtype=np.uint8)
    stored = agent.observe.store(raw)
    # Pooled once, when stored: each stored pixel is the mean of a 2x2 block of the newest frame.
    assert stored.shape == agent.observe.stored_shape((3, 100, 100)) == (3, 50, 50)
    block = raw[6:9].reshape(3, 50, 2, 50, 2).mean((2, 4))
    assert np.abs(stored.astype(float) - block).max() <= 0.5 + 1e-6
    buffer = ReplayBuffer(100, (3, 50, 50), 2)
    buffer.start_episode(stored)
    for _ in range(20):
        buffer.add(np.zeros(2, np.float32), 0.0, False, stored)
    assert agent.observe.train_view(buffer.sample(4).obs).shape == (4, 9, 42, 42)
    assert agent.observe.eval_view(torch.as_tensor(raw)[None]).shape == (1, 9, 42, 42)
    metrics = agent.update(buffer.sample(16), 2)
    assert all(torch.isfinite(value) for value in metrics.values())


@pytest.mark.parametrize("per_crop", [True, False])
@pytest.mark.parametrize("downsample", [1, 2])
def test_acting_on_stored_frames_equals_acting_on_the_observation(downsample, per_crop):
    # The training loop acts on the stack of frames it stored (adapted once, or raw per crop);
    # evaluation acts on the raw observation. Both give the policy the adapted centre crop.
    from vai.vision.adapter import AdaptedObservation

    preset = replace(TINY, downsample=downsample, adapter_per_crop=per_crop)
    agent = make_agent("vai", preset, adapter=calibrated_adapter())
    raw = np.random.default_rng(1).integers(0, 256, (9, 100, 100), dtype=np.uint8)
    frames = [agent.observe.store(raw[i : i + 3]) for i in (0, 3, 6)]
    # The adapter runs on one frame at a time in the loop and on the stack in evaluation; its float
    # results may differ in the last bits, so a stored pixel near a rounding edge may differ by one.
    stacked = agent.observe.store_stacks(torch.as_tensor(raw)[None])[0].numpy().astype(int)
    difference = np.abs(np.concatenate(frames).astype(int) - stacked)
    assert difference.max() <= 1 and np.mean(difference > 0) < 1e-3
    passes = record_conv_passes(agent)
    assert np.allclose(agent.act_stored(frames), agent.act(raw), atol=1e-3)
    with torch.no_grad():
        expected = AdaptedObservation(agent.observe.adapter)(torch.as_tensor(raw)[None])
    if downsample > 1:
        expected = torch.nn.functional.avg_pool2d(expected, downsample)
    # Per crop nothing is rounded; the stored form keeps uint8 frames (within one level).
    tolerance = 1e-5 if per_crop else 1 / 255 + 1e-6
    assert len(passes) == 2 and all(torch.allclose(images, expected, atol=tolerance) for images, _ in passes)


@pytest.mark.parametrize("updates_per_step", [1, 3])
def test_loop_makes_updates_per_step_updates_and_keeps_the_actor_schedule(tmp_path, updates_per_step):
    preset = replace(
        TINY, aux_tasks=(), train_steps=30, init_steps=10, updates_per_step=updates_per_step, init_burst=False
    )
    agent = make_agent(preset=preset)
    buffer = ReplayBuffer(100, (3, 100, 100), 2)
    with RunLogger(tmp_path, tensorboard=False) as logger:
        Trainer(BrightSide(), agent, buffer, logger, preset, 1, tmp_path, "bright_side", seed=0, progress=False).train()
    updates = (30 - 10) * updates_per_step

    def adam_steps(optimizer):
        return int(next(iter(optimizer.state.values()))["step"])

    assert adam_steps(agent.critic_optimizer) == updates
    assert adam_steps(agent.actor_optimizer) == updates // preset.actor_update_every


class Crash(Exception):
    pass


class CrashingBrightSide(BrightSide):
    """BrightSide that raises at its ``crash_at``-th step, as a killed process stops mid-episode."""

    def __init__(self, crash_at: int):
        super().__init__()
        self.crash_at, self.taken = crash_at, 0

    def step(self, action):
        self.taken += 1
        if self.taken == self.crash_at:
            raise Crash
        return super().step(action)


def train_tiny(directory, preset, env=None, agent=None, state=None, buffer=None, algorithm="sac"):
    agent = agent or make_agent(algorithm, preset, 3, calibrated_adapter(3) if algorithm == "vai" else None)
    buffer = buffer or ReplayBuffer(100, (3, 100, 100), 2, seed=3)
    with RunLogger(directory, tensorboard=False, resume_step=state.step if state else None) as logger:
        trainer = Trainer(
            env or BrightSide(), agent, buffer, logger, preset, 1, directory, "bright_side", 3, progress=False
        )
        trainer.train(state)
    return agent.state_dict()


def test_a_seed_reproduces_training_exactly(tmp_path):
    # Everything random in training (actions, replay draws, crops, policy noise) comes from the seed,
    # not from torch's global generator, which each process seeds at random.
    preset = replace(TINY, aux_tasks=("inverse",), train_steps=40, init_steps=20)
    with torch.random.fork_rng(devices=[]):  # leaves the global generator as it found it
        torch.manual_seed(1)
        first = train_tiny(tmp_path / "run1", preset)
        torch.manual_seed(2)
        second = train_tiny(tmp_path / "run2", preset)
    assert all(torch.equal(first[name], second[name]) for name in first)


@pytest.mark.parametrize(("algorithm", "per_crop"), [("sac", True), ("vai", True), ("vai", False)])
def test_a_resumed_run_ends_where_the_uninterrupted_run_ends(tmp_path, algorithm, per_crop):
    # Checkpoints hold every random state and the replay is rebuilt from the recorded episodes; vai
    # also augments when it acts, the first thing a resumed run does. The checkpoint's preset keeps
    # the adapter's placement: per crop, the recorded frames are raw and stay so.
    preset = replace(
        TINY, aux_tasks=("inverse",), train_steps=40, init_steps=10, checkpoint_every=15, adapter_per_crop=per_crop
    )
    whole = train_tiny(tmp_path / "whole", preset, algorithm=algorithm)
    run = tmp_path / "crashed"
    with pytest.raises(Crash):  # after the checkpoint at step 15 (end of episode 3), mid-episode 6
        train_tiny(run, preset, env=CrashingBrightSide(crash_at=28), algorithm=algorithm)
    agent, payload = load_agent(run / "checkpoints" / "last.pt", with_optimizers=True)
    state = LoopState(**payload["loop"])
    assert state.step == 15 and agent.preset.adapter_per_crop == per_crop
    left = np.zeros((3, 100, 100), np.uint8)
    left[:, :, :50] = 255
    with np.load(run / "replay" / "episode_000000.npz") as episode:  # BrightSide's own frames?
        raw = all(np.array_equal(frame, left) or np.array_equal(frame, 255 - left) for frame in episode["frames"])
    assert raw == (per_crop or algorithm == "sac")
    buffer = ReplayBuffer(100, (3, 100, 100), 2, seed=3)
    refill(buffer, run / "replay", state.episode)
    resumed = train_tiny(run, preset, agent=agent, state=state, buffer=buffer)
    assert all(torch.equal(whole[name], resumed[name]) for name in whole)


def test_nstep_return_discounts_each_step_and_bootstraps_after_the_last():
    buffer = ReplayBuffer(20, (3, 100, 100), 2)
    blank = np.zeros((3, 100, 100), np.uint8)
    buffer.start_episode(blank)
    for reward, terminated in ((1.0, False), (2.0, False), (4.0, True)):
        buffer.add(np.zeros(2, np.float32), reward, terminated, blank)
    batch = buffer.sample(200, torch.Generator().manual_seed(0), nstep=2)
    returns, bootstrap = nstep_return(batch, 0.5)
    expected = {1.0: (2.0, 0.25), 2.0: (4.0, 0.0), 4.0: (4.0, 0.0)}  # 1 + 0.5 x 2; 2 + 0.5 x 4 (terminal)
    for first, value, weight in zip(batch.reward[:, 0].tolist(), returns[:, 0].tolist(), bootstrap[:, 0].tolist()):
        assert (value, weight) == expected[first]


# -- VAI's training schedule, PAD heads and adapt_aug (its public code: train.py, agent.py, encoder.py) --


def test_paper_trains_vais_500k_agent_steps_on_every_task_and_quick_keeps_its_cartpole_length():
    paper, quick = get_rl_preset("paper"), get_rl_preset("quick")
    assert (paper.train_steps, paper.eval_every, paper.checkpoint_every, paper.eval_episodes) == (
        500_000,
        100_000,
        100_000,
        10,
    )
    assert replay_transitions(paper) == 250_000 and replay_transitions(quick) == quick.train_steps // 2
    for task in ("cartpole_balance", "walker_walk", "finger_spin"):  # action repeat 8, 4 and 2
        trainer = Trainer(None, None, None, None, paper, get_task(task).action_repeat, None, task, 0)
        assert trainer.total_steps == 500_000
    # quick is the cartpole run it was: 24,000 frames, evaluations every 12,000, checkpoints every 5,000.
    repeat = get_task("cartpole_balance").action_repeat
    assert (quick.train_steps * repeat, quick.eval_every * repeat, quick.checkpoint_every * repeat) == (
        24_000,
        12_000,
        5_000,
    )


def play_bright_side(agent) -> dict[str, dict[str, float]]:
    """An evaluation for the training loop: one episode of BrightSide with the mean action."""
    env, total, done = BrightSide(), 0.0, False
    obs, _ = env.reset(seed=0)
    while not done:
        obs, reward, terminated, truncated, _ = env.step(agent.act(obs))
        total, done = total + reward, terminated or truncated
    return {"train": {"return": total}}


@pytest.mark.parametrize("action_repeat", [1, 8])
def test_the_loop_counts_agent_steps_whatever_the_action_repeat(tmp_path, action_repeat):
    preset = replace(TINY, aux_tasks=(), train_steps=20, init_steps=5, eval_every=10, checkpoint_every=10)
    agent = make_agent(preset=preset)
    buffer = ReplayBuffer(100, (3, 100, 100), 2)
    with RunLogger(tmp_path, tensorboard=False) as logger:
        trainer = Trainer(
            BrightSide(), agent, buffer, logger, preset, action_repeat, tmp_path, "bright_side", 0, play_bright_side
        )
        state = trainer.train()
    assert state.step == 20 and state.episode == 4  # episodes of 5 agent steps

    def column(name: str, key: str) -> list[int]:
        with open(tmp_path / f"{name}.csv", newline="") as handle:
            return [int(float(row[key])) for row in csv.DictReader(handle)]

    assert column("eval_train", "step") == [0, 10, 20]  # every eval_every agent steps
    assert column("train", "frames") == [5 * action_repeat * episode for episode in (1, 2, 3, 4)]


def test_the_random_phase_ends_with_vais_burst_of_updates_numbered_as_its_step(tmp_path):
    # train.py: at step == init_steps, init_steps updates, each called with that step, so with an even
    # init_steps every schedule (actor, target, heads: step % 2 == 0) fires on every one of them.
    preset = replace(TINY, train_steps=30, init_steps=10)
    assert preset.init_burst and update_numbers(9, preset) == [] and update_numbers(11, preset) == [11]
    assert update_numbers(10, preset) == [10] * 10
    assert update_numbers(10, replace(preset, updates_per_step=2)) == [20] * 10
    assert update_numbers(10, replace(preset, init_burst=False)) == [10]
    agent = make_agent(preset=preset)
    with RunLogger(tmp_path, tensorboard=False) as logger:
        Trainer(BrightSide(), agent, ReplayBuffer(100, (3, 100, 100), 2), logger, preset, 1, tmp_path, "b", 0).train()

    def adam_steps(optimizer):
        return int(next(iter(optimizer.state.values()))["step"])

    assert adam_steps(agent.critic_optimizer) == 10 + 19  # the burst, then steps 11..29
    assert adam_steps(agent.actor_optimizer) == adam_steps(agent.aux_optimizer) == 10 + 9  # even steps 12..28


def record_conv_passes(
    agent: SACAgent, module: nn.Module | None = None, batch: int | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input, weight) of every later pass through the critic's first conv, which the actor's and
    PAD's encoders share (or through ``module``); with ``batch``, a call on several batches of that
    many images at once (the actor's step encodes its two views in one call) counts as one pass each."""
    module = module or agent.critic.encoder.own[0]
    passes = []

    def record(conv, args):
        for images in args[0].detach().split(batch or len(args[0])):
            passes.append((images.clone(), conv.weight.clone()))

    module.register_forward_pre_hook(record)
    return passes


def test_every_encoder_pass_of_a_vai_update_draws_its_own_adapt_aug():
    preset = replace(TINY, aux_tasks=("inverse", "reward"))
    batch = filled_buffer().sample(16, torch.Generator().manual_seed(0))
    agent = make_agent("vai", preset)
    passes = record_conv_passes(agent, batch=16)
    target_passes = record_conv_passes(agent, agent.critic_target.encoder.own[0])
    agent.update(batch, 2)  # step 2: the critic, the actor, the target and the heads all update
    # The target's actor (next_obs); the critic (obs); the actor's step, which encodes obs again for
    # the actor and for the critic, after the critic's optimiser step; the heads (obs, next_obs).
    assert len(passes) == 6 and len(target_passes) == 1
    inputs = [images for images, _ in passes]
    on_obs, on_next = inputs[1:5], [inputs[0], target_passes[0][0], inputs[5]]
    for group in (on_obs, on_next):
        for index, first in enumerate(group):
            for second in group[index + 1 :]:
                difference = (first - second).abs()
                # The same crop, each pass with its own boxes and noise.
                assert difference.max() > 0.05 and 0.003 < difference.median() < 0.02
    weights = [weight for _, weight in passes]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    assert torch.equal(weights[2], weights[5])
    # Without an adapter nothing is drawn per pass: the critic's and the actor's views of obs are one.
    sac = make_agent("sac", preset)
    plain = record_conv_passes(sac, batch=16)
    sac.update(batch, 2)
    assert len(plain) == 6 and all(torch.equal(plain[1][0], images) for images, _ in plain[2:5])
    # actor_reuses_critic_trunk: the actor's step takes the critic's conv output instead.
    reusing = make_agent("vai", replace(preset, actor_reuses_critic_trunk=True))
    fewer = record_conv_passes(reusing)
    reusing.update(batch, 2)
    assert len(fewer) == 4


def off_the_stored_grid(images: torch.Tensor) -> bool:
    """Whether ``images`` hold values other than the k / 255 of stored uint8 frames (adapt_aug's noise)."""
    scaled = images * 255
    return bool((scaled - scaled.round()).abs().max() > 0.05)


def test_a_vai_agent_augments_when_acting_in_training_and_not_once_loaded(tmp_path):
    from vai.envs import make_env
    from vai.rl.evaluate import evaluate, training_evaluator

    # The stored form puts clean views on the k / 255 grid, which tells augmented passes apart.
    preset = replace(
        TINY, aux_tasks=("inverse",), train_steps=12, init_steps=6, eval_episodes=1, adapter_per_crop=False
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        adapter = AttentionAdapter(channels=4)
    agent = SACAgent("vai", (9, 100, 100), 1, preset, (2, 1), adapter, seed=0)
    passes = record_conv_passes(agent)
    env = make_env("cartpole_balance", "train")
    evaluator = training_evaluator("cartpole_balance", ["train"], preset.eval_episodes)
    try:
        with RunLogger(tmp_path, tensorboard=False) as logger:
            trainer = Trainer(env, agent, ReplayBuffer(50, (3, 100, 100), 1), logger, preset, 8, tmp_path, "c", 0)
            trainer.evaluate = evaluator
            trainer.train()
    finally:
        env.close()
    acting = [off_the_stored_grid(images) for images, _ in passes if images.shape[0] == 1]
    # Two evaluations of 125 steps (the untrained policy, the end) and the 6 steps after the random phase.
    assert len(acting) == 2 * 125 + 6 and all(acting)
    assert not agent.augmenting  # the loop hands back an agent that acts as a loaded one
    save_checkpoint(agent, tmp_path / "agent.pt", "cartpole_balance", {"step": 12})
    loaded, _ = load_agent(tmp_path / "agent.pt")
    clean = record_conv_passes(loaded)
    evaluate(loaded, "cartpole_balance", ["train"], seeds=1, episodes=1)  # vai eval: VAI's eval.py, no adapt_aug
    assert len(clean) == 125 and not any(off_the_stored_grid(images) for images, _ in clean)
    observation = np.zeros((9, 100, 100), np.uint8)
    loaded.adapt(observation, np.zeros(1, np.float32), observation)  # PAD at test time: clean crops too
    assert not any(off_the_stored_grid(images) for images, _ in clean[125:])


def test_pad_heads_have_vais_shape_and_the_reward_head_reads_both_observations():
    assert get_rl_preset("paper").aux_tasks == get_rl_preset("quick").aux_tasks == ("inverse", "reward")
    agent = make_agent()  # TINY trains all three heads
    features, hidden = TINY.feature_dim, TINY.hidden_dim
    shapes = {
        name: [(layer.in_features, layer.out_features) for layer in head if isinstance(layer, nn.Linear)]
        for name, head in agent.aux.heads.items()
    }
    assert shapes == {
        "inverse": [(2 * features, hidden), (hidden, hidden), (hidden, 2)],
        "reward": [(2 * features, hidden), (hidden, hidden), (hidden, 1)],
        "rotation": [(features, hidden), (hidden, hidden), (hidden, 4)],
    }
    buffer = filled_buffer()
    obs, next_obs, other = (agent.observe.train_view(buffer.sample(8).obs) for _ in range(3))
    action, reward = torch.zeros(8, 2), torch.zeros(8, 1)
    with torch.no_grad():
        loss = agent.aux.losses(obs, action, reward, next_obs, ("reward",))["reward"]
        assert agent.aux.losses(obs, action + 1, reward, next_obs, ("reward",))["reward"] == loss
        assert agent.aux.losses(obs, action, reward, other, ("reward",))["reward"] != loss


def is_orthogonal(weight: torch.Tensor) -> bool:
    """Rows (or columns, whichever are fewer) orthonormal, as ``nn.init.orthogonal_`` makes them."""
    w = weight.detach().reshape(weight.shape[0], -1)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return torch.allclose(gram, torch.eye(len(gram)), atol=1e-4)


@pytest.mark.parametrize("init", ["default", "orthogonal"])
def test_pad_heads_own_encoder_layers_take_vais_default_initialisation_or_orthogonal(init):
    assert get_rl_preset("paper").aux_encoder_init == "default"  # VAI leaves its ss_encoder alone
    agent = make_agent(preset=replace(TINY, aux_encoder_init=init))
    encoder = agent.aux.encoder
    own = [encoder.projection, *encoder.own]
    assert own[1:], "TINY's heads have a conv of their own"
    for layer in own:
        if init == "orthogonal":
            assert not layer.bias.any()
        else:  # PyTorch's kaiming-uniform weights and uniform biases, within 1/sqrt(fan_in)
            fan_in = layer.weight[0].numel()
            assert layer.bias.abs().max() > 0 and layer.bias.abs().max() <= fan_in**-0.5
            assert not is_orthogonal(layer.weight) and layer.weight.abs().max() <= fan_in**-0.5
    assert is_orthogonal(encoder.projection.weight) == (init == "orthogonal")
    # The actor, the critic, the heads' MLPs and the shared convs are SAC-AE's orthogonal either way.
    assert is_orthogonal(agent.critic.encoder.projection.weight)
    assert is_orthogonal(agent.actor.encoder.projection.weight)
    assert all(is_orthogonal(head[0].weight) for head in agent.aux.heads.values())
    shared = encoder.convs[0]
    assert shared is agent.critic.encoder.convs[0] and not shared.bias.any()


def test_checkpoints_of_the_frame_counting_version_are_refused_in_one_line(tmp_path):
    path = save_checkpoint(make_agent(), tmp_path / "agent.pt", "cartpole_balance", {"step": 0})
    payload = torch.load(path, weights_only=True)
    payload["version"] = 1
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(UserError, match="version 1 agent checkpoint.*frames.*PAD heads.*another --out") as error:
        load_agent(tmp_path / "old.pt")
    assert "\n" not in str(error.value)


# -- Where the adapter runs (adapter_per_crop) --------------------------------------------------------
def test_paper_runs_the_adapter_on_each_crop_as_vai_and_quick_on_stored_frames(tmp_path):
    assert get_rl_preset("paper").adapter_per_crop and RLPreset("any").adapter_per_crop
    assert not get_rl_preset("quick").adapter_per_crop
    # A checkpoint from before the setting existed stored adapted frames: it loads in that form.
    path = save_checkpoint(make_agent("vai"), tmp_path / "agent.pt", "cartpole_balance", {"step": 0})
    payload = torch.load(path, weights_only=True)
    del payload["preset"]["adapter_per_crop"]
    torch.save(payload, tmp_path / "older.pt")
    assert not load_agent(tmp_path / "older.pt")[0].preset.adapter_per_crop
    assert load_agent(path)[0].preset.adapter_per_crop


def test_paper_draws_adapt_aug_noise_afresh_and_checkpoints_older_than_the_setting_keep_the_bank(tmp_path):
    assert not get_rl_preset("paper").adapt_noise_bank and get_rl_preset("quick").adapt_noise_bank
    path = save_checkpoint(make_agent("vai"), tmp_path / "agent.pt", "cartpole_balance", {"step": 0})
    assert not load_agent(path)[0].preset.adapt_noise_bank
    payload = torch.load(path, weights_only=True)
    del payload["preset"]["adapt_noise_bank"]  # older code took its CPU noise from the bank
    torch.save(payload, tmp_path / "older.pt")
    assert load_agent(tmp_path / "older.pt")[0].preset.adapt_noise_bank


def test_checkpoints_naming_their_pad_heads_in_comma_separated_text_load_them_as_a_tuple(tmp_path):
    path = save_checkpoint(make_agent(), tmp_path / "agent.pt", "cartpole_balance", {"step": 0})
    payload = torch.load(path, weights_only=True)
    assert tuple(payload["preset"]["aux_tasks"]) == ("inverse", "reward", "rotation")
    payload["preset"]["aux_tasks"] = "inverse,reward,rotation"  # the form older checkpoints hold
    torch.save(payload, tmp_path / "older.pt")
    assert load_agent(tmp_path / "older.pt")[0].preset.aux_tasks == ("inverse", "reward", "rotation")
    assert RLPreset("any", aux_tasks=["reward"]).aux_tasks == ("reward",)  # a JSON record's list
    with pytest.raises(ValueError, match="unknown auxiliary task colour; choose from: inverse, reward, rotation"):
        RLPreset("any", aux_tasks=("colour",))


@pytest.mark.parametrize("downsample", [1, 2])
def test_per_crop_training_views_adapt_each_random_crop_as_vais_encoder(downsample):
    agent = make_agent("vai", replace(TINY, downsample=downsample), adapter=calibrated_adapter())
    assert agent.preset.adapter_per_crop  # VAI's placement is the default
    raw = torch.randint(0, 256, (16, 9, 100, 100), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    # Replay keeps the raw frames, at full size whatever the downsampling (the adapter needs them).
    assert agent.observe.stored_shape((3, 100, 100)) == (3, 100, 100)
    assert np.array_equal(agent.observe.store(raw[0].numpy()), raw[0, 6:9].numpy())
    assert torch.equal(agent.observe.store_stacks(raw), raw)
    view = agent.observe.train_view(raw, torch.Generator().manual_seed(2))
    draws = torch.Generator().manual_seed(2)  # the crop's corners, as random_crop draws them
    top, left = (torch.randint(0, 16, (16,), generator=draws) for _ in range(2))
    # Crops reaching the rim the centre crop never covers, and crops off the adapter's stride grid.
    assert bool(((top < 8) | (left < 8)).any() and ((top % 2 == 1) | (left % 2 == 1)).any())
    side = 84 // downsample
    assert view.shape == (16, 9, side, side)
    adapter = agent.observe.adapter
    for index in range(16):
        crop = raw[index, :, top[index] : top[index] + 84, left[index] : left[index] + 84]
        expected = adapted_by_hand(adapter, crop, downsample)
        assert torch.allclose(view[index], expected, atol=1e-5), (int(top[index]), int(left[index]))
    # The stored form's view of the same crops: its rim is edge-replicated, its mask the centre crop's.
    stored_form = make_agent("vai", replace(TINY, downsample=downsample, adapter_per_crop=False), adapter=adapter)
    stored = stored_form.observe.store_stacks(raw)
    assert (stored_form.observe.train_view(stored, torch.Generator().manual_seed(2)) - view).abs().mean() > 0.05


def test_pad_test_time_adaptation_adapts_each_random_crop_in_per_crop_mode():
    agent = make_agent("vai", adapter=calibrated_adapter())
    raw = torch.randint(0, 256, (2, 9, 100, 100), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    passes = record_conv_passes(agent)
    draws = torch.Generator()
    draws.set_state(agent.generator.get_state())
    copies = agent.preset.tta_batch
    top, left = (torch.randint(0, 16, (copies,), generator=draws) for _ in range(2))
    metrics = agent.adapt(raw[0].numpy(), np.zeros(2, np.float32), raw[1].numpy())
    assert all(torch.isfinite(value) for value in metrics.values())
    expected = torch.stack(
        [adapted_by_hand(agent.observe.adapter, raw[0, :, t : t + 84, c : c + 84]) for t, c in zip(top, left)]
    )
    assert torch.allclose(passes[0][0], expected, atol=1e-5)  # the inverse head's pass on obs


def test_act_takes_one_observation_or_a_vector_environments_batch():
    import vai  # noqa: F401  (registers the environments)

    envs = gym.vector.SyncVectorEnv([lambda: gym.make("vai/cartpole_balance-v0") for _ in range(2)])
    try:
        observations, _ = envs.reset(seed=0)
        agent = SACAgent("vai", observations.shape[1:], 1, TINY, (2, 1), calibrated_adapter(), seed=0)
        actions = agent.act(observations)
        assert actions.shape == (2, 1)
        for observation, action in zip(observations, actions, strict=True):
            np.testing.assert_allclose(action, agent.act(observation), rtol=1e-5, atol=1e-6)
        assert agent.act(observations, sample=True).shape == (2, 1)
        envs.step(actions)
        for shape in ((3, 100, 100), (2, 3, 100, 100), (1, 2, 9, 100, 100)):
            with pytest.raises(ValueError, match=r"act takes one observation \(9, 100, 100\) or a batch"):
                agent.act(np.zeros(shape, np.uint8))
    finally:
        envs.close()
