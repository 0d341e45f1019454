"""Video compositing: DMControl-GB's green screen against segmentation, measured on frames, masks and agents.

    python benchmarks/compositing.py --record results/compositing/cartpole_balance.json
    python benchmarks/compositing.py --tasks walker_walk finger_spin --bundles
    python benchmarks/compositing.py --bundles cartpole_balance-vai-seed0 --seeds 10

DMControl-GB (and VAI, which evaluates on it) paints the skybox green (and in ``video_hard`` the floor
too) and replaces every pixel inside an HSV green key; vai's ``segmentation`` compositing replaces
exactly the pixels that segmentation marks as sky (``video_easy``) or as not the agent
(``video_hard``). The same seeded random-policy episodes are rendered both ways, and per task and
mode the script reports:

- ``video``: the share of background pixels (ground truth: not the agent) that show the video;
- ``agent changed``: the share of agent pixels that differ from the segmentation frame, whose agent
  pixels are the scene's own (the green key's fringes and keyed reflections);
- ``adapter IoU / recall``: the masks of the task's adapter on both (``--adapter TASK=PATH``, or the
  adapter of a ``vai`` bundle of the task that ``--bundles`` names), at the threshold 0.5;

and for each bundle, its return over ``--seeds`` evaluation seeds of one episode (seed i plays video i
as in :mod:`vai.rl.evaluate`) in ``video_easy`` and ``video_hard`` under each compositing. ``--bundles``
alone takes every committed bundle of the tasks.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

MODES = ("video_easy", "video_hard")
COMPOSITINGS = ("segmentation", "greenscreen")


def record_frames(task: str, mode: str, compositing: str, episodes: int, steps: int, data_dir, cache):
    """Newest frames (N, 100, 100, 3), true masks (N, 100, 100) and the video frame shown behind each
    (N, 100, 100, 3) of seeded random-policy episodes."""
    from vai.envs import datasets, make_env
    from vai.envs.random_policy import random_episode
    from vai.tasks import IMAGE_SIZE

    paths = {path.stem: path for path in datasets.mode_videos(mode, data_dir)}
    env = make_env(task, mode, data_dir=data_dir, foreground_mask=True, video_cache=cache, compositing=compositing)
    frames, truth, behind = [], [], []
    try:
        for episode in range(episodes):
            rng = np.random.default_rng([episode])
            for moment in random_episode(env, rng, episode, steps):
                if moment.action is None:
                    continue
                frames.append(moment.observation[-3:].transpose(1, 2, 0))
                truth.append(moment.info["foreground_mask"][-1])
                video = cache.get(paths[moment.info["video"]], IMAGE_SIZE)
                behind.append(video[moment.info["video_frame"] % len(video)])
    finally:
        env.close()
    return np.stack(frames), np.stack(truth), np.stack(behind)


def frame_scores(task: str, episodes: int, steps: int, data_dir, cache, adapter=None) -> dict:
    """Per mode and compositing: video share of the background, agent pixels changed, adapter scores."""
    from vai.crops import center_crop
    from vai.vision.evaluate import CROP, adapter_probabilities
    from vai.vision.metrics import mask_scores

    scores: dict = {}
    for mode in MODES:
        recorded = {c: record_frames(task, mode, c, episodes, steps, data_dir, cache) for c in COMPOSITINGS}
        reference = recorded["segmentation"][0]
        for compositing, (frames, truth, behind) in recorded.items():
            shows_video = np.all(frames == behind, axis=-1)
            changed = np.any(frames != reference, axis=-1)
            cell = {
                "video_share_of_background": float(shows_video[~truth].mean()),
                "agent_pixels_changed": float(changed[truth].mean()),
                "frames": len(frames),
            }
            if adapter is not None:
                chw = np.ascontiguousarray(frames.transpose(0, 3, 1, 2))
                masks = adapter_probabilities(adapter, chw) > 0.5
                cell["adapter"] = mask_scores(masks, center_crop(truth, CROP)).as_dict()
            scores.setdefault(mode, {})[compositing] = cell
    return scores


def bundle_returns(bundle, seeds: int, data_dir, cache) -> dict:
    """A bundle's (a :class:`vai.pretrained.PretrainedAgent`) returns per video mode and compositing:
    ``seeds`` evaluation seeds, one episode each."""
    from vai.rl.evaluate import evaluate

    out: dict = {}
    for compositing in COMPOSITINGS:
        results = evaluate(
            bundle.agent, bundle.task, list(MODES), seeds, 1, data_dir, video_cache=cache, compositing=compositing
        )
        for mode, result in results.items():
            out.setdefault(mode, {})[compositing] = {
                "mean": float(result.returns.mean()),
                "returns": result.returns[:, 0].round(2).tolist(),
                "seeds": result.seeds,
            }
    return out


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["cartpole_balance"])
    parser.add_argument("--episodes", type=int, default=2, help="random-policy episodes per mode")
    parser.add_argument("--steps", type=int, default=60, help="steps per random-policy episode")
    parser.add_argument(
        "--bundles", nargs="*", default=None, help="bundles to evaluate both ways (alone: every bundle of the tasks)"
    )
    parser.add_argument("--seeds", type=int, default=10, help="evaluation seeds per mode for --bundles")
    parser.add_argument(
        "--adapter", action="append", default=[], metavar="TASK=PATH", help="an adapter to score on the task's frames"
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--record", type=Path, default=None, help="write the scores to this JSON file")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")

    from vai.atomic import write_json_atomic
    from vai.data.video import VideoCache
    from vai.pretrained import bundle_names, find_bundle
    from vai.sweep.jobs import machine
    from vai.vision.adapter import load_adapter

    data_dir = Path(args.data_dir) if args.data_dir else None
    names = args.bundles
    if names is not None and not names:
        names = [name for name in bundle_names() if find_bundle(name).card["task"] in args.tasks]
    agents = {name: find_bundle(name).agent() for name in names or []}  # each bundle read and checked once
    adapter_files = dict(item.split("=", 1) for item in args.adapter)
    cache = VideoCache()  # each clip decoded once for every mode, compositing and bundle
    record: dict = {"tasks": {}, "bundles": {}, "episodes": args.episodes, "steps": args.steps}
    for task in args.tasks:
        learned = [n for n, a in agents.items() if a.task == task and a.card["algorithm"] == "vai"]
        adapter, source = None, None
        if task in adapter_files:
            adapter, source = load_adapter(adapter_files[task]), Path(adapter_files[task]).parent.name
        elif learned:
            adapter, source = agents[learned[0]].agent.observe.adapter, learned[0]
        started = time.monotonic()
        scores = frame_scores(task, args.episodes, args.steps, data_dir, cache, adapter)
        record["tasks"][task] = {"scores": scores, "adapter_of": source}
        print(f"{task} ({time.monotonic() - started:.0f} s; adapter of {source or 'none'})")
        for mode, cells in scores.items():
            for compositing, cell in cells.items():
                line = (
                    f"  {mode:10s} {compositing:12s} video {cell['video_share_of_background']:.3f} of background, "
                    f"agent changed {cell['agent_pixels_changed']:.3f}"
                )
                if "adapter" in cell:
                    line += f", adapter IoU {cell['adapter']['iou']:.3f} recall {cell['adapter']['recall']:.3f}"
                print(line)
    for name, agent in agents.items():
        started = time.monotonic()
        record["bundles"][name] = bundle_returns(agent, args.seeds, data_dir, cache)
        print(f"{name} ({time.monotonic() - started:.0f} s)")
        for mode, cells in record["bundles"][name].items():
            print("  " + mode + ": " + ", ".join(f"{c} {cell['mean']:.1f}" for c, cell in cells.items()))
    record["machine"] = machine("cpu", torch_threads())
    if args.record:
        write_json_atomic(record, args.record)
        print(f"wrote {args.record}")


if __name__ == "__main__":
    main()
