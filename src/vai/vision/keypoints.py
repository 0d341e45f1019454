"""Transporter: unsupervised object keypoints (Kulkarni et al., NeurIPS 2019), VAI's step 1.

The model learns K keypoints per frame with no labels. A feature encoder Φ maps a frame to a feature
map at a quarter of its side, a keypoint network Ψ maps it to K heatmaps whose spatial softmax gives
K coordinates, and each coordinate becomes a Gaussian map H^k. Between two frames of one episode,
features are *transported*: keypoint by keypoint, those of the source frame are erased under both
frames' keypoints and the target frame's features are pasted under the target keypoint (Kulkarni et
al., Eq. 1); a refine network R must then rebuild the target frame from that map. The only way to
lower the reconstruction error is to put keypoints on what moves between frames, which is why VAI
(Wang et al., CVPR 2021, Sec. 3.2) uses them to find the agent's foreground.

As VAI trains it: on whole 100x100 frames (no crop), Gaussians exp(-d^2 / std^2) with std 0.1 in the
[-1, 1] coordinate units, source keypoints and features detached in the transport, and the pair's
target 0-19 steps after its source.

Example, as the CLI's keypoints stage calls it::

    model, metrics = train_transporter(preset, frames, episodes, KEYPOINTS[task], device="cuda")
    save_transporter(model, run.transporter)  # run: a vai.run_dir.RunDir
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vai.checkpoints import CheckpointFormat, load_payload, load_tensors, save_payload, save_tensors
from vai.errors import UserError
from vai.presets.vision import VisionPreset
from vai.tasks import IMAGE_SIZE

DEFAULT_CHANNELS = 32
"""Width of the first encoder stage; stages have 1x, 2x and 4x this (32, 64, 128 channels as Kulkarni
et al. and VAI). A preset's ``transporter_channels`` takes precedence."""

CHECKPOINT = CheckpointFormat(
    name="vai.transporter",
    version=2,
    kind="Transporter checkpoint",
    fix="run the keypoints stage ('vai keypoints TASK') to write it",
    changes="VAI's Gaussian width convention, transport rule and refine head",
    version_in_name=True,
)
"""The Transporter's files: safetensors whose metadata records ``vai.transporter/2`` and the model's shape."""

PARTIAL = CheckpointFormat(
    name="vai.transporter-partial",
    version=1,
    kind="partial Transporter training",
    fix="delete it to train the Transporter from its first step",
    changes="",
)
"""A Transporter's training state part of the way through (weights, Adam, schedule, pair sampler,
losses so far): the keypoints stage writes one every ``SAVE_SECONDS`` and resumes from it."""

SAVE_SECONDS = 120.0
"""Seconds of training between two partial checkpoints: a killed paper run on a CPU loses at most this."""

_PREPARE_CHUNK = 512
"""Frames resized at once when preparing a data set (bounds the float copy in memory)."""


# -- Inputs ---------------------------------------------------------------------------------------


