"""VAI step 0: frames of a uniform random policy in the training visuals (``vai collect TASK``).

VAI (Sec. 3.1) learns its keypoints, and from them its masks, from 5000 frames of random-policy
episodes in the training environment. Ground-truth masks are recorded alongside, into a separate
file that only evaluation reads (see :mod:`vai.data.frames`).

Examples::

    vai collect cartpole_swingup                       # 5000 frames -> runs/cartpole_swingup-paper/frames.npz
    vai collect cartpole_swingup --run runs/mine       # -> runs/mine/frames.npz, where 'vai keypoints --run' looks
    vai collect walker_walk --preset quick             # 2000 frames, the CPU-sized preset, in runs/walker_walk-quick
    vai collect walker_walk --frames 1000 --extend     # add 1000 frames to the existing file
"""

from __future__ import annotations

import argparse
import itertools
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from vai import __version__
from vai.atomic import replaced_together
from vai.data.frames import FrameStore, concatenate, load_frames, load_masks, masks_path, save_frames, save_masks
from vai.envs import make_env
from vai.envs.random_policy import random_episode
from vai.errors import UserError
from vai.lock import owning
from vai.presets.vision import get_vision_preset
from vai.run_dir import RunDir
from vai.tasks import get_task

LOG_EVERY = 500
"""Frames between progress messages."""


def collect(
    task: str,
    frames: int,
    out: str | Path,
    seed: int = 0,
    data_dir: str | Path | None = None,
    extend: bool = False,
    log: Callable[[str], None] | None = None,
) -> FrameStore:
    """Record ``frames`` frames of random-policy episodes of ``task`` to ``out`` (and its masks file).

    Episodes run to their end; the last one is cut when ``frames`` frames are recorded. If ``out``
    exists, ``extend=True`` appends ``frames`` more, from episodes drawn with seeds derived from
    ``seed`` and the stored episode count (so they differ from those stored); otherwise it raises
    UserError and leaves the file alone. ``log`` receives a progress line every ``LOG_EVERY`` frames.
    """
    get_task(task)  # an unknown task fails before anything is read or rendered
    if frames < 1 or seed < 0:
        raise UserError(f"need --frames >= 1 and --seed >= 0, got {frames} and {seed}")
    out = Path(out)
    with owning(out.parent):  # made and locked now, not after minutes of rendering
        return _collect(task, frames, out, seed, data_dir, extend, log)


def _collect(task, frames, out: Path, seed, data_dir, extend, log) -> FrameStore:
    """:func:`collect` in its directory, once it owns it."""
    previous = _previous_collection(out, task, frames, extend)
    first_episode = previous[0].episode_count if previous else 0
    env = make_env(task, "train", data_dir=data_dir, foreground_mask=True)
    try:
        if previous and previous[0].frames.shape[2:] != env.observation_space.shape[1:]:
            raise UserError(
                f"{out} holds frames of another size than {task} renders now: choose another --run or --out"
            )
        arrays, masks = _rollouts(env, frames, seed, first_episode, log)
    finally:
        env.close()
    metadata = _metadata(task, seed, frames, first_episode, arrays["frames"].shape[2:], previous)
    store = FrameStore(**arrays, metadata=metadata)
    if previous is not None:
        store = concatenate(previous[0], store, metadata)
        masks = np.concatenate([previous[1], masks])
    # Masks first: a run killed between the renames leaves the old frames, whose id the new masks
    # do not carry, so load_masks reports the pair as mismatched instead of pairing them wrongly.
    # A refused frames write (a full disk) puts the masks file back as it was: none, or the old one.
    with replaced_together(masks_path(out), out):
        save_masks(masks, store, masks_path(out))
        save_frames(store, out)
    return store


def rollout_streams(seed: int, first_episode: int) -> tuple[int, np.random.Generator]:
    """The first reset's seed and the action generator of episodes numbered from ``first_episode``."""
    env_stream, action_stream = np.random.SeedSequence([seed, first_episode]).spawn(2)
    return int(env_stream.generate_state(1)[0]), np.random.default_rng(action_stream)


