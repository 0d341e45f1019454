"""Collected frames on disk: each rendered frame once, with episode boundaries, actions and rewards.

VAI (Sec. 3.1) learns keypoints from frames of random-policy episodes in the training visuals. A
collection is two files:

``frames.npz`` (:func:`save_frames` / :func:`load_frames`), what training reads
    ``frames`` uint8 (N, 3, H, W): every rendered frame once, in order. An observation stacks the
    last three frames, so only its newest frame (``obs[-3:]``) is stored; an episode's first frame
    is its reset frame. ``episode`` int32 (N,): episode of each frame, 0, 1, ... in order.
    ``step`` int32 (N,): agent steps since that episode's reset. ``actions`` float32 (N, A) and
    ``rewards`` float32 (N,): the action taken *after* frame i and the reward it earned, so frame
    i+1 follows from frame i and ``actions[i]``; they are NaN on an episode's last stored frame,
    where no step follows. ``metadata``: a JSON object (task, mode, seed, vai_version,
    frame_count, image_size, created, id, extensions).

``frames.masks.npz`` (:func:`save_masks` / :func:`load_masks`), for EVALUATION ONLY
    The ground-truth foreground mask of every frame, bit-packed. It is a separate file so that
    training code never holds it by accident: no training code may read it (VAI learns its masks
    without supervision; these only measure them).

Both are ``np.savez_compressed`` archives with a ``format`` name and a ``format_version``, read
with ``allow_pickle=False``. Compressed because it is 4-26x smaller for 5000 DMC frames (walker
150 -> 37 MB, cartpole 150 -> 6 MB) while saving takes 2-6 s on a 2-core CPU, a few percent of the
minutes spent rendering them, and loading stays under a second. Every write is atomic
(:func:`vai.atomic.atomic_write`), so a killed run leaves the old file or the new one, never half of
one. The masks file carries the ``id`` of its frames file: a mismatch (e.g. a run killed between
the two renames) is reported on loading, never silently paired.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vai.atomic import atomic_write
from vai.errors import UserError

FORMAT_VERSION = 1
FRAMES_FORMAT = "vai-frames"
MASKS_FORMAT = "vai-masks"
COUNTERFACTUAL_FORMAT = "vai-counterfactual-masks"
_FRAME_ARRAYS = ("frames", "episode", "step", "actions", "rewards")
_METADATA_KEYS = ("task", "mode", "seed", "vai_version", "image_size", "created", "id")

PathArg = str | os.PathLike[str]


@dataclass(frozen=True, eq=False)
class FrameStore:
    """Frames of random-policy episodes; the arrays are described in the module docstring.

    Treat the arrays as read-only: they are the collection, shared by everything that samples it.
    """

    frames: np.ndarray
    """uint8 (N, 3, H, W), each rendered frame once."""
    episode: np.ndarray
    """int32 (N,), episode index of each frame (0, 1, ..., contiguous and in order)."""
    step: np.ndarray
    """int32 (N,), agent steps since the episode's reset frame (which has step 0)."""
    actions: np.ndarray
    """float32 (N, A), the action taken after frame i; NaN on an episode's last stored frame."""
    rewards: np.ndarray
    """float32 (N,), the reward of ``actions[i]``; NaN on an episode's last stored frame."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Task, mode, seed, vai_version, image_size, created, id (of this content), extensions."""

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def episode_count(self) -> int:
        return int(self.episode[-1]) + 1 if len(self.episode) else 0


def masks_path(frames_path: PathArg) -> Path:
    """The masks file beside a frames file: ``frames.npz`` -> ``frames.masks.npz``."""
    path = Path(frames_path)
    stem = path.name[: -len(".npz")] if path.name.endswith(".npz") else path.name
    return path.with_name(f"{stem}.masks.npz")


