"""Transporter: unsupervised object keypoints (Kulkarni et al., NeurIPS 2019), VAI's step 1.

The model learns K keypoints per frame with no labels. A feature encoder Φ maps a frame to a feature
map at a quarter of its side, a keypoint network Ψ maps it to K heatmaps whose spatial softmax gives
K coordinates, and each coordinate becomes a Gaussian map H^k. Between two frames of one episode,
features are *transported*: those of the source frame are erased under both frames' keypoints and the
target frame's features are pasted under the target keypoints (Kulkarni et al., Eq. 1); a refine
network R must then rebuild the target frame from that map. The only way to lower the
reconstruction error is to put keypoints on what moves between frames, which is why VAI (Wang et
al., CVPR 2021, Sec. 3.2) uses them to find the agent's foreground.

Example, as the CLI's keypoints stage calls it::

    model, metrics = train_transporter(preset, frames, episodes, KEYPOINTS[task], device="cuda")
    save_transporter(model, run_dir / "transporter.safetensors")
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vai.atomic import atomic_write
from vai.config import IMAGE_SIZE, VisionPreset
from vai.digest import DIGEST_KEY, digest_mismatch, tensors_digest
from vai.errors import UserError

CROP_SIZE = 84
"""Side of the centre crop of a stored 100x100 frame: what the agent and the adapter see (VAI)."""

DEFAULT_CHANNELS = 16
"""Width of the first encoder stage; stages have 1x, 2x and 4x this. Kulkarni et al. use 32 (32, 64,
128 channels); 16 costs a quarter of that, about 0.7 s per step at size 64, batch 32 on a 2-core CPU,
against 2.5 s. A preset's ``transporter_channels``, where it has one, takes precedence."""

CHECKPOINT_FORMAT = "vai.transporter/1"
"""Written into the safetensors metadata, so a loader can tell our files from any other."""

_PREPARE_CHUNK = 512
"""Frames cropped and resized at once when preparing a data set (bounds the float copy in memory)."""


# -- Inputs ---------------------------------------------------------------------------------------


