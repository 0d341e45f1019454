"""Measuring attention: masks of the counterfactual step and of the adapter against the ground truth.

The ground truth comes from MuJoCo segmentation (``info["foreground_mask"]``) and is used here only,
to score; nothing trained reads it. Every mode replays the same seeded episodes and random actions,
so the modes differ only in what the camera sees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vai.atomic import write_json_atomic, write_text_atomic
from vai.config import VisionPreset
from vai.data.video import VideoCache
from vai.envs.factory import make_env
from vai.vision.adapter import AttentionAdapter, center_crop
from vai.vision.metrics import mask_scores

EVAL_MODES = ("train", "color_hard", "video_easy", "video_hard")
"""Modes the issue measures masks in (DrawerWorld tasks use their textures instead)."""

CROP = 84
"""Agents and the adapter see the 100 -> 84 centre crop; masks are scored there."""


@dataclass
class ModeFrames:
    """Newest frame of each step of the evaluation episodes in one mode, and its true mask."""

    mode: str
    frames: np.ndarray
    """uint8 (N, 3, 100, 100)."""
    truth: np.ndarray
    """bool (N, 100, 100)."""


def record(
    task: str,
    mode: str,
    episodes: int,
    steps: int,
    seed: int,
    data_dir: Path | None = None,
    video_cache: VideoCache | None = None,
) -> ModeFrames:
    """Frames and true masks of ``episodes`` seeded episodes of ``steps`` random-policy steps."""
    env = make_env(task, mode, data_dir=data_dir, foreground_mask=True, video_cache=video_cache)
    frames, truth = [], []
    try:
        for episode in range(episodes):
            rng = np.random.default_rng([seed, episode])
            obs, info = env.reset(seed=seed + episode)
            for _ in range(steps):
                action = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
                obs, _, _, truncated, info = env.step(action)
                frames.append(obs[-3:])
                truth.append(info["foreground_mask"][-1])
                if truncated:
                    break
    finally:
        env.close()
    return ModeFrames(mode, np.stack(frames), np.stack(truth))


@torch.no_grad()
def adapter_masks(adapter: AttentionAdapter, frames: np.ndarray, device="cpu", batch: int = 256) -> np.ndarray:
    """bool (N, 84, 84): the adapter's foreground (probability > 0.5) on centre-cropped frames."""
    adapter = adapter.to(device).eval()
    out = []
    for start in range(0, len(frames), batch):
        chunk = torch.as_tensor(frames[start : start + batch], device=device).float() / 255.0
        out.append((adapter(center_crop(chunk, CROP)) > 0.5)[:, 0].cpu().numpy())
    return np.concatenate(out)


def crop_truth(truth: np.ndarray) -> np.ndarray:
    """The 84x84 centre crop of the last two axes (masks (..., H, W) or frames (..., C, H, W))."""
    offset = (truth.shape[-1] - CROP) // 2
    return truth[..., offset : offset + CROP, offset : offset + CROP]


def evaluate_masks(
    recorded: Sequence[ModeFrames],
    adapter: AttentionAdapter | None,
    counterfactual: Callable[[np.ndarray], np.ndarray] | None,
    device="cpu",
) -> dict[str, dict[str, dict[str, float]]]:
    """``{mode: {"adapter": scores, "counterfactual": scores}}`` for whichever masks are given."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    for item in recorded:
        truth = crop_truth(item.truth)
        results[item.mode] = {}
        if counterfactual is not None:
            results[item.mode]["counterfactual"] = mask_scores(counterfactual(item.frames), truth).as_dict()
        if adapter is not None:
            results[item.mode]["adapter"] = mask_scores(adapter_masks(adapter, item.frames, device), truth).as_dict()
    return results


def markdown_table(results: dict[str, dict[str, dict[str, float]]], title: str) -> str:
    """One row per mode and mask source: IoU, precision, recall, frames."""
    lines = [
        f"### {title}",
        "",
        "| mode | masks | IoU | precision | recall | frames |",
        "|---|---|---|---|---|---|",
    ]
    for mode, sources in results.items():
        for source, scores in sources.items():
            lines.append(
                f"| {mode} | {source} | {scores['iou']:.3f} | {scores['precision']:.3f} | "
                f"{scores['recall']:.3f} | {scores['frames']} |"
            )
    return "\n".join(lines) + "\n"


def write_results(results: dict, meta: dict, json_path: Path, markdown_path: Path, title: str) -> None:
    write_json_atomic({"meta": meta, "results": results}, json_path)
    write_text_atomic(markdown_table(results, title), markdown_path)


def mask_grid(recorded: Sequence[ModeFrames], adapter: AttentionAdapter, samples: int = 2, device="cpu") -> np.ndarray:
    """RGB image: per mode, ``samples`` frames as observation | adapter mask | masked obs | truth."""
    rows = []
    for item in recorded:
        picks = np.linspace(0, len(item.frames) - 1, samples).round().astype(int)
        frames = item.frames[picks]
        predicted = adapter_masks(adapter, frames, device)
        observed = crop_truth(frames).transpose(0, 2, 3, 1)
        truth = crop_truth(item.truth[picks])
        tiles = []
        for k in range(samples):
            masked = observed[k] * predicted[k][..., None]
            tiles += [observed[k], _gray(predicted[k]), masked.astype(np.uint8), _gray(truth[k])]
        rows.append((item.mode, tiles))
    return _compose(rows, samples)


def _gray(mask: np.ndarray) -> np.ndarray:
    return np.repeat(mask[..., None].astype(np.uint8) * 255, 3, axis=-1)


def _compose(rows, samples: int) -> np.ndarray:
    import cv2

    scale, label_width, header = 2, 130, 36
    body = []
    for mode, tiles in rows:
        row = cv2.resize(np.concatenate(tiles, axis=1), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        label = np.full((row.shape[0], label_width, 3), 255, np.uint8)
        cv2.putText(label, mode, (6, row.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        body.append(np.concatenate([label, row], axis=1))
    image = np.concatenate(body, axis=0)
    top = np.full((header, image.shape[1], 3), 255, np.uint8)
    caption = "observation | adapter mask | masked observation | ground truth" + (" (x2)" if samples > 1 else "")
    cv2.putText(top, caption, (6, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([top, image], axis=0)


def preset_summary(preset: VisionPreset) -> dict:
    from dataclasses import asdict

    return asdict(preset)
