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
from vai.crops import center_crop
from vai.data.video import VideoCache
from vai.envs.factory import make_env
from vai.envs.random_policy import random_episode
from vai.presets.vision import VisionPreset
from vai.vision.adapter import AttentionAdapter
from vai.vision.metrics import mask_scores

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
            for moment in random_episode(env, rng, seed + episode, steps):
                if moment.action is not None:  # the frames after each step, not the reset's
                    frames.append(moment.observation[-3:])
                    truth.append(moment.info["foreground_mask"][-1])
    finally:
        env.close()
    return ModeFrames(mode, np.stack(frames), np.stack(truth))


SWEEP = (0.3, 0.5, 0.7, 0.9)
"""Thresholds at which ``vai masks eval`` also scores the adapter, to show its precision-recall trade."""


@torch.no_grad()
def adapter_probabilities(adapter: AttentionAdapter, frames: np.ndarray, device="cpu", batch: int = 256) -> np.ndarray:
    """float32 (N, 84, 84): the adapter's foreground probability on centre-cropped frames (the mask
    the agent multiplies into its observation)."""
    adapter = adapter.to(device).eval()
    out = []
    for start in range(0, len(frames), batch):
        chunk = torch.as_tensor(frames[start : start + batch], device=device).float() / 255.0
        out.append(adapter(center_crop(chunk, CROP))[:, 0].cpu().numpy())
    return np.concatenate(out)


def adapter_masks(adapter: AttentionAdapter, frames: np.ndarray, device="cpu", threshold: float = 0.5) -> np.ndarray:
    """bool (N, 84, 84): the adapter's foreground (probability > ``threshold``) on centre-cropped frames."""
    return adapter_probabilities(adapter, frames, device) > threshold


def evaluate_masks(
    recorded: Sequence[ModeFrames],
    adapter: AttentionAdapter | None,
    counterfactual: Callable[[np.ndarray], np.ndarray] | None,
    device="cpu",
    threshold: float = 0.5,
    sweep: Sequence[float] = SWEEP,
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, dict[str, dict[str, float]]]]:
    """Scores per mode of whichever masks are given: ``{mode: {"adapter": scores, "counterfactual":
    scores}}``, the adapter's masks being its probabilities above ``threshold``; and the adapter's
    scores at each threshold of ``sweep``, ``{mode: {"0.5": scores, ...}}`` (empty without an
    adapter), from the same pass. Trained with missed foreground costing ``pos_weight`` times leaked
    background, the adapter leans to recall; higher thresholds trade recall for precision, and the
    sweep shows how much."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    by_threshold: dict[str, dict[str, dict[str, float]]] = {}
    for item in recorded:
        truth = center_crop(item.truth, CROP)
        results[item.mode] = {}
        if counterfactual is not None:
            masks = counterfactual(item.frames)  # whole frames, scored on the agent's crop
            results[item.mode]["counterfactual"] = mask_scores(center_crop(masks, CROP), truth).as_dict()
        if adapter is not None:
            probabilities = adapter_probabilities(adapter, item.frames, device)
            results[item.mode]["adapter"] = mask_scores(probabilities > threshold, truth).as_dict()
            by_threshold[item.mode] = {f"{t:g}": mask_scores(probabilities > t, truth).as_dict() for t in sweep}
    return results, by_threshold


def _score(value: float | None) -> str:
    """A score to 3 decimals; an undefined one (NaN in memory, null in JSON) as ``-``."""
    return "-" if value is None or value != value else f"{value:.3f}"


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
                f"| {mode} | {source} | {_score(scores['iou'])} | {_score(scores['precision'])} | "
                f"{_score(scores['recall'])} | {scores['frames']} |"
            )
    return "\n".join(lines) + "\n"


def sweep_table(sweep: dict[str, dict[str, dict[str, float]]], title: str) -> str:
    """One row per mode, one column per threshold: the adapter's IoU / precision / recall."""
    thresholds = list(next(iter(sweep.values()))) if sweep else []
    lines = [
        f"### {title}",
        "",
        "| mode | " + " | ".join(f"> {t}" for t in thresholds) + " |",
        "|---|" + "---|" * len(thresholds),
    ]
    for mode, by_threshold in sweep.items():
        cells = [" / ".join(_score(s[key]) for key in ("iou", "precision", "recall")) for s in by_threshold.values()]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(
    results: dict, meta: dict, json_path: Path, markdown_path: Path, title: str, sweep: dict | None = None
) -> None:
    """``json_path``: meta, results and (if given) the adapter's threshold sweep; ``markdown_path``:
    the tables."""
    document = {"meta": meta, "results": results, **({"adapter_by_threshold": sweep} if sweep else {})}
    write_json_atomic(document, json_path)
    text = markdown_table(results, title)
    if sweep:
        text += "\n" + sweep_table(sweep, "adapter masks by threshold (IoU / precision / recall)")
    write_text_atomic(text, markdown_path)


def mask_grid(recorded: Sequence[ModeFrames], adapter: AttentionAdapter, samples: int = 2, device="cpu") -> np.ndarray:
    """RGB image: per mode, ``samples`` frames as observation | adapter mask | masked obs | truth.

    The mask is drawn as the adapter's probability (black 0, white 1) and the masked observation is
    their product, as the agent receives it."""
    rows = []
    for item in recorded:
        picks = np.linspace(0, len(item.frames) - 1, samples).round().astype(int)
        frames = item.frames[picks]
        predicted = adapter_probabilities(adapter, frames, device)
        observed = center_crop(frames, CROP).transpose(0, 2, 3, 1)
        truth = center_crop(item.truth[picks], CROP)
        tiles = []
        for k in range(samples):
            masked = (observed[k] * predicted[k][..., None]).round().astype(np.uint8)
            tiles += [observed[k], _gray(predicted[k]), masked, _gray(truth[k])]
        rows.append((item.mode, tiles))
    return _compose(rows, samples)


def _gray(mask: np.ndarray) -> np.ndarray:
    """bool or [0, 1] (H, W) -> uint8 (H, W, 3), 1 drawn white."""
    return np.repeat((mask[..., None].astype(np.float32) * 255).round().astype(np.uint8), 3, axis=-1)


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
    caption = "observation | adapter mask (probability) | masked observation, as the agent sees it | ground truth"
    caption += " (x2)" if samples > 1 else ""
    cv2.putText(top, caption, (6, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([top, image], axis=0)


def preset_summary(preset: VisionPreset) -> dict:
    from dataclasses import asdict

    return asdict(preset)
