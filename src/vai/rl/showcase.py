"""A short video of what the agent sees in a test mode: raw observation | adapter mask | adapted input.

The agent acts (its mean action) while the camera records; each video frame shows the newest frame
of the observation's centre crop, the adapter's mask of it and the masked crop the policy receives,
side by side and enlarged. Written as MP4 (OpenCV's ``mp4v``), atomically.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vai.atomic import atomic_write, cut_short
from vai.crops import center_crop
from vai.data.video import quiet_ffmpeg
from vai.envs import make_env

SCALE = 3


def record_showcase(agent, task: str, mode: str, out: Path, steps: int = 100, seed: int = 0, data_dir=None) -> Path:
    """Run ``agent`` for ``steps`` steps of ``task`` in ``mode`` and write the comparison video."""
    env = make_env(task, mode, data_dir=data_dir, oracle=agent.spec.oracle, compositing=agent.preset.video_compositing)
    tiles = []
    try:
        obs, _ = env.reset(seed=seed)
        for _ in range(steps):
            tiles.append(_tile(agent, obs))
            obs, _, terminated, truncated, _ = env.step(agent.act(obs))
            if terminated or truncated:
                obs, _ = env.reset()
    finally:
        env.close()
    return write_mp4(tiles, out, fps=15)


@torch.no_grad()
def _tile(agent, observation: np.ndarray) -> np.ndarray:
    batch = torch.as_tensor(observation, device=agent.device).unsqueeze(0)
    size = agent.preset.image_size
    raw = center_crop(batch, size)[0, -3:].permute(1, 2, 0).cpu().numpy()
    seen = agent.observe.eval_view(batch)[:, -3:]
    seen = F.interpolate(seen, size=(size, size), mode="nearest")[0]  # downsampled views shown at full size
    adapter = agent.observe.adapter
    if adapter is not None:
        mask = adapter(center_crop(batch, size)[:, -3:].float() / 255)[0, 0].cpu().numpy()
    else:
        mask = np.ones((size, size), np.float32)
    panels = [
        raw,
        np.repeat((mask * 255).astype(np.uint8)[..., None], 3, -1),
        (seen.permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8),
    ]
    row = np.concatenate(panels, axis=1)
    return cv2.resize(row, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_NEAREST)


def write_mp4(frames: list[np.ndarray], out: Path, fps: int = 15) -> Path:
    """RGB frames (H, W, 3) uint8 -> MP4; a write the disk refuses is one line, FFmpeg kept quiet."""
    quiet_ffmpeg()
    height, width = frames[0].shape[:2]

    def write(temporary: Path) -> None:
        writer = cv2.VideoWriter(str(temporary), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise RuntimeError("OpenCV cannot write MP4 here")
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        # OpenCV only warns where a frame cannot be written (a full disk): count what the file holds.
        reader = cv2.VideoCapture(str(temporary))
        written = int(reader.get(cv2.CAP_PROP_FRAME_COUNT)) if reader.isOpened() else 0
        reader.release()
        if written != len(frames):
            raise cut_short(out, f"OpenCV wrote {written} of {len(frames)} frames")

    # OpenCV picks the container from the file name: the temporary file keeps the real extension.
    return atomic_write(out, write, suffix=f".tmp{Path(out).suffix}")
