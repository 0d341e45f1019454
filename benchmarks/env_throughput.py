"""Environment throughput: frames per second per task and mode, and what each distraction costs.

    python benchmarks/env_throughput.py                      # every task, every mode
    python benchmarks/env_throughput.py --tasks walker_walk --steps 200

One frame = one agent step (action repeat simulator steps, one render). Resets are timed apart,
since colour modes rebuild their textures and video modes may decode a video there. Target (issue 2):
a distraction mode costs at most 20% over ``train``. Videos are decoded once, at render size; the
script prints how much memory they hold.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import vai
from vai.config import DMC_TASKS, DRAWER_TASKS, DRAWER_TEXTURES
from vai.data.video import VideoCache

DMC_BENCH_MODES = ("train", "color_easy", "color_hard", "video_easy", "video_hard", "video0")
DRAWER_BENCH_MODES = ("train", *[t for t in DRAWER_TEXTURES if t != "grid"])


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def measure(task: str, mode: str, steps: int, cache: VideoCache, data_dir: str | None) -> tuple[float, float]:
    """(frames per second over ``steps`` steps, seconds per reset)."""
    env = vai.make_env(task, mode, data_dir=data_dir, video_cache=cache)
    try:
        env.action_space.seed(0)
        actions = [env.action_space.sample() for _ in range(steps)]
        env.reset(seed=0)  # warm-up: first render, video decode
        start = time.perf_counter()
        env.reset(seed=1)
        reset_seconds = time.perf_counter() - start
        start = time.perf_counter()
        for action in actions:
            _, _, _, truncated, _ = env.step(action)
            if truncated:
                env.reset()
        return steps / (time.perf_counter() - start), reset_seconds
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=[*DMC_TASKS, *DRAWER_TASKS])
    parser.add_argument("--steps", type=int, default=100, help="agent steps timed per task and mode")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    cache = VideoCache()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; python {platform.python_version()}")
    rows = []
    for task in args.tasks:
        modes = DMC_BENCH_MODES if task in DMC_TASKS else DRAWER_BENCH_MODES
        for mode in modes:
            fps, reset = measure(task, mode, args.steps, cache, args.data_dir)
            rows.append((task, mode, fps, reset))
            train_fps = next(r[2] for r in rows if r[0] == task and r[1] == "train")
            overhead = train_fps / fps - 1.0
            print(
                f"{task:<18} {mode:<11} {fps:7.1f} frames/s  {1000 / fps:6.1f} ms/frame  "
                f"{overhead:+6.1%} vs train  reset {reset * 1000:6.0f} ms",
                flush=True,
            )
    print(f"backend: MUJOCO_GL={os.environ.get('MUJOCO_GL')}")
    held = sum(frames.nbytes for frames in cache._videos.values())
    print(f"videos decoded: {len(cache)}, held at render size: {held / 2**20:.0f} MiB")
    worst = max(
        (train / fps - 1.0, task, mode)
        for task, mode, fps, _ in rows
        for t, m, train, _ in rows
        if t == task and m == "train" and mode != "train"
    ) if len(rows) > 1 else None
    if worst:
        print(f"largest distraction overhead: {worst[0]:+.1%} ({worst[1]} {worst[2]}); target <= +20%")


if __name__ == "__main__":
    main()