def _metadata(task, seed, frames, first_episode, image_size, previous) -> dict[str, Any]:
    """A new collection's metadata, or the extended one's with this extension recorded."""
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if previous is None:
        return {
            "task": task,
            "mode": "train",
            "seed": seed,
            "vai_version": __version__,
            "image_size": list(image_size),
            "created": created,
            "id": uuid.uuid4().hex,
            "extensions": [],
        }
    old = previous[0].metadata
    extension = {"seed": seed, "first_episode": first_episode, "frames": frames, "created": created}
    return {**old, "id": uuid.uuid4().hex, "extensions": [*old.get("extensions", []), extension]}


def _previous_collection(out: Path, task: str, frames: int, extend: bool) -> tuple[FrameStore, np.ndarray] | None:
    """The stored frames and masks to extend, None for a new file, or a UserError."""
    if not out.exists():
        return None
    if not extend:
        raise UserError(
            f"{out} already exists: pass --extend to add {frames} frames to it, "
            "or delete it or choose another --run or --out"
        )
    store = load_frames(out)
    if store.metadata["task"] != task:
        raise UserError(f"{out} holds {store.metadata['task']} frames, not {task}: choose another --run or --out")
    return store, load_masks(masks_path(out), store)


def _rollouts(env, frames: int, seed: int, first_episode: int, log) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Uniform random actions until ``frames`` frames; each frame stored once (see vai.data.frames)."""
    env_seed, rng = rollout_streams(seed, first_episode)
    height, width = env.observation_space.shape[1:]
    space = env.action_space
    arrays = {
        "frames": np.empty((frames, 3, height, width), np.uint8),
        "episode": np.empty(frames, np.int32),
        "step": np.empty(frames, np.int32),
        "actions": np.full((frames, *space.shape), np.nan, np.float32),
        "rewards": np.full(frames, np.nan, np.float32),
    }
    masks = np.empty((frames, height, width), bool)
    # Episodes one after another, the first reset seeded: the last one is cut at ``frames``.
    episodes = (random_episode(env, rng, env_seed if number == 0 else None) for number in itertools.count())
    episode = first_episode - 1
    for index, moment in enumerate(itertools.islice(itertools.chain.from_iterable(episodes), frames)):
        if moment.action is None:
            episode += 1
        else:
            arrays["actions"][index - 1], arrays["rewards"][index - 1] = moment.action, moment.reward
        arrays["frames"][index] = moment.observation[-3:]  # the newest of the stacked frames
        masks[index] = moment.info["foreground_mask"][-1]
        arrays["episode"][index], arrays["step"][index] = episode, moment.step
        if log is not None and ((index + 1) % LOG_EVERY == 0 or index + 1 == frames):
            log(f"{index + 1}/{frames} frames, {episode - first_episode + 1} episodes")
    return arrays, masks


def add_collect_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``collect`` to ``subparsers`` (what ``ArgumentParser.add_subparsers`` returned)."""
    parser = subparsers.add_parser(
        "collect",
        help="record random-policy frames in the training visuals (VAI step 0)",
        description="Record frames of uniform random-policy episodes in the training visuals, with "
        "ground-truth masks in a separate file for evaluation only.",
    )
    parser.add_argument("task", help="task name (see 'vai env list')")
    parser.add_argument(
        "--frames", type=int, default=None, help="frames to record, or to add with --extend (default: the preset's)"
    )
    parser.add_argument(
        "--preset", default="paper", help="vision preset for the defaults (frame count, run directory): paper or quick"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--run",
        type=Path,
        default=None,
        help="run directory, as the later stages take it: RUN/frames.npz (default: runs/TASK-PRESET)",
    )
    where.add_argument("--out", type=Path, default=None, help="frames file anywhere else; masks go beside it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extend", action="store_true", help="add frames to the existing frames file")
    parser.add_argument("--data-dir", default=None, help="data directory (default: $VAI_DATA_DIR or the cache)")
    parser.set_defaults(func=run_collect)
    return parser


def run_collect(args: argparse.Namespace) -> int:
    """Handler of ``vai collect``: prints progress and what it wrote; returns the exit code."""
    preset = get_vision_preset(args.preset)
    frames = args.frames if args.frames is not None else preset.collect_frames
    out = args.out if args.out is not None else RunDir.at(args.run, args.task, args.preset).frames

    def log(message: str) -> None:
        print(f"collect {args.task}: {message}", flush=True)

    store = collect(args.task, frames, out, args.seed, args.data_dir, args.extend, log)
    masks = masks_path(out)
    print(f"wrote {out}: {len(store)} frames, {store.episode_count} episodes; masks (evaluation only): {masks}")
    return 0