def frames_to_inputs(frames: np.ndarray | torch.Tensor, size: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """Stored uint8 frames (N, 3, 100, 100) as model inputs: float (N, 3, size, size) in [0, 1].

    Centre-crops to 84x84, the view the agent and the adapter get (VAI), then resizes to ``size``
    (bilinear, antialiased) only where ``size`` differs from 84, so pixel (i, j) of an input always
    covers the same scene area as pixel (i * 84 / size, j * 84 / size) of the agent's crop.
    """
    frames = torch.as_tensor(frames, device=device)
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected uint8 frames (N, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
    height, width = frames.shape[-2:]
    if height < CROP_SIZE or width < CROP_SIZE:
        raise ValueError(f"frames of {height}x{width} are smaller than the {CROP_SIZE}x{CROP_SIZE} crop")
    top, left = (height - CROP_SIZE) // 2, (width - CROP_SIZE) // 2
    crop = frames[:, :, top : top + CROP_SIZE, left : left + CROP_SIZE].float() / 255.0
    if size != CROP_SIZE:
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return crop


def _prepare_dataset(frames: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """All frames cropped and resized once, kept as uint8 on ``device`` so a batch is one gather."""
    prepared = torch.empty((len(frames), 3, size, size), dtype=torch.uint8, device=device)
    for start in range(0, len(frames), _PREPARE_CHUNK):
        chunk = frames_to_inputs(frames[start : start + _PREPARE_CHUNK], size, device)
        prepared[start : start + len(chunk)] = (chunk * 255.0).round_().to(torch.uint8)
    return prepared


# -- Keypoint geometry ----------------------------------------------------------------------------


def _grid(length: int, like: torch.Tensor) -> torch.Tensor:
    """Pixel-centre coordinates of one axis in [-1, 1] (first pixel -1, last pixel +1)."""
    return torch.linspace(-1.0, 1.0, length, device=like.device, dtype=like.dtype)


def spatial_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Expected (x, y) of each heatmap under its spatial softmax: (B, K, h, w) -> (B, K, 2).

    x runs along the width and y along the height, both in [-1, 1] (Kulkarni et al., Sec. 3).
    """
    batch, keypoints, height, width = logits.shape
    probabilities = logits.flatten(2).softmax(dim=-1).view(batch, keypoints, height, width)
    x = (probabilities.sum(dim=2) * _grid(width, logits)).sum(dim=-1)
    y = (probabilities.sum(dim=3) * _grid(height, logits)).sum(dim=-1)
    return torch.stack((x, y), dim=-1)


def gaussian_maps(coords: torch.Tensor, size: tuple[int, int], std: float) -> torch.Tensor:
    """Isotropic Gaussians of peak 1 at each keypoint: coords (B, K, 2) -> maps (B, K, h, w).

    ``std`` is in the normalised [-1, 1] units of the coordinates (Transporter and VAI: 0.1).
    """
    height, width = size
    dx = _grid(width, coords).view(1, 1, 1, width) - coords[..., 0, None, None]
    dy = _grid(height, coords).view(1, 1, height, 1) - coords[..., 1, None, None]
    return torch.exp(-(dx.square() + dy.square()) / (2.0 * std * std))


def union_map(maps: torch.Tensor) -> torch.Tensor:
    """All keypoints' Gaussian maps as one map in [0, 1]: (B, K, h, w) -> (B, 1, h, w).

    H = 1 - prod_k (1 - H^k), the probabilistic union. Then 1 - H = prod_k (1 - H^k) is exactly
    the factor that applying Kulkarni et al.'s Eq. 1 keypoint by keypoint leaves on the source
    features, but in one vectorised step, independent of keypoint order, and, unlike a sum, never
    above 1 where keypoints overlap.
    """
    return 1.0 - torch.prod(1.0 - maps, dim=1, keepdim=True)


def transport(
    source_features: torch.Tensor,
    source_maps: torch.Tensor,
    target_features: torch.Tensor,
    target_maps: torch.Tensor,
) -> torch.Tensor:
    """Kulkarni et al., Eq. 1: Φ̂ = (1 - H_s)(1 - H_t) Φ(s) + H_t Φ(t).

    Features are (B, C, h, w); maps are per keypoint (B, K, h, w) and are combined with
    :func:`union_map`. Source features are erased where either frame has a keypoint, and the
    target's features fill in where the target has one, so R sees the target's objects at the
    target's keypoints and the source's background everywhere else.
    """
    source_union = union_map(source_maps)
    target_union = union_map(target_maps)
    return (1.0 - source_union) * (1.0 - target_union) * source_features + target_union * target_features


# -- Networks -------------------------------------------------------------------------------------


def _block(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    # Conv, batch norm, ReLU throughout, as Kulkarni et al. (Appendix); no conv bias before batch norm.
    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def _downsampling_trunk(width: int) -> nn.Sequential:
    """(B, 3, S, S) -> (B, 4 * width, S/4, S/4), rounding up; the shape of both Φ and Ψ.

    Kulkarni et al.'s layout: a 7x7 conv, then 3x3 convs, two of them with stride 2.
    """
    return nn.Sequential(
        *_block(3, width, 7),
        *_block(width, width, 3),
        *_block(width, 2 * width, 3, stride=2),
        *_block(2 * width, 2 * width, 3),
        *_block(2 * width, 4 * width, 3, stride=2),
        *_block(4 * width, 4 * width, 3),
    )


class _Refiner(nn.Module):
    """R: feature map (B, 4w, S/4, S/4) -> image (B, 3, S, S), the encoder mirrored.

    Bilinear upsampling to the exact sizes the encoder halved from, so any input side works.
    The last conv is linear: the output is compared with the frame in [0, 1] by a squared error.
    """

    def __init__(self, width: int, size: int) -> None:
        super().__init__()
        self.half = math.ceil(size / 2)
        self.size = size
        self.quarter_stage = nn.Sequential(*_block(4 * width, 4 * width, 3), *_block(4 * width, 2 * width, 3))
        self.half_stage = nn.Sequential(*_block(2 * width, 2 * width, 3), *_block(2 * width, width, 3))
        self.full_stage = nn.Sequential(*_block(width, width, 3), nn.Conv2d(width, 3, 3, padding=1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.quarter_stage(features)
        x = F.interpolate(x, size=(self.half, self.half), mode="bilinear", align_corners=False)
        x = self.half_stage(x)
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.full_stage(x)


class Transporter(nn.Module):
    """Φ (feature encoder), Ψ (keypoint network) and R (refine net) of Kulkarni et al.

    Inputs are float frames (B, 3, size, size) in [0, 1] (see :func:`frames_to_inputs`); features
    and keypoint maps live at the encoder's resolution, ceil(size / 4) per side.
    """

    def __init__(self, keypoints: int, size: int, channels: int = DEFAULT_CHANNELS, keypoint_std: float = 0.1) -> None:
        super().__init__()
        if keypoints < 1 or size < 8 or channels < 1 or keypoint_std <= 0:
            raise ValueError(
                f"bad Transporter shape: keypoints={keypoints}, size={size}, channels={channels}, "
                f"keypoint_std={keypoint_std}"
            )
        self.num_keypoints = keypoints
        self.size = size
        self.channels = channels
        self.keypoint_std = keypoint_std
        self.encoder = _downsampling_trunk(channels)
        self.keypointer = nn.Sequential(_downsampling_trunk(channels), nn.Conv2d(4 * channels, keypoints, 1))
        self.refiner = _Refiner(channels, size)

    @property
    def feature_channels(self) -> int:
        return 4 * self.channels

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Φ: (B, 3, S, S) -> features (B, 4 * channels, S/4, S/4)."""
        return self.encoder(images)

    def keypoints(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ψ: (B, 3, S, S) -> coordinates (B, K, 2) in [-1, 1] as (x, y), and their Gaussian maps.

        The maps (B, K, S/4, S/4) are what transport and the counterfactual mask use: H^k, not the
        raw heatmap logits.
        """
        logits = self.keypointer(images)
        coords = spatial_softmax(logits)
        return coords, self.gaussian_maps(coords, logits.shape[-2:])

    def gaussian_maps(self, coords: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """:func:`gaussian_maps` with this model's ``keypoint_std``."""
        return gaussian_maps(coords, tuple(size), self.keypoint_std)

    def transport(
        self,
        source_features: torch.Tensor,
        source_maps: torch.Tensor,
        target_features: torch.Tensor,
        target_maps: torch.Tensor,
    ) -> torch.Tensor:
        """:func:`transport` (Kulkarni et al., Eq. 1)."""
        return transport(source_features, source_maps, target_features, target_maps)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """R: features (B, 4 * channels, S/4, S/4) -> image (B, 3, S, S)."""
        return self.refiner(features)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``target`` from ``source``'s features transported by both keypoint sets."""
        # One pass over source and target together: half the kernel launches, one set of batch stats.
        both = torch.cat((source, target))
        features = self.encode(both)
        _, maps = self.keypoints(both)
        source_features, target_features = features.chunk(2)
        source_maps, target_maps = maps.chunk(2)
        return self.decode(self.transport(source_features, source_maps, target_features, target_maps))


# -- Training -------------------------------------------------------------------------------------


def _pair_windows(episodes: np.ndarray, max_gap: int) -> tuple[np.ndarray, ...]:
    """Per frame, the window of frames it may pair with: same episode, at most ``max_gap`` away.

    Frames of an episode are taken in their stored order, which must be time order; episodes may
    be interleaved. Returns (order, low, high, sources) in positions of the episode-sorted order:
    ``order`` maps positions to frame indices, [low, high] is each position's window and
    ``sources`` the positions whose window holds another frame.
    """
    order = np.argsort(episodes, kind="stable")  # positions grouped by episode, time order kept
    sorted_episodes = episodes[order]
    position = np.arange(len(order))
    starts = np.r_[True, sorted_episodes[1:] != sorted_episodes[:-1]]
    ends = np.r_[starts[1:], True]
    first = np.maximum.accumulate(np.where(starts, position, 0))
    last = np.minimum.accumulate(np.where(ends, position, len(order))[::-1])[::-1]
    low = np.maximum(first, position - max_gap)
    high = np.minimum(last, position + max_gap)
    sources = np.flatnonzero(high > low)
    if len(sources) == 0:
        raise ValueError("no episode has two frames: Transporter pairs need frames of one episode")
    return order, low, high, sources


def _sample_pairs(
    windows: tuple[np.ndarray, ...], count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` (source, target) frame indices: the source uniform over frames with a partner,
    the target uniform over the other frames of its window (see :func:`_pair_windows`)."""
    order, low, high, sources = windows
    source = rng.choice(sources, size=count)
    # Draw among the window's (high - low) other slots, then step over the source itself.
    target = low[source] + (rng.random(count) * (high[source] - low[source])).astype(np.int64)
    target += target >= source
    return order[source], order[target]


def channels_last(images: torch.Tensor) -> torch.Tensor:
    """``images`` (B, C, H, W) stored channels-last, the layout the training convolutions run fastest in."""
    return images.contiguous(memory_format=torch.channels_last)


def train_transporter(
    preset: VisionPreset,
    frames: np.ndarray,
    episodes: np.ndarray,
    task_keypoints: int,
    device: str | torch.device = "cpu",
    seed: int = 0,
    log: Callable[[int, dict[str, float]], None] | None = None,
    channels: int | None = None,
) -> tuple[Transporter, dict]:
    """Train a Transporter on stored frames; return it in eval mode and its metrics.

    ``frames``: uint8 (N, 3, 100, 100); ``episodes``: the episode id of each frame (N,), frames of
    an episode in time order. Pairs come from one episode at most ``preset.max_pair_gap`` steps
    apart; Adam at ``preset.transporter_lr``, multiplied by ``transporter_lr_decay`` every
    ``transporter_lr_every`` steps (VAI: batch 64, 1e-3, x0.95 per 200 steps, 3000 steps).
    ``channels`` is the encoder width (:data:`DEFAULT_CHANNELS` unless the preset has
    ``transporter_channels``). ``log(step, {"step", "loss", "lr"})`` is called about 20 times.

    Metrics: ``loss_curve`` (every step), ``final_loss`` (mean of the last 10 steps),
    ``seconds_per_step``, ``steps``, ``parameters``.
    """
    frames = np.asarray(frames)
    episodes = np.asarray(episodes)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (3, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected uint8 frames (N, 3, {IMAGE_SIZE}, {IMAGE_SIZE}), got {frames.dtype} {frames.shape}")
    if episodes.shape != (len(frames),):
        raise ValueError(f"episodes has shape {episodes.shape}, expected ({len(frames)},)")
    device = torch.device(device)
    size = preset.transporter_size
    if channels is None:
        channels = getattr(preset, "transporter_channels", DEFAULT_CHANNELS)

    rng = np.random.default_rng(seed)
    # Initialise from the seed without disturbing the caller's global torch random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Transporter(task_keypoints, size, channels, preset.keypoint_std).to(device)
    # Channels-last (NHWC) convolutions: 15-25% less time per training step on a 2-core CPU.
    model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=preset.transporter_lr)
    schedule = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=preset.transporter_lr_every, gamma=preset.transporter_lr_decay
    )
    dataset = _prepare_dataset(frames, size, device)
    windows = _pair_windows(episodes, preset.max_pair_gap)
    steps = preset.transporter_steps
    losses = torch.zeros(steps, device=device)  # filled on the device: no host sync per step
    log_every = max(1, steps // 20)

    started = time.perf_counter()
    for step in range(steps):
        source_index, target_index = _sample_pairs(windows, preset.transporter_batch, rng)
        source = channels_last(dataset[torch.from_numpy(source_index).to(device)].float() / 255.0)
        target = channels_last(dataset[torch.from_numpy(target_index).to(device)].float() / 255.0)
        loss = F.mse_loss(model(source, target), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses[step] = loss.detach()
        if log is not None and (step % log_every == 0 or step == steps - 1):
            log(step, {"step": step, "loss": float(losses[step]), "lr": optimizer.param_groups[0]["lr"]})
    loss_curve = losses.tolist()  # waits for the device, so the timing below is complete
    seconds = time.perf_counter() - started

    model.to(memory_format=torch.contiguous_format).eval()
    metrics = {
        "loss_curve": loss_curve,
        "final_loss": float(np.mean(loss_curve[-10:])) if steps else float("nan"),
        "seconds_per_step": seconds / steps if steps else float("nan"),
        "steps": steps,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return model, metrics


# -- Checkpoints ----------------------------------------------------------------------------------


def save_transporter(model: Transporter, path: str | os.PathLike[str]) -> Path:
    """Write weights and shape to a safetensors file atomically (temporary file, then rename)."""
    path = Path(path)
    from safetensors.torch import save_file

    tensors = {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "keypoints": str(model.num_keypoints),
        "size": str(model.size),
        "channels": str(model.channels),
        "keypoint_std": repr(model.keypoint_std),
        DIGEST_KEY: tensors_digest(tensors),
    }
    atomic_write(path, lambda temporary: save_file(tensors, str(temporary), metadata=metadata))
    return path


def load_transporter(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    keypoints: int | None = None,
    size: int | None = None,
) -> Transporter:
    """A Transporter saved by :func:`save_transporter`, in eval mode on ``device``.

    ``keypoints`` and ``size``, when given, must match the file's. A missing, unreadable or
    mismatched file raises a one-line :class:`UserError` that names it and the fix.
    """
    path = Path(path)
    retrain = "train the keypoints stage again to rewrite it"
    if not path.is_file():
        raise UserError(f"no Transporter checkpoint at {path}; train the keypoints stage first")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as reader:
            metadata = reader.metadata() or {}
            tensors = {name: reader.get_tensor(name) for name in reader.keys()}
    except Exception as error:  # safetensors raises its own error type for malformed files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(
            f"{path} is not a readable Transporter checkpoint ({reason}); delete it and {retrain}"
        ) from None
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} was not written by vai's Transporter (format {metadata.get('format')!r}); {retrain}")
    if digest_mismatch(tensors, metadata):
        raise UserError(f"{path} is damaged (its weights fail their checksum); delete it and {retrain}")
    try:
        model = Transporter(
            int(metadata["keypoints"]),
            int(metadata["size"]),
            int(metadata["channels"]),
            float(metadata["keypoint_std"]),
        )
        model.load_state_dict(tensors, strict=True)
    except (KeyError, ValueError, RuntimeError) as error:
        reason = str(error).splitlines()[0]
        raise UserError(f"{path} does not match the Transporter it describes ({reason}); {retrain}") from None
    if keypoints is not None and model.num_keypoints != keypoints:
        raise UserError(f"{path} has {model.num_keypoints} keypoints but {keypoints} are wanted; {retrain}")
    if size is not None and model.size != size:
        raise UserError(f"{path} was trained at size {model.size} but {size} is wanted; {retrain}")
    return model.to(device).eval()
