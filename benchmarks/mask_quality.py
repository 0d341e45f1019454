"""Mask quality: the whole vision pipeline per task, then its masks scored against ground truth.

    python benchmarks/mask_quality.py                                  # quick preset, cartpole + walker
    python benchmarks/mask_quality.py --preset paper --device cuda     # VAI's settings on a GPU
    python benchmarks/mask_quality.py --tasks walker_walk --set adapter_steps=3000

Per task: collect random-policy frames, train the Transporter, make counterfactual masks, train the
attention adapter on natural-image backgrounds (``--backgrounds``; by default the data directory's
``places365``, else ``photos``, neither related to a test video; ``DATA/backgrounds``, the stand-in
cut from the ``video_hard`` footage, only when named, and the table says so), then score
both mask sources in ``train``, ``color_easy``, ``color_hard``, ``video_easy`` and ``video_hard`` (the
development videos of the data directory) over seeded evaluation episodes the pipeline never saw. Stages whose
output is already in the run directory are reused (``--fresh`` redoes them).

DrawerWorld tasks (``drawer_open``, ``drawer_close``) are scored in ``train`` and the six other table
textures, with no targets: VAI's note that the test textures are the hard part is what they measure.
The ground truth counts the arm and the drawer (its body, handle and everything that moves with it;
``vai env list`` says it per task).

Targets (issue 27), adapter masks: IoU >= 0.3 and recall >= 0.85 in every mode; IoU >= 0.7 in train
and color_easy, >= 0.6 in color_hard and video_easy, >= 0.5 in video_hard. The script prints the
table, the time of each stage, the Transporter's health and restarts, and which targets are met (at
the preset's ``adapter_threshold``, 0.5), the adapter's scores at other thresholds, and
writes ``mask_quality.json`` into each run directory (and into ``--record DIR`` as
``TASK-PRESET-seedS.json``, the small file a measurement commits).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from vai.context import RunContext
from vai.machine import checkout_commit, keep_freed_memory
from vai.pipeline import default_backgrounds
from vai.presets.settings import override
from vai.presets.vision import get_vision_preset
from vai.run_dir import RunDir
from vai.tasks import KEYPOINTS
from vai.vision import stages
from vai.vision.backgrounds import describe_pool
from vai.vision.collect import collect
from vai.vision.evaluate import markdown_table, sweep_table

TARGETS = {"train": 0.7, "color_easy": 0.7, "color_hard": 0.6, "video_easy": 0.6, "video_hard": 0.5}
"""Least adapter IoU per mode (issue 27); recall must be >= RECALL and IoU >= FLOOR everywhere.
``train``, ``color_easy`` and ``video_easy`` are the validation modes, ``color_hard`` and ``video_hard``
the test: no setting is chosen from the latter (docs/fidelity.md, the validation protocol)."""
RECALL = 0.85
FLOOR = 0.3


def scored_modes(task: str) -> list[str]:
    """The modes a task's masks are scored in: the five DMC modes of :data:`TARGETS`, or DrawerWorld's
    ``train`` and its six test textures."""
    from vai.tasks import DRAWER_TEXTURES, DMCTask, get_task

    if isinstance(get_task(task), DMCTask):
        return list(TARGETS)
    return ["train", *(texture for texture in DRAWER_TEXTURES if texture != "grid")]


def default_data_dir() -> Path | None:
    for candidate in (os.environ.get("VAI_DATA_DIR"), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def timed(label: str, times: dict, function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    times[label] = round(time.perf_counter() - start, 1)
    print(f"  {label}: {times[label]:.0f} s", flush=True)
    return result


def run_task(task: str, args: argparse.Namespace, data_dir: Path | None) -> dict:
    preset = override(get_vision_preset(args.preset), args.set)
    run = RunDir(Path(args.runs) / f"{task}-{preset.name}-seed{args.seed}")
    run.path.mkdir(parents=True, exist_ok=True)
    context = RunContext.create(task, run, seed=args.seed, device=args.device, data_dir=data_dir)
    times: dict[str, float] = {}
    print(f"{task}: preset {preset.name}, k={KEYPOINTS[task]}, run directory {run.path}", flush=True)
    fresh = args.fresh
    if fresh or not run.frames.is_file():
        for stale in run.path.glob("*"):
            stale.unlink()
        timed("collect", times, collect, task, preset.collect_frames, run.frames, args.seed, data_dir)
        fresh = True
    if fresh or not run.counterfactual.is_file():
        timed("keypoints", times, stages.keypoints_stage, context, preset, say=print)
        fresh = True
    if fresh or not run.adapter.is_file():
        timed("adapter", times, stages.adapter_stage, context, preset, backgrounds=args.backgrounds)
    measuring = replace(context, seed=stages.MEASUREMENT_SEED)
    results = timed(
        "masks eval",
        times,
        stages.masks_eval_stage,
        measuring,
        preset,
        modes=scored_modes(task),
        episodes=args.episodes,
        steps=args.steps,
    )
    pool = describe_pool(args.backgrounds)
    print(markdown_table(results, f"{task} ({preset.name} preset, seed {args.seed}, adapter backgrounds: {pool})"))
    sweep = json.loads(run.masks_eval.read_text()).get("adapter_by_threshold", {})
    print(sweep_table(sweep, f"{task}: adapter masks by threshold (IoU / precision / recall)"))
    missed = []
    targets = TARGETS if scored_modes(task) == list(TARGETS) else {}  # DrawerWorld: measured, no targets
    for mode, least in targets.items():
        scores = results[mode]["adapter"]
        if scores["iou"] < least:
            collapse = " (collapse)" if scores["iou"] < FLOOR else ""
            missed.append(f"{mode} IoU {scores['iou']:.3f} < {least}{collapse}")
        if scores["recall"] < RECALL:
            missed.append(f"{mode} recall {scores['recall']:.3f} < {RECALL}")
    print(f"  targets: {'all met' if not missed else 'missed: ' + '; '.join(missed)}\n", flush=True)
    record = {
        "task": task,
        "preset": preset.name,
        "overrides": args.set or [],
        "keypoints": KEYPOINTS[task],
        "seed": args.seed,
        "backgrounds": pool,
        "device": args.device,
        "machine": machine(args.device),
        "commit": checkout_commit(),
        "seconds": times,
        "transporter": transporter_record(run),
        "results": results,
        "adapter_by_threshold": sweep,
        "missed": missed,
    }
    (run.path / "mask_quality.json").write_text(json.dumps(record, indent=2) + "\n")
    if args.record:
        args.record.mkdir(parents=True, exist_ok=True)
        (args.record / f"{task}-{preset.name}-seed{args.seed}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def transporter_record(run: RunDir) -> dict:
    """The kept Transporter's seed, health and restarts, from the run's keypoints record."""
    try:
        record = json.loads(run.keypoints_record.read_text())
    except (OSError, ValueError):
        return {}
    keys = ("seed", "final_loss", "steps", "restarts", "kept", "collapsed", "health", "attempts")
    return {key: record[key] for key in keys if key in record}


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["cartpole_balance", "walker_walk"])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--set", nargs="+", default=None, metavar="KEY=VALUE")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=3, help="evaluation episodes per mode")
    parser.add_argument("--steps", type=int, default=50, help="random-policy steps per evaluation episode")
    parser.add_argument("--runs", default="runs/benchmarks")
    parser.add_argument(
        "--backgrounds", type=Path, default=None, help="natural images (default: DATA/places365, else DATA/photos)"
    )
    parser.add_argument("--record", type=Path, default=None, help="also write each task's record into this folder")
    parser.add_argument("--fresh", action="store_true", help="redo every stage even if its output exists")
    args = parser.parse_args()
    keep_freed_memory()  # as the vai command does
    data_dir = default_data_dir()
    if args.backgrounds is None and data_dir is not None:
        args.backgrounds = default_backgrounds(data_dir)
    print(f"device {args.device} ({machine(args.device)}); backgrounds {describe_pool(args.backgrounds)}")
    records = [run_task(task, args, data_dir) for task in args.tasks]
    print("summary (adapter masks, IoU / recall):")
    for record in records:
        cells = [
            f"{m} {record['results'][m]['adapter']['iou']:.2f}/{record['results'][m]['adapter']['recall']:.2f}"
            for m in record["results"]
        ]
        print(f"  {record['task']:<18} " + "  ".join(cells) + ("" if not record["missed"] else "  (missed)"))


if __name__ == "__main__":
    main()