def frames_to_inputs(frames: np.ndarray | torch.Tensor, size: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """Stored uint8 frames (N, 3, H, W) as model inputs: float (N, 3, size, size) in [0, 1].

    The whole frame, as VAI trains its Transporter on the 100x100 observations; resized (bilinear,
    antialiased) only where ``size`` differs from the frame's side.
    """
    frames = torch.as_tensor(frames, device=device)
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected uint8 frames (N, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
    images = frames.float() / 255.0
    if tuple(images.shape[-2:]) != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return images


def _prepare_dataset(frames: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """All frames resized once, kept as uint8 on ``device`` so a batch is one gather."""
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

    exp(-d^2 / std^2), VAI's convention (so its "0.1" is 1/sqrt(2) as wide as a textbook Gaussian of
    standard deviation 0.1); ``std`` and d are in the normalised [-1, 1] units of the coordinates.
    """
    height, width = size
    dx = _grid(width, coords).view(1, 1, 1, width) - coords[..., 0, None, None]
    dy = _grid(height, coords).view(1, 1, height, 1) - coords[..., 1, None, None]
    return torch.exp(-(dx.square() + dy.square()) / (std * std))


def max_map(maps: torch.Tensor) -> torch.Tensor:
    """All keypoints' Gaussian maps as one map in [0, 1], their pixelwise maximum: (B, K, h, w) ->
    (B, 1, h, w). VAI keeps the features under this map to make its counterfactual masks."""
    return maps.amax(dim=1, keepdim=True)


def transport(
    source_features: torch.Tensor,
    source_maps: torch.Tensor,
    target_features: torch.Tensor,
    target_maps: torch.Tensor,
) -> torch.Tensor:
    """Kulkarni et al., Eq. 1, applied keypoint by keypoint as VAI and the Transporter do.

    Starting from Φ(s), keypoint k maps Φ̂ to (1 - H_s^k)(1 - H_t^k) Φ̂ + H_t^k Φ(t), for k = 1..K in
    order. Unrolled, with a_k = (1 - H_s^k)(1 - H_t^k):

        Φ̂ = (prod_k a_k) Φ(s) + (sum_k H_t^k prod_{j>k} a_j) Φ(t),

    which is computed here in one vectorised step (suffix products). Features are (B, C, h, w),
    maps per keypoint (B, K, h, w). The source's features and maps carry no gradient (VAI detaches
    them), so only the target frame's pass learns from the reconstruction.
    """
    source_features, source_maps = source_features.detach(), source_maps.detach()
    keep = (1.0 - source_maps) * (1.0 - target_maps)  # a_k
    # Suffix products prod_{j>=k} a_j, then shifted by one for prod_{j>k} a_j.
    suffix = keep.flip(1).cumprod(dim=1).flip(1)
    after = torch.cat((suffix[:, 1:], torch.ones_like(suffix[:, :1])), dim=1)
    paste = (target_maps * after).sum(dim=1, keepdim=True)
    return suffix[:, :1] * source_features + paste * target_features


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
    """R: feature map (B, 4w, S/4, S/4) -> image (B, 3, S, S), the encoder mirrored (VAI's layout).

    Bilinear upsampling (corners aligned, as VAI's ``UpsamplingBilinear2d``) to the exact sizes the
    encoder halved from, so any input side works. The last layer is a 7x7 convolution with batch norm
    and ReLU, as VAI's: R draws non-negative images, and R(0) is what it draws from no evidence.
    """

    def __init__(self, width: int, size: int) -> None:
        super().__init__()
        self.half = math.ceil(size / 2)
        self.size = size
        self.quarter_stage = nn.Sequential(*_block(4 * width, 4 * width, 3), *_block(4 * width, 2 * width, 3))
        self.half_stage = nn.Sequential(*_block(2 * width, 2 * width, 3), *_block(2 * width, width, 3))
        self.full_stage = nn.Sequential(*_block(width, width, 3), *_block(width, 3, 7))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.quarter_stage(features)
        x = F.interpolate(x, size=(self.half, self.half), mode="bilinear", align_corners=True)
        x = self.half_stage(x)
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=True)
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
        """:func:`transport` (Kulkarni et al., Eq. 1, keypoint by keypoint)."""
        return transport(source_features, source_maps, target_features, target_maps)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """R: features (B, 4 * channels, S/4, S/4) -> image (B, 3, S, S)."""
        return self.refiner(features)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``target`` from ``source``'s features transported by both keypoint sets.

        Source and target pass through Φ and Ψ separately (each its own batch statistics, as VAI);
        the source pass carries no gradient, since VAI detaches what the transport takes from it.
        """
        with torch.no_grad():
            source_features = self.encode(source)
            _, source_maps = self.keypoints(source)
        target_features = self.encode(target)
        _, target_maps = self.keypoints(target)
        return self.decode(self.transport(source_features, source_maps, target_features, target_maps))


# -- Training -------------------------------------------------------------------------------------


def _pair_starts(episodes: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames that may start a training pair, and the episode-sorted order of all frames.

    VAI draws a pair's source at a step t < L - ``max_gap`` of an episode of L frames and its target
    at t + U{0, ..., max_gap - 1}, so the target never runs past the episode. Frames of an episode
    are taken in their stored order, which must be time order; episodes may be interleaved. Returns
    (order, sources): ``order`` maps episode-sorted positions to frame indices, ``sources`` the
    positions that may start a pair.
    """
    order = np.argsort(episodes, kind="stable")  # positions grouped by episode, time order kept
    sorted_episodes = episodes[order]
    position = np.arange(len(order))
    starts = np.r_[True, sorted_episodes[1:] != sorted_episodes[:-1]]
    first = np.maximum.accumulate(np.where(starts, position, 0))
    _, inverse, lengths = np.unique(sorted_episodes, return_inverse=True, return_counts=True)
    sources = np.flatnonzero(position - first < lengths[inverse] - max_gap)
    if len(sources) == 0:
        raise ValueError(f"no episode has more than {max_gap} frames: Transporter pairs need longer episodes")
    return order, sources


def _sample_pairs(
    starts: tuple[np.ndarray, np.ndarray], count: int, max_gap: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` (source, target) frame indices: the source uniform over the frames that may start a
    pair (see :func:`_pair_starts`), the target 0 to ``max_gap`` - 1 steps after it (VAI)."""
    order, sources = starts
    source = rng.choice(sources, size=count)
    target = source + rng.integers(0, max_gap, size=count)
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
    log: Callable[[dict[str, float]], None] | None = None,
    channels: int | None = None,
    partial: str | os.PathLike[str] | None = None,
    save_seconds: float = SAVE_SECONDS,
) -> tuple[Transporter, dict]:
    """Train a Transporter on stored frames; return it in eval mode and its metrics.

    ``frames``: uint8 (N, 3, 100, 100); ``episodes``: the episode id of each frame (N,), frames of
    an episode in time order. Pairs come from one episode, the target 0 to ``preset.max_pair_gap``
    - 1 steps after the source (VAI); Adam at ``preset.transporter_lr``, multiplied by ``transporter_lr_decay`` every
    ``transporter_lr_every`` steps (VAI: batch 64, 1e-3, x0.95 per 200 steps, 3000 steps).
    ``channels`` is the encoder width (default: the preset's ``transporter_channels``).
    ``log({"step", "loss", "lr"})`` is called about 20 times, ``step`` counting the steps done.

    ``partial``: a file for the training's state (:data:`PARTIAL`), written every ``save_seconds`` of
    training and removed at the end. Where it holds the state of this very training (same settings,
    keypoints, seed and frames), training resumes from it and ends as it would have uninterrupted;
    a file of another training, or an unreadable one, is replaced.

    Metrics: ``loss_curve`` (every step), ``final_loss`` (mean of the last 10 steps),
    ``seconds_per_step`` (over the steps this call trained), ``steps``, ``resumed_at`` (0 unless
    resumed), ``parameters``.
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
        channels = preset.transporter_channels

    rng = np.random.default_rng(seed)
    # Initialise from the seed without disturbing the caller's global torch random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Transporter(task_keypoints, size, channels, preset.keypoint_std).to(device)
    # Channels-last (NHWC) convolutions: the layout CPU and GPU convolutions run fastest in.
    model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=preset.transporter_lr)
    schedule = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=preset.transporter_lr_every, gamma=preset.transporter_lr_decay
    )
    dataset = _prepare_dataset(frames, size, device)
    starts = _pair_starts(episodes, preset.max_pair_gap)
    steps = preset.transporter_steps
    losses = torch.zeros(steps, device=device)  # filled on the device: no host sync per step
    log_every = max(1, steps // 20)
    identity = _training_identity(preset, frames, task_keypoints, channels, seed)
    first = _resume(partial, identity, model, optimizer, schedule, rng, losses) if partial else 0

    started = last_save = time.perf_counter()
    for step in range(first, steps):
        source_index, target_index = _sample_pairs(starts, preset.transporter_batch, preset.max_pair_gap, rng)
        source = channels_last(dataset[torch.from_numpy(source_index).to(device)].float() / 255.0)
        target = channels_last(dataset[torch.from_numpy(target_index).to(device)].float() / 255.0)
        loss = F.mse_loss(model(source, target), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses[step] = loss.detach()
        if log is not None and (step % log_every == 0 or step == steps - 1):
            log({"step": step + 1, "loss": float(losses[step]), "lr": optimizer.param_groups[0]["lr"]})
        if partial and step < steps - 1 and time.perf_counter() - last_save >= save_seconds:
            _save_partial(partial, identity, step + 1, model, optimizer, schedule, rng, losses)
            last_save = time.perf_counter()
    loss_curve = losses.tolist()  # waits for the device, so the timing below is complete
    seconds = time.perf_counter() - started
    if partial:
        Path(partial).unlink(missing_ok=True)

    model.to(memory_format=torch.contiguous_format).eval()
    metrics = {
        "loss_curve": loss_curve,
        "final_loss": float(np.mean(loss_curve[-10:])) if steps else float("nan"),
        "seconds_per_step": seconds / (steps - first) if steps > first else float("nan"),
        "steps": steps,
        "resumed_at": first,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return model, metrics


def _training_identity(preset: VisionPreset, frames: np.ndarray, keypoints: int, channels: int, seed: int) -> dict:
    """What makes two trainings the same one: every setting the loop reads, the seed, and the frames."""
    fields = ("transporter_size", "transporter_batch", "transporter_steps", "transporter_lr", "transporter_lr_decay")
    fields += ("transporter_lr_every", "keypoint_std", "max_pair_gap")
    sampled = frames[:: max(1, len(frames) // 64)]  # a fingerprint of the frames, cheap for 5000 of them
    return {
        **{name: repr(getattr(preset, name)) for name in fields},
        "keypoints": keypoints,
        "channels": channels,
        "seed": seed,
        "frames": f"{frames.shape} {hashlib.sha256(sampled.tobytes()).hexdigest()}",
    }


def _save_partial(path, identity: dict, done: int, model, optimizer, schedule, rng, losses) -> None:
    payload = {
        "identity": identity,
        "done": done,
        "model": {name: value.detach().cpu() for name, value in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "sampler": rng.bit_generator.state,
        "losses": losses[:done].detach().cpu(),
    }
    save_payload(PARTIAL, payload, "model", path)


def _resume(path, identity: dict, model, optimizer, schedule, rng, losses) -> int:
    """Load the state of a partial training into the given objects; the steps it had done (0: none)."""
    if not Path(path).is_file():
        return 0
    fresh = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()), schedule.state_dict())
    sampler = rng.bit_generator.state
    try:
        payload = load_payload(PARTIAL, "model", path)
        if payload.get("identity") != identity:
            return 0
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        schedule.load_state_dict(payload["schedule"])
        rng.bit_generator.state = payload["sampler"]
        done = int(payload["done"])
        losses[:done] = payload["losses"].to(losses.device)
    except (UserError, KeyError, ValueError, TypeError, RuntimeError):
        # Another vai's or a damaged file: train from the start (whatever it half-loaded undone) and replace it.
        model.load_state_dict(fresh[0])
        optimizer.load_state_dict(fresh[1])
        schedule.load_state_dict(fresh[2])
        rng.bit_generator.state = sampler
        losses.zero_()
        return 0
    return done


# -- Checkpoints ----------------------------------------------------------------------------------


def save_transporter(model: Transporter, path: str | os.PathLike[str]) -> Path:
    """Write weights and shape to a safetensors file atomically (:mod:`vai.checkpoints`)."""
    shape = {
        "keypoints": str(model.num_keypoints),
        "size": str(model.size),
        "channels": str(model.channels),
        "keypoint_std": repr(model.keypoint_std),
    }
    return save_tensors(CHECKPOINT, model.state_dict(), shape, path)


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
    tensors, metadata = load_tensors(CHECKPOINT, path)
    try:
        model = Transporter(
            int(metadata["keypoints"]),
            int(metadata["size"]),
            int(metadata["channels"]),
            float(metadata["keypoint_std"]),
        )
        model.load_state_dict(tensors, strict=True)
    except (KeyError, ValueError, RuntimeError) as error:
        raise CHECKPOINT.mismatch(path, error) from None
    if keypoints is not None and model.num_keypoints != keypoints:
        raise CHECKPOINT.error(path, f"has {model.num_keypoints} keypoints but {keypoints} are wanted")
    if size is not None and model.size != size:
        raise CHECKPOINT.error(path, f"was trained at size {model.size} but {size} is wanted")
    return model.to(device).eval()
