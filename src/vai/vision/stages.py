"""VAI's vision stages over one run directory, as library functions and ``vai`` commands.

A run directory (default ``runs/TASK``) holds, in order of the stages::

    frames.npz, frames.masks.npz    vai collect TASK           (masks: ground truth, evaluation only)
    transporter.safetensors         vai keypoints TASK         (step 1)
    counterfactual.npz              vai keypoints TASK         (step 1: the adapter's targets)
    adapter.safetensors             vai adapter TASK           (step 2)
    masks_eval.json, masks_eval.md  vai masks eval TASK        (measurement)
    masks.png                       vai masks show TASK

Examples::

    vai collect cartpole_balance --preset quick
    vai keypoints cartpole_balance --preset quick
    vai adapter cartpole_balance --preset quick --backgrounds ../shared/data/backgrounds
    vai masks eval cartpole_balance --preset quick
    vai masks show cartpole_balance
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from vai.config import KEYPOINTS, VisionPreset, default_modes, get_task, get_vision_preset, override
from vai.data.frames import (
    FrameStore,
    load_counterfactual_masks,
    load_frames,
    save_counterfactual_masks,
)
from vai.errors import UserError
from vai.machine import resolve_device

FRAMES = "frames.npz"
TRANSPORTER = "transporter.safetensors"
COUNTERFACTUAL = "counterfactual.npz"
ADAPTER = "adapter.safetensors"


def run_directory(task: str, run: str | Path | None) -> Path:
    return Path(run) if run else Path("runs") / task


def _frames(task: str, run: Path) -> FrameStore:
    path = run / FRAMES
    if not path.is_file():
        raise UserError(f"no frames in {run}: run 'vai collect {task} --run {run}' first")
    store = load_frames(path)
    if store.metadata.get("task") != task:
        raise UserError(f"{path} holds frames of {store.metadata.get('task')!r}, not {task!r}: choose another --run")
    return store


def _write_json(data: dict, path: Path) -> None:
    from vai.atomic import write_json_atomic

    write_json_atomic(data, path)


def keypoints_stage(task: str, preset: VisionPreset, run: Path, device: str = "cpu", seed: int = 0, log=None) -> dict:
    """Step 1: train the Transporter on the run's frames, then make the counterfactual masks."""
    from vai.vision.keypoints import save_transporter, train_transporter
    from vai.vision.masks import counterfactual_masks

    store = _frames(task, run)
    _, lengths = np.unique(store.episode, return_counts=True)
    if not np.any(lengths >= 2):
        raise UserError(
            f"{run / FRAMES} has no episode of two frames or more, and the Transporter learns from pairs "
            f"of frames of one episode: collect more (vai collect {task} --run {run} --extend --frames 1000)"
        )
    model, metrics = train_transporter(
        preset, store.frames, store.episode, KEYPOINTS[task], device=device, seed=seed, log=log
    )
    start = time.perf_counter()
    masks = counterfactual_masks(model, store.frames, preset, device=device)
    save_transporter(model, run / TRANSPORTER)  # once the masks exist: if making them fails, both files stay old
    meta = {
        "threshold": preset.mask_threshold,
        "morphology": preset.mask_morphology,
        "keypoints": KEYPOINTS[task],
        "preset": preset.name,
    }
    save_counterfactual_masks(masks, store, run / COUNTERFACTUAL, meta)
    summary = {key: value for key, value in metrics.items() if key != "loss_curve"}
    summary.update(mask_seconds=time.perf_counter() - start, mask_foreground_fraction=float(masks.mean()))
    record = {"preset": preset.name, "seed": seed, **summary, "loss_curve": metrics["loss_curve"]}
    _write_json(record, run / "keypoints.json")
    return summary


