"""VAI's vision stages over one run directory, as library functions and ``vai`` commands.

Each stage takes the command's :class:`~vai.context.RunContext`, then its preset and its own
settings by keyword, and exchanges files with the others in the context's run directory
(:mod:`vai.run_dir`; default ``runs/TASK-PRESET``): ``vai collect`` writes the frames, ``vai keypoints``
the Transporter and the counterfactual masks (step 1), ``vai adapter`` the attention adapter (step 2),
``vai masks eval`` and ``vai masks show`` measure and draw the masks against ground truth.

Examples::

    vai collect cartpole_balance --preset quick
    vai keypoints cartpole_balance --preset quick
    vai adapter cartpole_balance --preset quick --backgrounds ../shared/data/backgrounds
    vai masks eval cartpole_balance --preset quick
    vai masks show cartpole_balance --preset quick
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from vai.context import RunContext
from vai.data.frames import (
    FrameStore,
    load_counterfactual_masks,
    load_frames,
    save_counterfactual_masks,
)
from vai.errors import UserError
from vai.lock import owning
from vai.presets.settings import override
from vai.presets.vision import VisionPreset, get_vision_preset
from vai.progress import step_lines
from vai.run_dir import RunDir
from vai.tasks import KEYPOINTS, default_modes, get_task
from vai.threads import stage_threads, torch_threads

MEASUREMENT_SEED = 1000
"""First seed of the episodes the masks are measured on, apart from the seeds of the episodes they learned from."""


def _frames(context: RunContext) -> FrameStore:
    run, task = context.run, context.task
    if not run.frames.is_file():
        raise UserError(f"no frames in {run.path}: run 'vai collect {task} --run {run.path}' first")
    store = load_frames(run.frames)
    if store.metadata.get("task") != task:
        raise UserError(
            f"{run.frames} holds frames of {store.metadata.get('task')!r}, not {task!r}: choose another --run"
        )
    return store


def _write_json(data: dict, path: Path) -> None:
    from vai.atomic import write_json_atomic

    write_json_atomic(data, path)


RESTART_SEED = 1000
"""A restarted Transporter trains from the run's seed + this times the restart's number."""


def keypoints_stage(context: RunContext, preset: VisionPreset, *, log=None, say=None) -> dict:
    """Step 1: train the Transporter on the run's frames, then make the counterfactual masks.

    The masks are checked without labels (:mod:`vai.vision.health`); where they collapse, a
    Transporter from another seed trains, up to ``preset.transporter_restarts`` times, and the first
    healthy one is kept, else the least collapsed. ``say`` receives one line per Transporter (what its
    masks look like) and one for the choice; ``log`` the training's progress, with ``restart`` counting
    the restarts. keypoints.json records every attempt and which one was kept. A Transporter's training
    state is saved every few minutes (RUN/transporter-seedS.partial.pt), so a stage killed part of the
    way resumes where it was when run again; restarts that had finished train again, from their seeds."""
    from vai.vision.keypoints import save_transporter

    task, run = context.task, context.run
    say = say or (lambda line: None)
    store = _frames(context)
    _, lengths = np.unique(store.episode, return_counts=True)
    if not np.any(lengths >= 2):
        raise UserError(
            f"{run.frames} has no episode of two frames or more, and the Transporter learns from pairs "
            f"of frames of one episode: collect more (vai collect {task} --run {run.path} --extend --frames 1000)"
        )
    with owning(run.path), torch_threads(stage_threads()):
        model, masks, health, attempts, index = _healthy_transporter(context, preset, store, log, say)
        if len(attempts) > 1 or health.collapsed:
            say(_choice_line(attempts, index, health, preset.transporter_restarts))
        save_transporter(model, run.transporter)  # once the masks exist: if making them fails, both files stay old
        meta = {
            "threshold": preset.mask_threshold,
            "morphology": preset.mask_morphology,
            "keypoints": KEYPOINTS[task],
            "preset": preset.name,
        }
        save_counterfactual_masks(masks, store, run.counterfactual, meta)
        chosen = attempts[index]
        summary = {key: value for key, value in chosen.items() if key != "loss_curve"}
        summary.update(restarts=len(attempts) - 1, kept=index, collapsed=health.collapsed)
        record = {
            "preset": preset.name,
            "run_seed": context.seed,
            **summary,
            "loss_curve": chosen["loss_curve"],
            "attempts": [{k: v for k, v in attempt.items() if k != "loss_curve"} for attempt in attempts],
        }
        _write_json(record, run.keypoints_record)
        return summary


def _healthy_transporter(context: RunContext, preset: VisionPreset, store: FrameStore, log, say):
    """Transporters from the run's seed on, until one's masks pass the checks or the restarts run out:
    (model, masks, health) of the first healthy one, else of the least collapsed, the attempts' records
    and the kept one's index."""
    from vai.vision.health import mask_health
    from vai.vision.keypoints import train_transporter
    from vai.vision.masks import counterfactual_masks

    attempts, kept = [], None
    for restart in range(preset.transporter_restarts + 1):
        seed = context.seed + RESTART_SEED * restart
        logged = _counting_restarts(log, restart, preset.transporter_restarts) if log and restart else log
        model, metrics = train_transporter(
            preset,
            store.frames,
            store.episode,
            KEYPOINTS[context.task],
            device=context.device,
            seed=seed,
            log=logged,
            partial=context.run.partial_transporter(seed),
        )
        if metrics["resumed_at"]:
            say(f"  Transporter seed {seed}: resumed at step {metrics['resumed_at']} from its partial checkpoint")
        start = time.perf_counter()
        masks = counterfactual_masks(model, store.frames, preset, device=context.device)
        health = mask_health(masks, store.frames)
        summary = {key: value for key, value in metrics.items() if key != "loss_curve"}
        summary.update(
            seed=seed,
            mask_seconds=time.perf_counter() - start,
            mask_foreground_fraction=float(masks.mean()),
            health=health.as_dict(),
        )
        attempts.append({**summary, "loss_curve": metrics["loss_curve"]})
        say(f"  Transporter seed {seed}: {health.summary()}")
        if kept is None or health.badness() < kept[2].badness():
            kept = (model, masks, health, len(attempts) - 1)
        if not health.collapsed:
            break
    model, masks, health, index = kept
    return model, masks, health, attempts, index


