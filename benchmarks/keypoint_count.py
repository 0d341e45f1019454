"""Choosing k, the Transporter's keypoint count, per task, without labels; the labelled score beside it.

    python benchmarks/keypoint_count.py walker_walk --k 8 12 16 24
    python benchmarks/keypoint_count.py cheetah_run --k 12 16 24 --preset paper --device cuda

For each k: Transporters from two seeds (``--seeds``) train on the task's random-policy frames
(``RUN/frames.npz``, made by ``vai collect`` or ``benchmarks/mask_quality.py``; collected here if
absent) and make counterfactual masks of them. The unsupervised rule
(:func:`vai.vision.choose_k.choose_keypoints`) picks the k whose seeds' masks agree best; that is
what ``vai.tasks.KEYPOINTS`` records. Beside it, as an *oracle* row that no preset may use, each
k's masks are scored against the ground truth recorded with the frames (IoU, precision, recall on
the agent's 84x84 crop, mean over seeds). The table and ``--out`` JSON give both. Nothing here
touches a test mode.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from vai.data.frames import load_frames, load_masks, masks_path
from vai.machine import checkout_commit, keep_freed_memory
from vai.presets.settings import override
from vai.presets.vision import get_vision_preset
from vai.run_dir import RunDir
from vai.vision.choose_k import KeypointRow, choose_keypoints
from vai.vision.collect import collect
from vai.vision.metrics import mask_scores

CROP = slice(8, 92)
"""The agent's 84x84 centre crop of a 100x100 frame, where masks are scored."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task")
    parser.add_argument("--k", nargs="+", type=int, default=[8, 12, 16, 24])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="Transporter seeds per k (>= 2)")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--set", nargs="+", default=None, metavar="KEY=VALUE")
    parser.add_argument(
        "--run", type=Path, default=None, help="run directory with frames.npz (default: runs/TASK-PRESET)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--collect-seed", type=int, default=0, help="seed of the frames, if they are collected")
    parser.add_argument("--every", type=int, default=4, help="mask and score every n-th frame (speed)")
    parser.add_argument("--out", type=Path, default=None, help="JSON record of the table")
    args = parser.parse_args()
    keep_freed_memory()  # as the vai command does
    preset = override(get_vision_preset(args.preset), args.set)
    frames_path = RunDir.at(args.run, args.task, preset.name).frames
    if not frames_path.is_file():
        collect(args.task, preset.collect_frames, frames_path, args.collect_seed)
    store = load_frames(frames_path)
    truth = load_masks(masks_path(frames_path), store)[:: args.every, CROP, CROP]
    print(f"{args.task}: {len(store.frames)} frames, preset {preset.name}, seeds {args.seeds}, device {args.device}")
    print(
        f"{'k':>4} {'agreement':>9} {'foreground':>10} {'loss':>8} | oracle: {'IoU':>6} {'precision':>9} {'recall':>6}"
    )
    oracle: dict[int, dict[str, float]] = {}
    started = time.perf_counter()

    def show(row: KeypointRow) -> None:
        scores = [mask_scores(masks[:, CROP, CROP], truth).as_dict() for masks in row.masks]
        oracle[row.k] = {key: float(np.mean([s[key] for s in scores])) for key in ("iou", "precision", "recall")}
        o = oracle[row.k]
        print(
            f"{row.k:>4} {row.agreement:>9.3f} {row.foreground:>10.3f} {row.loss:>8.5f} | "
            f"        {o['iou']:>6.3f} {o['precision']:>9.3f} {o['recall']:>6.3f}",
            flush=True,
        )

    choice = choose_keypoints(preset, store.frames, store.episode, args.k, args.seeds, args.device, args.every, show)
    best_oracle = max(oracle, key=lambda k: oracle[k]["iou"])
    print(f"chosen by agreement (unsupervised): k = {choice.k}; best by ground-truth IoU (oracle): k = {best_oracle}")
    if args.out:
        record = {
            "task": args.task,
            "preset": preset.name,
            "overrides": args.set or [],
            "seeds": args.seeds,
            "frames": len(store.frames),
            "chosen_k": choice.k,
            "oracle_k": best_oracle,
            "rows": [{**row.as_dict(), "oracle": oracle[row.k]} for row in choice.rows],
            "minutes": round((time.perf_counter() - started) / 60, 1),
            "commit": checkout_commit(),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {args.device}",
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