def adapter_stage(
    task: str,
    preset: VisionPreset,
    run: Path,
    backgrounds: Path | None = None,
    device: str = "cpu",
    seed: int = 0,
    log=None,
) -> dict:
    """Step 2: train the attention adapter on distracted frames to give back the counterfactual masks."""
    from vai.vision.adapter import NATURAL_POOL_SIDE, save_adapter, train_adapter
    from vai.vision.backgrounds import load_background_images

    store = _frames(task, run)
    targets = load_counterfactual_masks(run / COUNTERFACTUAL, store)
    images = load_background_images(Path(backgrounds), NATURAL_POOL_SIDE) if backgrounds else None
    adapter, metrics = train_adapter(preset, store.frames, store.episode, targets, images, device, seed, log)
    save_adapter(adapter, run / ADAPTER)
    summary = {key: value for key, value in metrics.items() if not isinstance(value, list)}
    record = {"preset": preset.name, "seed": seed, "backgrounds": str(backgrounds or "procedural"), **summary}
    _write_json({**record, **{k: v for k, v in metrics.items() if isinstance(v, list)}}, run / "adapter.json")
    return summary


def adapter_backgrounds(run: Path) -> str:
    """The augmentation pool the run's adapter trained on, as tables name it (from adapter.json)."""
    import json

    from vai.vision.backgrounds import describe_pool

    record = run / "adapter.json"
    try:
        return describe_pool(json.loads(record.read_text()).get("backgrounds"))
    except (OSError, ValueError):
        return "unknown"


def _record_modes(task: str, modes: list[str], episodes: int, steps: int, seed: int, data_dir) -> list:
    from vai.data.video import VideoCache
    from vai.vision.evaluate import record

    cache = VideoCache()
    return [record(task, mode, episodes, steps, seed, data_dir, cache) for mode in modes]


def masks_eval_stage(
    task: str,
    preset: VisionPreset,
    run: Path,
    modes: list[str],
    episodes: int = 3,
    steps: int = 50,
    seed: int = 1000,
    data_dir=None,
    device: str = "cpu",
) -> dict:
    """Scores of the counterfactual and the adapter masks against ground truth, per mode; the
    adapter's also at the thresholds of ``vai.vision.evaluate.SWEEP`` (in masks_eval.json and .md)."""
    from vai.vision.adapter import load_adapter
    from vai.vision.evaluate import evaluate_masks, write_results
    from vai.vision.keypoints import load_transporter
    from vai.vision.masks import counterfactual_masks

    adapter = load_adapter(run / ADAPTER, device) if (run / ADAPTER).is_file() else None
    transporter = load_transporter(run / TRANSPORTER, device) if (run / TRANSPORTER).is_file() else None
    if adapter is None and transporter is None:
        raise UserError(f"nothing to evaluate in {run}: run 'vai keypoints {task}' (and 'vai adapter {task}') first")
    counterfactual = None
    if transporter is not None:

        def counterfactual(frames):
            return counterfactual_masks(transporter, frames, preset, device=device)

    recorded = _record_modes(task, modes, episodes, steps, seed, data_dir)
    results, sweep = evaluate_masks(recorded, adapter, counterfactual, device, preset.adapter_threshold)
    pool = adapter_backgrounds(run) if adapter is not None else None
    meta = {
        "task": task,
        "preset": preset.name,
        "episodes": episodes,
        "steps": steps,
        "seed": seed,
        "adapter_threshold": preset.adapter_threshold,
        "adapter_backgrounds": pool,
    }
    title = f"{task}: masks vs ground truth (adapter probability > {preset.adapter_threshold:g}"
    title += f"; adapter trained on {pool} backgrounds)" if pool else ")"
    write_results(results, meta, run / "masks_eval.json", run / "masks_eval.md", title, sweep)
    return results


def masks_show_stage(task: str, run: Path, modes: list[str], out: Path, seed: int = 1000, data_dir=None) -> Path:
    """PNG: per mode, observation | adapter mask | masked observation | ground truth."""
    from vai.envs.gallery import write_png
    from vai.vision.adapter import load_adapter
    from vai.vision.evaluate import mask_grid

    adapter = load_adapter(run / ADAPTER, "cpu")
    recorded = _record_modes(task, modes, 1, 30, seed, data_dir)
    return write_png(mask_grid(recorded, adapter), out)