def _counting_restarts(log, restart: int, restarts: int):
    """``log`` with each call's values telling which restart is training."""

    def logged(values: dict) -> None:
        log({**values, "restart": restart, "restarts": restarts})

    return logged


def _choice_line(attempts: list[dict], index: int, health, restarts: int) -> str:
    """One line: which of several Transporters the run keeps, and whether its masks still collapse."""
    seed = attempts[index]["seed"]
    if len(attempts) == 1:
        return (
            f"  keypoints: kept the collapsed Transporter of seed {seed} (transporter_restarts is 0), and the adapter "
            "will learn its masks: more transporter_steps or transporter_restarts may help"
        )
    if not health.collapsed:
        return f"  keypoints: kept the Transporter of seed {seed} (restart {index} of up to {restarts})"
    return (
        f"  keypoints: every Transporter collapsed ({len(attempts)} tried); kept the least collapsed, seed {seed} "
        f"({'; '.join(health.problems)}), and the adapter will learn its masks: more transporter_steps or "
        "transporter_restarts may help"
    )


def adapter_stage(context: RunContext, preset: VisionPreset, *, backgrounds: Path | None = None, log=None) -> dict:
    """Step 2: train the attention adapter on distracted frames to give back the counterfactual masks.
    ``backgrounds``: a folder of natural images for the augmentation; None: procedural images."""
    from vai.vision.adapter import NATURAL_POOL_SIDE, save_adapter, train_adapter
    from vai.vision.backgrounds import load_background_images

    run, seed = context.run, context.seed
    store = _frames(context)
    with owning(run.path), torch_threads(stage_threads()):
        targets = load_counterfactual_masks(run.counterfactual, store)
        images = load_background_images(Path(backgrounds), NATURAL_POOL_SIDE) if backgrounds else None
        adapter, metrics = train_adapter(
            preset, store.frames, store.episode, targets, images, context.device, seed, log
        )
        save_adapter(adapter, run.adapter)
        summary = {key: value for key, value in metrics.items() if not isinstance(value, list)}
        record = {"preset": preset.name, "seed": seed, "backgrounds": str(backgrounds or "procedural"), **summary}
        _write_json({**record, **{k: v for k, v in metrics.items() if isinstance(v, list)}}, run.adapter_record)
        return summary


def adapter_backgrounds(run: RunDir) -> str | None:
    """The augmentation pool the run's adapter trained on, as tables name it (from its training
    record); None where the record is missing or unreadable."""
    import json

    from vai.vision.backgrounds import describe_pool

    try:
        return describe_pool(json.loads(run.adapter_record.read_text()).get("backgrounds"))
    except (OSError, ValueError):
        return None


def _record_modes(context: RunContext, modes: list[str], episodes: int, steps: int) -> list:
    from vai.data.video import VideoCache
    from vai.vision.evaluate import record

    cache = VideoCache()
    return [record(context.task, mode, episodes, steps, context.seed, context.data_dir, cache) for mode in modes]


