"""Choosing k, the Transporter's keypoint count, per task: counterfactual-mask quality for several k.

    python benchmarks/keypoint_count.py walker_walk --k 8 12 16 24
    python benchmarks/keypoint_count.py cheetah_run --k 12 16 20 --preset paper --device cuda

For each k: train the Transporter on the task's collected frames (``RUN/frames.npz``, made by
``vai collect`` or ``benchmarks/mask_quality.py``; collected here if absent), make the counterfactual
masks of those frames, and score them against the ground-truth masks recorded with the frames (the
evaluation-only file): IoU, precision, recall at the preset's threshold. The adapter learns from
these masks, so the k with the best IoU at recall near 0.9 is the one to record in
``vai.config.KEYPOINTS``. Nothing here touches a test mode.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from vai.config import get_vision_preset, override
from vai.data.frames import load_frames, load_masks, masks_path
from vai.machine import keep_freed_memory
from vai.vision.collect import collect
from vai.vision.keypoints import train_transporter
from vai.vision.masks import counterfactual_masks
from vai.vision.metrics import mask_scores

CROP = slice(8, 92)
"""The 84x84 centre crop of a 100x100 frame, where counterfactual masks live."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task")
    parser.add_argument("--k", nargs="+", type=int, required=True)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--set", nargs="+", default=None, metavar="KEY=VALUE")
    parser.add_argument("--run", type=Path, default=None, help="run directory with frames.npz (default: runs/TASK)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score-every", type=int, default=4, help="score every n-th frame (speed)")
    args = parser.parse_args()
    keep_freed_memory()  # as the vai command does
    preset = override(get_vision_preset(args.preset), args.set)
    run = args.run or Path("runs") / args.task
    frames_path = run / "frames.npz"
    if not frames_path.is_file():
        collect(args.task, preset.collect_frames, frames_path, args.seed)
    store = load_frames(frames_path)
    truth = load_masks(masks_path(frames_path), store)[:: args.score_every, CROP, CROP]
    scored = store.frames[:: args.score_every]
    print(f"{args.task}: {len(store.frames)} frames, preset {preset.name}, device {args.device}")
    print(f"{'k':>4} {'IoU':>6} {'precision':>9} {'recall':>6} {'loss':>8} {'minutes':>7}")
    for k in args.k:
        start = time.perf_counter()
        model, metrics = train_transporter(preset, store.frames, store.episode, k, args.device, args.seed)
        masks = counterfactual_masks(model, scored, preset, device=args.device)
        scores = mask_scores(masks, np.asarray(truth)).as_dict()
        minutes = (time.perf_counter() - start) / 60
        print(
            f"{k:>4} {scores['iou']:>6.3f} {scores['precision']:>9.3f} {scores['recall']:>6.3f} "
            f"{metrics['final_loss']:>8.5f} {minutes:>7.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
