"""A picture of what the agent sees: frames of one task in several modes, and the ground-truth mask."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vai.atomic import write_bytes_atomic
from vai.data.video import VideoCache
from vai.envs.factory import make_env
from vai.envs.random_policy import random_episode

SCALE = 2
"""Each 100 px frame is shown at 200 px so details are visible."""

LABEL_WIDTH = 150


def collect_rows(
    task: str,
    modes: Sequence[str],
    seed: int = 0,
    frames: int = 4,
    every: int = 10,
    data_dir: Path | None = None,
) -> list[tuple[str, list[np.ndarray], np.ndarray]]:
    """For each mode: ``frames`` frames ``every`` steps apart and the last frame's foreground mask.

    The last frame is the one after ``frames`` x ``every`` steps, the moment of the mask. Every mode
    replays the same seed and the same random actions, so rows differ only in visuals.
    """
    cache = VideoCache()
    rows = []
    for mode in modes:
        env = make_env(task, mode, data_dir=data_dir, foreground_mask=True, video_cache=cache)
        try:
            shots = []
            for moment in random_episode(env, np.random.default_rng(seed), seed, frames * every):
                if moment.step % every == 0 and moment.step < frames * every:
                    shots.append(moment.observation[-3:].transpose(1, 2, 0))
            shots[-1] = moment.observation[-3:].transpose(1, 2, 0)
            rows.append((mode, shots, moment.info["foreground_mask"][-1]))
        finally:
            env.close()
    return rows


def compose(rows: list[tuple[str, list[np.ndarray], np.ndarray]], title: str) -> np.ndarray:
    """One RGB image: a labelled row per mode, frames then the mask (white = foreground)."""
    import cv2

    tiles = []
    for mode, shots, mask in rows:
        mask_rgb = np.repeat(mask[..., None].astype(np.uint8) * 255, 3, axis=-1)
        row = np.concatenate([*shots, mask_rgb], axis=1)
        row = cv2.resize(row, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_NEAREST)
        label = np.full((row.shape[0], LABEL_WIDTH, 3), 255, dtype=np.uint8)
        cv2.putText(label, mode, (8, row.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.concatenate([label, row], axis=1))
    body = np.concatenate(tiles, axis=0)
    header = np.full((36, body.shape[1], 3), 255, dtype=np.uint8)
    caption = f"{title}   (columns: frames over time | ground-truth foreground mask)"
    cv2.putText(header, caption, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, body], axis=0)


def write_png(image: np.ndarray, path: Path) -> Path:
    """Write an RGB image as PNG atomically (a killed run leaves no half-written file)."""
    import cv2

    ok, encoded = cv2.imencode(".png", image[..., ::-1])
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    return write_bytes_atomic(encoded.tobytes(), path)


def show(task: str, modes: Sequence[str], out: Path, **kwargs) -> Path:
    """Render the gallery of ``task`` in ``modes`` to the PNG ``out``."""
    rows = collect_rows(task, modes, **kwargs)
    return write_png(compose(rows, task), out)