# -- command line -----------------------------------------------------------------------------------
def _common(parser: argparse.ArgumentParser, preset: bool = True) -> None:
    parser.add_argument("task", help="task name (see 'vai env list')")
    parser.add_argument("--run", default=None, help="run directory (default: runs/TASK)")
    if preset:
        parser.add_argument("--preset", default="paper", help="vision preset: quick (CPU) or paper (VAI, GPU)")
        parser.add_argument(
            "--set", nargs="+", default=None, metavar="KEY=VALUE", help="override preset fields, e.g. adapter_steps=500"
        )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)


def add_vision_commands(subparsers: Any) -> None:
    keypoints = subparsers.add_parser("keypoints", help="train the Transporter, make counterfactual masks (step 1)")
    _common(keypoints)
    keypoints.set_defaults(func=_run_keypoints)

    adapter = subparsers.add_parser("adapter", help="train the attention adapter (step 2)")
    _common(adapter)
    adapter.add_argument(
        "--backgrounds",
        default=None,
        help="folder of natural images (e.g. DATA/places365 or DATA/photos); default: procedural",
    )
    adapter.set_defaults(func=_run_adapter)

    masks = subparsers.add_parser("masks", help="measure and show the masks against ground truth")
    actions = masks.add_subparsers(dest="masks_command", required=True, metavar="{eval,show}")
    evaluate = actions.add_parser("eval", help="IoU, precision, recall per mode as JSON and a table")
    _common(evaluate)
    evaluate.set_defaults(seed=1000)
    evaluate.add_argument("--mode", nargs="+", default=None, help="modes (default: train color_hard video_*)")
    evaluate.add_argument("--episodes", type=int, default=3)
    evaluate.add_argument("--steps", type=int, default=50, help="random-policy steps per episode")
    evaluate.add_argument("--data-dir", default=None)
    evaluate.set_defaults(func=_run_masks_eval)
    show = actions.add_parser("show", help="PNG: observation | adapter mask | masked | ground truth")
    _common(show, preset=False)
    show.set_defaults(seed=1000)
    show.add_argument("--mode", nargs="+", default=None)
    show.add_argument("--out", type=Path, default=None, help="PNG (default: RUN/masks.png)")
    show.add_argument("--data-dir", default=None)
    show.set_defaults(func=_run_masks_show)


def _print_log(step: int | dict, values: dict | None = None) -> None:
    values = values if values is not None else step
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
    print(f"  {shown}", flush=True)


def _run_keypoints(args: argparse.Namespace) -> int:
    get_task(args.task)
    resolve_device(args.device)
    preset = override(get_vision_preset(args.preset), args.set)
    run = run_directory(args.task, args.run)
    summary = keypoints_stage(args.task, preset, run, args.device, args.seed, log=_print_log)
    print(f"wrote {run / TRANSPORTER} and {run / COUNTERFACTUAL} (final loss {summary['final_loss']:.4f})")
    return 0


def _run_adapter(args: argparse.Namespace) -> int:
    get_task(args.task)
    resolve_device(args.device)
    preset = override(get_vision_preset(args.preset), args.set)
    run = run_directory(args.task, args.run)
    summary = adapter_stage(args.task, preset, run, args.backgrounds, args.device, args.seed, log=_print_log)
    print(f"wrote {run / ADAPTER} ({summary.get('seconds_per_step', float('nan')):.3f} s/step)")
    return 0


def _run_masks_eval(args: argparse.Namespace) -> int:
    get_task(args.task)
    resolve_device(args.device)
    if args.episodes < 1 or args.steps < 1:
        raise UserError("--episodes and --steps must be at least 1")
    preset = override(get_vision_preset(args.preset), args.set)
    run = run_directory(args.task, args.run)
    modes = args.mode or default_modes(get_task(args.task), "masks")
    masks_eval_stage(args.task, preset, run, modes, args.episodes, args.steps, args.seed, args.data_dir, args.device)
    print((run / "masks_eval.md").read_text(), end="")
    print(f"wrote {run / 'masks_eval.json'}")
    return 0


def _run_masks_show(args: argparse.Namespace) -> int:
    get_task(args.task)
    run = run_directory(args.task, args.run)
    out = args.out or run / "masks.png"
    modes = args.mode or default_modes(get_task(args.task), "masks")
    path = masks_show_stage(args.task, run, modes, out, args.seed, args.data_dir)
    print(f"wrote {path}")
    return 0
