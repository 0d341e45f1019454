"""Agent speed: SAC update time and end-to-end training frames per second, per algorithm.

    python benchmarks/agent_speed.py                         # CPU, quick and paper networks
    python benchmarks/agent_speed.py --device cuda --presets paper --train-steps 2000

Update time: median over ``--updates`` timed updates (after 3 warm-up ones) of one agent update
(critic every step; actor, target and PAD heads on their schedule, so two consecutive updates are
timed as a pair and halved) from a replay buffer of real frames, on ``--device``. Training speed:
``--train-steps`` agent steps of the real training loop on ``--task`` after its random phase
(acting, environment, storing, one update per step; no evaluation; VAI's burst of updates at the end
of the random phase is left out, so the figure is the steady state), reported in simulator frames
per second (agent steps x action repeat), twice: with the environment stepping on its own thread
during the update (``vai.rl.envthread``; what ``vai train`` does on a GPU or where torch leaves a CPU
core free) and, in the last column, on the loop's thread (what it does otherwise).
Anchor (issue 4): the original VAI loop runs walker_walk at about 37 frames/s on an H100.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import vai
from vai.machine import cpu_name, keep_freed_memory
from vai.presets.rl import encoder_layers, get_rl_preset
from vai.presets.settings import override
from vai.rl.envthread import EnvThread
from vai.rl.logger import RunLogger
from vai.rl.loop import Trainer
from vai.rl.replay import ReplayBuffer
from vai.rl.sac import SACAgent
from vai.tasks import get_task
from vai.vision.adapter import AttentionAdapter


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def filled_buffer(task: str, steps: int, device: torch.device, agent: SACAgent) -> ReplayBuffer:
    env = vai.make_env(task, "train", seed=0)
    frame_shape = agent.observe.stored_shape((3, 100, 100))
    buffer = ReplayBuffer(steps + 16, frame_shape, env.action_space.shape[0], device=device)
    obs, _ = env.reset(seed=0)
    buffer.start_episode(agent.observe.store(obs))
    for _ in range(steps):
        action = env.action_space.sample()
        obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(action, reward, terminated, agent.observe.store(obs))
        if terminated or truncated:
            obs, _ = env.reset()
            buffer.start_episode(agent.observe.store(obs))
    env.close()
    return buffer


def make_agent(algorithm: str, task: str, preset, device: torch.device) -> SACAgent:
    env = vai.make_env(task, "train")
    shape, action_dim = env.observation_space.shape, env.action_space.shape[0]
    env.close()
    adapter = AttentionAdapter() if algorithm == "vai" else None
    return SACAgent(algorithm, shape, action_dim, preset, encoder_layers(task, preset), adapter, device)


def update_seconds(agent: SACAgent, buffer: ReplayBuffer, updates: int, device: torch.device) -> float:
    batch_size = agent.preset.batch_size
    for step in range(1, 4):
        agent.update(buffer.sample(batch_size, nstep=agent.preset.nstep), step)
    times = []
    for step in range(4, 4 + 2 * updates, 2):
        sync(device)
        start = time.perf_counter()
        agent.update(buffer.sample(batch_size, nstep=agent.preset.nstep), step)
        agent.update(buffer.sample(batch_size, nstep=agent.preset.nstep), step + 1)
        sync(device)
        times.append((time.perf_counter() - start) / 2)
    return statistics.median(times)


def training_fps(
    algorithm: str, task: str, preset, steps: int, device: torch.device, threaded: bool = True, warm: int = 200
) -> float:
    """Simulator frames per second of ``steps`` agent steps of the loop after ``warm`` random ones."""
    action_repeat = get_task(task).action_repeat
    preset = replace(
        preset, init_steps=warm, init_burst=False, train_steps=warm + steps, eval_every=10**9, checkpoint_every=10**9
    )
    agent = make_agent(algorithm, task, preset, device)
    # Threaded: the environment steps on its own thread while the agent updates.
    env = EnvThread(lambda: vai.make_env(task, "train")) if threaded else vai.make_env(task, "train")
    replay_device = device if device.type == "cuda" else torch.device("cpu")
    frame_shape = agent.observe.stored_shape((3, 100, 100))
    buffer = ReplayBuffer(warm + steps + 16, frame_shape, env.action_space.shape[0], device=replay_device)
    with tempfile.TemporaryDirectory() as folder, RunLogger(folder, tensorboard=False) as logger:
        trainer = Trainer(env, agent, buffer, logger, preset, action_repeat, Path(folder), task, 0, progress=False)
        # Time only the steps after the random phase: the loop's own counter tells where it is.
        original_update = agent.update
        marks = {}

        def timed_update(batch, step):
            if step == warm:
                sync(device)
                marks["start"] = time.perf_counter()
            return original_update(batch, step)

        agent.update = timed_update
        trainer.train()
        sync(device)
        elapsed = time.perf_counter() - marks["start"]
    env.close()
    return steps * action_repeat / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--presets", nargs="+", default=["quick", "paper"])
    parser.add_argument("--algorithms", nargs="+", default=["vai", "sac", "drq", "svea"])
    parser.add_argument("--task", default="walker_walk")
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--set", nargs="+", default=None, metavar="KEY=VALUE", help="override RL preset fields")
    args = parser.parse_args()
    keep_freed_memory()  # as the vai command does
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_name()}, {os.cpu_count()} cores"
    print(f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads, task {args.task}")
    print(f"{'preset':<7} {'algorithm':<9} {'batch':>5} {'update ms':>10} {'train frames/s':>15} {'env inline':>10}")
    for preset_name in args.presets:
        preset = override(get_rl_preset(preset_name), args.set)
        for algorithm in args.algorithms:
            agent = make_agent(algorithm, args.task, preset, device)
            buffer = filled_buffer(args.task, 300, device if device.type == "cuda" else torch.device("cpu"), agent)
            seconds = update_seconds(agent, buffer, args.updates, device)
            fps = inline = np.nan
            if args.train_steps:
                fps = training_fps(algorithm, args.task, preset, args.train_steps, device)
                inline = training_fps(algorithm, args.task, preset, args.train_steps, device, threaded=False)
            print(
                f"{preset_name:<7} {algorithm:<9} {preset.batch_size:>5} {seconds * 1000:>10.1f} {fps:>15.1f} "
                f"{inline:>10.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