def episode_bounds(store: FrameStore) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, stops)``, int64 (E,): episode ``e`` is frames ``starts[e]:stops[e]``."""
    starts = np.flatnonzero(np.diff(store.episode, prepend=-1) != 0)
    stops = np.append(starts[1:], len(store))
    return starts, stops


def concatenate(first: FrameStore, second: FrameStore, metadata: dict[str, Any]) -> FrameStore:
    """``first`` followed by ``second`` (whose episodes must continue ``first``'s numbering)."""
    arrays = {name: np.concatenate([getattr(first, name), getattr(second, name)]) for name in _FRAME_ARRAYS}
    store = FrameStore(**arrays, metadata=metadata)
    _check_store(store)
    return store


def save_frames(store: FrameStore, path: PathArg) -> Path:
    """Write ``store`` to ``path`` atomically; ``metadata["frame_count"]`` is set to ``len(store)``."""
    _check_store(store)
    metadata = {**store.metadata, "frame_count": len(store)}
    arrays = {name: getattr(store, name) for name in _FRAME_ARRAYS}
    return _write_atomic(Path(path), FRAMES_FORMAT, arrays, metadata)


def load_frames(path: PathArg) -> FrameStore:
    """The frames file at ``path``, or a one-line UserError naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no frames file {path}: record one with 'vai collect TASK --out {path}'")
    arrays, metadata = _read(path, FRAMES_FORMAT, _FRAME_ARRAYS)
    store = FrameStore(**arrays, metadata=metadata)
    try:
        _check_store(store)
        if metadata.get("frame_count") != len(store):
            raise ValueError(f"metadata says {metadata.get('frame_count')} frames, arrays hold {len(store)}")
    except ValueError as error:
        raise UserError(f"{path} is inconsistent ({error}): {_recollect(path)}") from None
    return store


def save_masks(masks: np.ndarray, store: FrameStore, path: PathArg) -> Path:
    """Write the ground-truth masks of ``store``'s frames to ``path`` atomically. EVALUATION ONLY.

    ``masks`` is bool (N, H, W), one per frame of ``store``; it is stored bit-packed with the
    frame count and the ``id`` of ``store``, which :func:`load_masks` checks.
    """
    masks = np.asarray(masks)
    if masks.dtype != bool or masks.shape != (len(store), *store.frames.shape[2:]):
        raise ValueError(f"masks must be bool {(len(store), *store.frames.shape[2:])}, got {masks.dtype} {masks.shape}")
    metadata = {"frame_count": len(store), "frames_id": store.metadata.get("id")}
    return _write_atomic(Path(path), MASKS_FORMAT, {"packed": np.packbits(masks, axis=-1)}, metadata)


def load_masks(path: PathArg, store: FrameStore) -> np.ndarray:
    """The ground-truth masks, bool (N, H, W), of ``store``'s frames. EVALUATION ONLY.

    Only measurement (mask IoU, figures) may call this; training never sees ground truth. Raises
    UserError when the file is missing, damaged, or belongs to other frames than ``store``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no masks file {path}: frames and masks are recorded together by 'vai collect'")
    arrays, metadata = _read(path, MASKS_FORMAT, ("packed",))
    count, frames_id = metadata.get("frame_count"), metadata.get("frames_id")
    if count != len(store) or frames_id != store.metadata.get("id"):
        why = f"{count} masks for {len(store)} frames" if count != len(store) else "another collection"
        raise UserError(f"{path} holds masks of other frames ({why}): {_recollect(path)}")
    packed, shape = arrays["packed"], (len(store), *store.frames.shape[2:])
    if packed.dtype != np.uint8 or packed.shape != (*shape[:-1], -(-shape[-1] // 8)):
        raise UserError(f"{path} holds masks of shape {packed.shape}, not packed {shape}: {_recollect(path)}")
    return np.unpackbits(packed, axis=-1, count=shape[-1]).astype(bool)


def save_counterfactual_masks(masks: np.ndarray, store: FrameStore, path: PathArg, meta: dict) -> Path:
    """Write step 1's counterfactual masks (bool (N, h, w), one per frame of ``store``) atomically.

    Unlike the ground truth these are the adapter's training targets; ``meta`` records how they
    were made (threshold, keypoints...).
    """
    masks = np.asarray(masks)
    if masks.dtype != bool or masks.ndim != 3 or len(masks) != len(store):
        raise ValueError(f"masks must be bool (N={len(store)}, h, w), got {masks.dtype} {masks.shape}")
    metadata = {**meta, "frame_count": len(store), "frames_id": store.metadata.get("id"), "shape": masks.shape}
    return _write_atomic(Path(path), COUNTERFACTUAL_FORMAT, {"packed": np.packbits(masks, axis=-1)}, metadata)


def load_counterfactual_masks(path: PathArg, store: FrameStore) -> np.ndarray:
    """Step 1's masks of ``store``'s frames, bool (N, h, w); UserError if missing or of other frames."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no counterfactual masks {path}: run 'vai keypoints' first")
    arrays, metadata = _read(path, COUNTERFACTUAL_FORMAT, ("packed",))
    if metadata.get("frames_id") != store.metadata.get("id") or metadata.get("frame_count") != len(store):
        raise UserError(f"{path} belongs to other frames: run 'vai keypoints' again")
    count, height, width = metadata["shape"]
    return np.unpackbits(arrays["packed"], axis=-1, count=width).astype(bool).reshape(count, height, width)


def _check_store(store: FrameStore) -> None:
    """Raise ValueError unless the arrays have the documented dtypes, shapes and episode layout."""
    n = len(store.frames)
    expected = {"frames": np.uint8, "episode": np.int32, "step": np.int32, "actions": np.float32, "rewards": np.float32}
    for name, dtype in expected.items():
        array = getattr(store, name)
        if not isinstance(array, np.ndarray) or array.dtype != dtype or len(array) != n:
            raise ValueError(f"{name} must be a {np.dtype(dtype)} array of length {n}")
    if n == 0 or store.frames.ndim != 4 or store.frames.shape[1] != 3 or store.actions.ndim != 2:
        shapes = f"{store.frames.shape} and {store.actions.shape}"
        raise ValueError(f"need frames (N>0, 3, H, W) and actions (N, A), got {shapes}")
    episode_step = np.diff(store.episode)
    starts = np.diff(store.episode, prepend=-1) != 0
    if store.episode[0] != 0 or np.any((episode_step != 0) & (episode_step != 1)):
        raise ValueError("episode indices must run 0, 1, 2, ... in order")
    if np.any(store.step[starts] != 0) or np.any(np.diff(store.step)[~starts[1:]] != 1):
        raise ValueError("steps must count 0, 1, 2, ... from each episode's reset frame")
    missing = [key for key in _METADATA_KEYS if key not in store.metadata]
    if missing:
        raise ValueError(f"metadata lacks {', '.join(missing)}")


def _recollect(path: Path) -> str:
    """The fix for a bad frames or masks file: record both again (masks exist only with frames)."""
    name = path.name
    if name.endswith(".masks.npz"):
        path = path.with_name(name[: -len(".masks.npz")] + ".npz")
    return f"delete it and record frames and masks again with 'vai collect TASK --out {path}'"


def _write_atomic(path: Path, format_name: str, arrays: Mapping[str, np.ndarray], metadata: dict) -> Path:
    """``np.savez_compressed`` of the header and ``arrays`` to ``path``, atomically (:mod:`vai.atomic`)."""
    header = {
        "format": np.array(format_name),
        "format_version": np.array(FORMAT_VERSION),
        "metadata": np.array(json.dumps(metadata)),
    }

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as stream:  # a file object: given a name, numpy would append ".npz"
            np.savez_compressed(stream, **header, **arrays)

    return atomic_write(path, write)  # a refused write is a WriteFailed naming the path and the fix


def _read(path: Path, format_name: str, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict]:
    """The named arrays and the metadata of a vai archive, or a UserError naming the file and fix."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            found = str(archive["format"]) if "format" in archive.files else "not a vai file"
            if found != format_name:
                raise UserError(f"{path} is {found!r}, not a {format_name!r} file: pass the right file")
            version = int(archive["format_version"])
            if version > FORMAT_VERSION:
                raise UserError(
                    f"{path} has format version {version}, this vai reads up to {FORMAT_VERSION}: upgrade vai"
                )
            metadata = json.loads(str(archive["metadata"]))
            arrays = {name: archive[name] for name in names}
    except UserError:
        raise
    # A damaged archive fails in many ways (zip, zlib, header parsing, JSON, a missing key): every
    # one of them means the same thing to the user, so the boundary catches them all.
    except Exception as error:
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        raise UserError(f"{path} is damaged or not a vai file ({reason}): {_recollect(path)}") from None
    if not isinstance(metadata, dict):
        raise UserError(f"{path} has no metadata object: {_recollect(path)}")
    return arrays, metadata
