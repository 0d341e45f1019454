"""Environment throughput: frames per second per task and mode, and what each distraction costs.

    python benchmarks/env_throughput.py                      # every task, every mode
    python benchmarks/env_throughput.py --tasks walker_walk --steps 200

One frame = one agent step (action repeat simulator steps, one render); modes take turns step by
step and figures are medians over rounds (see measure_task). Resets are timed apart,
since colour modes rebuild their textures and video modes may decode a video there. Target (issue 2):
a distraction mode costs at most 20% over ``train``. Videos are decoded once, at render size; the
script prints how much memory they hold.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import vai
from vai.data.video import VideoCache
from vai.machine import cpu_name
from vai.tasks import DMC_TASKS, DRAWER_TASKS, DRAWER_TEXTURES

DMC_BENCH_MODES = ("train", "color_easy", "color_hard", "video_easy", "video_hard", "video0")
DRAWER_BENCH_MODES = ("train", *[t for t in DRAWER_TEXTURES if t != "grid"])


def measure_task(
    task: str, modes: tuple[str, ...], steps: int, rounds: int, cache: VideoCache, data_dir: str | None
) -> dict[str, tuple[float, float]]:
    """Per mode: (frames per second, seconds per reset), medians over ``rounds``.

    The modes' environments live side by side and take turns step by step (the same action in
    every mode), so a slow moment of this shared machine hits every mode alike instead of one mode's
    whole measurement. Each environment renders into its own GL context, as in real use.
    """
    envs = {mode: vai.make_env(task, mode, data_dir=data_dir, video_cache=cache) for mode in modes}
    try:
        first = next(iter(envs.values()))
        first.action_space.seed(0)
        actions = [first.action_space.sample() for _ in range(steps)]
        step_seconds = {mode: [] for mode in modes}
        reset_seconds = {mode: [] for mode in modes}
        for round_index in range(-1, rounds):  # round -1 warms up: first renders, video decoding
            spent = dict.fromkeys(modes, 0.0)
            for mode, env in envs.items():
                start = time.perf_counter()
                env.reset(seed=round_index + 1)
                if round_index >= 0:
                    reset_seconds[mode].append(time.perf_counter() - start)
            for action in actions:
                for mode, env in envs.items():
                    start = time.perf_counter()
                    _, _, _, truncated, _ = env.step(action)
                    spent[mode] += time.perf_counter() - start
                    if truncated:
                        env.reset()
            if round_index >= 0:
                for mode in modes:
                    step_seconds[mode].append(spent[mode] / steps)
        return {
            mode: (1.0 / float(np.median(step_seconds[mode])), float(np.median(reset_seconds[mode]))) for mode in modes
        }
    finally:
        for env in envs.values():
            env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=[*DMC_TASKS, *DRAWER_TASKS])
    parser.add_argument("--steps", type=int, default=40, help="agent steps per mode and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians are reported)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    cache = VideoCache()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; python {platform.python_version()}")
    rows = []
    for task in args.tasks:
        modes = DMC_BENCH_MODES if task in DMC_TASKS else DRAWER_BENCH_MODES
        results = measure_task(task, modes, args.steps, args.rounds, cache, args.data_dir)
        train_fps = results["train"][0]
        for mode, (fps, reset) in results.items():
            rows.append((task, mode, fps, reset))
            print(
                f"{task:<18} {mode:<11} {fps:7.1f} frames/s  {1000 / fps:6.1f} ms/frame  "
                f"{train_fps / fps - 1.0:+6.1%} vs train  reset {reset * 1000:6.0f} ms",
                flush=True,
            )
    print(f"backend: MUJOCO_GL={os.environ.get('MUJOCO_GL')}")
    held = sum(frames.nbytes for frames in cache._videos.values())
    print(f"videos decoded: {len(cache)}, held at render size: {held / 2**20:.0f} MiB")
    worst = (
        max(
            (train / fps - 1.0, task, mode)
            for task, mode, fps, _ in rows
            for t, m, train, _ in rows
            if t == task and m == "train" and mode != "train"
        )
        if len(rows) > 1
        else None
    )
    if worst:
        print(f"largest distraction overhead: {worst[0]:+.1%} ({worst[1]} {worst[2]}); target <= +20%")


if __name__ == "__main__":
    main()