def masks_eval_stage(
    context: RunContext, preset: VisionPreset, *, modes: list[str], episodes: int = 3, steps: int = 50
) -> dict:
    """Scores of the counterfactual and the adapter masks against ground truth, per mode, over
    ``episodes`` random-policy episodes of ``steps`` steps seeded from the context's seed; the
    adapter's also at the thresholds of ``vai.vision.evaluate.SWEEP`` (in masks_eval.json and .md)."""
    from vai.vision.adapter import load_adapter
    from vai.vision.evaluate import evaluate_masks, write_results
    from vai.vision.keypoints import load_transporter
    from vai.vision.masks import counterfactual_masks

    task, run, device = context.task, context.run, context.device
    adapter = load_adapter(run.adapter, device) if run.adapter.is_file() else None
    transporter = load_transporter(run.transporter, device) if run.transporter.is_file() else None
    if adapter is None and transporter is None:
        raise UserError(
            f"nothing to evaluate in {run.path}: run 'vai keypoints {task}' (and 'vai adapter {task}') first"
        )
    counterfactual = None
    if transporter is not None:

        def counterfactual(frames):
            return counterfactual_masks(transporter, frames, preset, device=device)

    with owning(run.path), torch_threads(stage_threads()):
        recorded = _record_modes(context, modes, episodes, steps)
        results, sweep = evaluate_masks(recorded, adapter, counterfactual, device, preset.adapter_threshold)
        pool = (adapter_backgrounds(run) or "unknown") if adapter is not None else None
        meta = {
            "task": task,
            "preset": preset.name,
            "episodes": episodes,
            "steps": steps,
            "seed": context.seed,
            "adapter_threshold": preset.adapter_threshold,
            "adapter_backgrounds": pool,
        }
        title = f"{task}: masks vs ground truth (adapter probability > {preset.adapter_threshold:g}"
        title += f"; adapter trained on {pool} backgrounds)" if pool else ")"
        write_results(results, meta, run.masks_eval, run.masks_table, title, sweep)
        return results


def masks_show_stage(context: RunContext, *, modes: list[str], out: Path | None = None) -> Path:
    """PNG (default: the run's masks picture): per mode, observation | adapter mask | masked
    observation | ground truth, from one episode seeded with the context's seed."""
    from vai.envs.gallery import write_png
    from vai.vision.adapter import load_adapter
    from vai.vision.evaluate import mask_grid

    adapter = load_adapter(context.run.adapter, "cpu")  # a few frames: the CPU draws them
    with owning(context.run.path):
        recorded = _record_modes(context, modes, 1, 30)
        return write_png(mask_grid(recorded, adapter), out or context.run.masks_picture)


# -- command line -----------------------------------------------------------------------------------
def _common(parser: argparse.ArgumentParser, settings: bool = True) -> None:
    """The arguments every vision command takes; ``settings``: the command trains or measures with
    the preset (else the preset only names the default run directory)."""
    parser.add_argument("task", help="task name (see 'vai env list')")
    parser.add_argument("--run", default=None, help="run directory (default: runs/TASK-PRESET)")
    what = "vision preset: quick (CPU) or paper (VAI, GPU)" if settings else "quick or paper: names the default --run"
    parser.add_argument("--preset", default="paper", help=what)
    if settings:
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
    evaluate.set_defaults(seed=MEASUREMENT_SEED)
    evaluate.add_argument("--mode", nargs="+", default=None, help="modes (default: train color_hard video_*)")
    evaluate.add_argument("--episodes", type=int, default=3)
    evaluate.add_argument("--steps", type=int, default=50, help="random-policy steps per episode")
    evaluate.add_argument("--data-dir", default=None)
    evaluate.set_defaults(func=_run_masks_eval)
    show = actions.add_parser("show", help="PNG: observation | adapter mask | masked | ground truth")
    _common(show, settings=False)
    show.set_defaults(seed=MEASUREMENT_SEED)
    show.add_argument("--mode", nargs="+", default=None)
    show.add_argument("--out", type=Path, default=None, help="PNG (default: RUN/masks.png)")
    show.add_argument("--data-dir", default=None)
    show.set_defaults(func=_run_masks_show)


def _context(args: argparse.Namespace, data_dir=None) -> RunContext:
    run = RunDir.at(args.run, args.task, args.preset)
    return RunContext.create(args.task, run, seed=args.seed, device=args.device, data_dir=data_dir)


def _run_keypoints(args: argparse.Namespace) -> int:
    context = _context(args)
    preset = override(get_vision_preset(args.preset), args.set)
    summary = keypoints_stage(context, preset, log=step_lines("keypoints", preset.transporter_steps), say=print)
    run = context.run
    print(f"wrote {run.transporter} and {run.counterfactual} (final loss {summary['final_loss']:.4f})")
    return 0


def _run_adapter(args: argparse.Namespace) -> int:
    context = _context(args)
    preset = override(get_vision_preset(args.preset), args.set)
    log = step_lines("adapter", preset.adapter_steps)
    summary = adapter_stage(context, preset, backgrounds=args.backgrounds, log=log)
    print(f"wrote {context.run.adapter} ({summary.get('seconds_per_step', float('nan')):.3f} s/step)")
    return 0


def _run_masks_eval(args: argparse.Namespace) -> int:
    context = _context(args, args.data_dir)
    if args.episodes < 1 or args.steps < 1:
        raise UserError("--episodes and --steps must be at least 1")
    preset = override(get_vision_preset(args.preset), args.set)
    modes = args.mode or default_modes(get_task(args.task), "masks")
    masks_eval_stage(context, preset, modes=modes, episodes=args.episodes, steps=args.steps)
    print(context.run.masks_table.read_text(), end="")
    print(f"wrote {context.run.masks_eval}")
    return 0


def _run_masks_show(args: argparse.Namespace) -> int:
    context = _context(args, args.data_dir)
    modes = args.mode or default_modes(get_task(args.task), "masks")
    path = masks_show_stage(context, modes=modes, out=args.out)
    print(f"wrote {path}")
    return 0
