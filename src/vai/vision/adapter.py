"""The attention adapter (VAI, Sec. 3.3): a tiny network that predicts each frame's foreground mask.

Trained on distracted frames (``vai.vision.augment``) against the counterfactual masks of step 1,
then frozen: the agent sees ``mask(obs) x obs`` (:class:`AdaptedObservation`,
:class:`AdapterWrapper`), so backgrounds it never saw in training cannot reach its encoder.

Example::

    adapter, metrics = train_adapter(get_vision_preset("quick"), frames, episodes, masks,
                                     backgrounds=None, device="cpu", seed=0)
    save_adapter(adapter, run.adapter)  # run: a vai.run_dir.RunDir
    env = AdapterWrapper(vai.make_env("cartpole_balance", mode="video_hard"), adapter)
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vai.checkpoints import CheckpointFormat, load_tensors, save_tensors
from vai.crops import center_crop
from vai.presets.vision import VisionPreset
from vai.tasks import FRAME_STACK
from vai.vision.augment import Distractor
from vai.vision.backgrounds import procedural_backgrounds
from vai.vision.keypoints import channels_last

CHECKPOINT = CheckpointFormat(
    name="vai.attention_adapter",
    version=2,
    kind="attention adapter checkpoint",
    fix="run the adapter stage ('vai adapter TASK') to write it, or pass another adapter checkpoint",
    changes="VAI's architecture, with its 16-channel attention gate",
)
"""The adapter's files: safetensors whose metadata records the format, the version and the architecture
(``AttentionAdapter.config``: channels, size, norm and output options)."""

PROCEDURAL_POOL = 512
"""Procedural background images made when no image folder is given."""

NATURAL_POOL_SIDE = 128
"""Side the natural images of an image folder are loaded at: the overlays are random resized crops
of them (VAI: of Places365's 256 px images), so the pool keeps more detail than one frame."""

LOG_CALLS = 20
"""About how many times a training calls its ``log`` callback."""

NORMS = ("batch", "group")
OUTPUTS = ("clamp", "sigmoid")


def _block(in_channels: int, out_channels: int, norm: str, stride: int = 1) -> nn.Sequential:
    """VAI's block: 3x3 convolution, normalisation, ReLU. ``norm`` is ``batch`` (VAI) or ``group``
    (GroupNorm with 4 groups, 1 for a single channel)."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    normalise = nn.BatchNorm2d(out_channels) if norm == "batch" else nn.GroupNorm(min(4, out_channels), out_channels)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), normalise, nn.ReLU(inplace=True)
    )


def _upsample(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling with aligned corners (VAI's ``UpsamplingBilinear2d``), to an exact size."""
    return F.interpolate(images, size=size, mode="bilinear", align_corners=True)


class AttentionAdapter(nn.Module):
    """Frame (N, 3, S, S) in [0, 1] -> foreground probability (N, 1, S, S) in [0, 1].

    VAI's network (Sec. 3.3): an encoder of two blocks at S/2, then at S/4 the features of a third
    block gated by a 16-channel sigmoid attention map computed from the S/2 features, and a fourth
    block; a decoder of two blocks at S/4, one at S/2 and a one-channel block, upsampled to S. With
    ``output="clamp"`` (VAI) the last block's ReLU, upsampled and clamped to [0, 1], is the mask, so
    background can be exactly 0; ``"sigmoid"`` puts a linear head through a sigmoid instead. Blocks
    normalise with batch norm (VAI) or group norm (``norm``). 16 channels give 17,091 parameters.
    Fully convolutional: any S works; ``size`` records the side it was trained on.
    """

    def __init__(self, channels: int = 16, size: int = 84, norm: str = "batch", output: str = "clamp"):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")
        self.channels, self.size, self.norm, self.output = channels, size, norm, output
        self.stem = nn.Sequential(_block(3, channels, norm, stride=2), _block(channels, channels, norm))
        self.attention = _block(channels, channels, norm, stride=2)
        self.middle = _block(channels, channels, norm, stride=2)
        self.last = _block(channels, channels, norm)
        self.decode_low = nn.Sequential(_block(channels, channels, norm), _block(channels, channels, norm))
        self.decode_high = _block(channels, channels, norm)
        self.head = _block(channels, 1, norm) if output == "clamp" else nn.Conv2d(channels, 1, 3, padding=1)

    @property
    def config(self) -> dict[str, Any]:
        """The architecture, as stored in checkpoints."""
        return {"channels": self.channels, "size": self.size, "norm": self.norm, "output": self.output}

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Attention-gated features (N, C, S/4, S/4); the feature-consistency loss compares them."""
        stem = self.stem(frames)
        gate = torch.sigmoid(self.attention(stem))
        return self.last(self.middle(stem) * gate)

    def decode(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Gated features -> foreground probability (N, 1, *size) in [0, 1]."""
        half = (size[0] + 1) // 2, (size[1] + 1) // 2
        hidden = self.decode_high(_upsample(self.decode_low(features), half))
        mask = _upsample(self.head(hidden), tuple(size))
        return mask.clamp(0, 1) if self.output == "clamp" else torch.sigmoid(mask)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(frames), frames.shape[-2:])

    def masks_for_stack(self, observations: torch.Tensor) -> torch.Tensor:
        """Stacks (B, 3F, H, W) float in [0, 1] -> masks (B, F, H, W): frames fold into the batch."""
        batch, channels, height, width = observations.shape
        frames = observations.reshape(batch * channels // 3, 3, height, width)
        return self(frames).reshape(batch, channels // 3, height, width)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def adapter_loss(
    adapter: AttentionAdapter,
    distracted: torch.Tensor,
    clean_masked: torch.Tensor,
    target: torch.Tensor,
    pos_weight: float,
    feature_weight: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """VAI's adapter objective on stacks (B, 3F, S, S) and target masks (B, F, S, S).

    Mask term: squared error, weighted ``pos_weight`` where the prediction falls short of the target
    and 1 where it exceeds it, so a missed foreground pixel costs ``pos_weight`` times a leaked
    background pixel (the agent can live
    with some background, not with a missing limb). Feature term: squared distance between the gated
    features of the distracted frame and of the clean masked frame; the clean branch is a fixed
    target (no gradient), as in VAI's code, so the encoder learns to map distractions to "nothing"
    rather than both branches collapsing. Metrics are detached 0-d tensors (no device sync).
    """
    batch, channels, height, width = distracted.shape
    frames = channels_last(distracted.reshape(-1, 3, height, width))  # frames fold into the batch
    features = adapter.encode(frames)
    predicted = adapter.decode(features, (height, width)).reshape(batch, channels // 3, height, width)
    with torch.no_grad():  # in training mode, as VAI: batch norm's running statistics see both passes
        clean_features = adapter.encode(channels_last(clean_masked.reshape(-1, 3, height, width)))
    # VAI's weighting: pos_weight x relu(target - predicted)^2 + relu(predicted - target)^2; for
    # targets in {0, 1} and predictions in [0, 1] the first term lives on foreground, the second on
    # background.
    mask_loss = (pos_weight * F.relu(target - predicted) ** 2 + F.relu(predicted - target) ** 2).mean()
    feature_loss = F.mse_loss(features, clean_features)
    loss = mask_loss + feature_weight * feature_loss
    metrics = {"loss": loss.detach(), "mask_loss": mask_loss.detach(), "feature_loss": feature_loss.detach()}
    return loss, metrics


def train_adapter(
    preset: VisionPreset,
    frames: torch.Tensor | np.ndarray,
    episodes: torch.Tensor | np.ndarray,
    masks: torch.Tensor | np.ndarray,
    backgrounds: torch.Tensor | None,
    device: str | torch.device,
    seed: int,
    log: Callable[[dict[str, float]], None] | None = None,
) -> tuple[AttentionAdapter, dict[str, Any]]:
    """Train an adapter on recorded frames and their counterfactual masks (VAI step 2).

    ``frames`` uint8 (N, 3, H, W), each recorded frame once, episodes stored one after another;
    ``episodes`` (N,) the episode of each frame; ``masks`` bool (N, h, w): (N, H, W), as the
    counterfactual masks are made, or those of the centre crop, which :func:`place_masks` extends
    back to H x W. ``backgrounds`` uint8 (M, 3, P, P) natural images, or None for
    :func:`procedural_backgrounds`. Each step samples ``preset.adapter_batch``
    stacks of 3 consecutive frames of one episode (the first frame repeated at an episode's start,
    as the environment stacks them), distracts them and takes one Adam step; the learning
    rate is multiplied by ``preset.adapter_lr_decay`` every ``preset.adapter_lr_every`` steps (VAI).

    Returns the adapter (eval mode, on ``device``) and metrics: per-step ``loss``, ``mask_loss``,
    ``feature_loss`` lists, ``seconds_per_step``, ``steps``, ``parameters``. ``log`` receives a dict
    (``step``: the steps done, the losses) about ``LOG_CALLS`` times, the last after the last step.
    """
    device = torch.device(device)
    frames = torch.as_tensor(frames).to(device)
    episodes = torch.as_tensor(episodes).to(device)
    masks = torch.as_tensor(masks).to(device).bool()
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be uint8 (N, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
    if episodes.shape != frames.shape[:1] or masks.ndim != 3 or masks.shape[0] != frames.shape[0]:
        raise ValueError(
            f"frames {tuple(frames.shape)}, episodes {tuple(episodes.shape)} and masks {tuple(masks.shape)} "
            "must have one entry per frame"
        )
    masks = place_masks(masks, frames.shape[-2:])
    stacks = stack_indices(episodes, FRAME_STACK)

    generator = torch.Generator(device=device).manual_seed(seed)
    if backgrounds is None:
        backgrounds = procedural_backgrounds(PROCEDURAL_POOL, frames.shape[-1], generator)
    knobs = distractor_settings(preset)
    distractor = Distractor(backgrounds.to(device), crop_size=preset.adapter_size, **knobs).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adapter = AttentionAdapter(size=preset.adapter_size, norm=preset.adapter_norm, output=preset.adapter_output)
    adapter.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(adapter.parameters(), lr=preset.adapter_lr)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, preset.adapter_lr_every, preset.adapter_lr_decay)

    history: dict[str, list[torch.Tensor]] = {"loss": [], "mask_loss": [], "feature_loss": []}
    log_every = max(1, preset.adapter_steps // LOG_CALLS)
    start = time.perf_counter()
    for step in range(1, preset.adapter_steps + 1):
        picks = stacks[torch.randint(len(stacks), (preset.adapter_batch,), generator=generator, device=device)]
        stack_frames = frames[picks].flatten(1, 2)  # (B, F, 3, H, W) -> (B, 3F, H, W)
        batch = distractor(stack_frames, masks[picks], generator)
        loss, metrics = adapter_loss(
            adapter, batch.distracted, batch.clean_masked, batch.target, preset.pos_weight, preset.feature_weight
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        for name, value in metrics.items():
            history[name].append(value)
        if log is not None and (step % log_every == 0 or step == preset.adapter_steps):
            seconds = (time.perf_counter() - start) / step
            log({"step": step, **{k: float(v) for k, v in metrics.items()}, "seconds_per_step": seconds})
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    adapter.to(memory_format=torch.contiguous_format).eval()
    result: dict[str, Any] = {name: torch.stack(values).tolist() if values else [] for name, values in history.items()}
    result.update(
        seconds_per_step=elapsed / max(preset.adapter_steps, 1),
        steps=preset.adapter_steps,
        parameters=parameter_count(adapter),
    )
    return adapter, result


def distractor_settings(preset: VisionPreset) -> dict[str, Any]:
    """The :class:`~vai.vision.augment.Distractor`'s keyword arguments, each the preset's field of the
    same name after ``adapter_`` (``boxes``: ``adapter_boxes``), so that every knob is a setting."""
    arguments = inspect.signature(Distractor).parameters.values()
    names = [argument.name for argument in arguments if argument.kind is inspect.Parameter.KEYWORD_ONLY]
    return {name: getattr(preset, f"adapter_{name}") for name in names}


def stack_indices(episodes: torch.Tensor, stack: int = FRAME_STACK) -> torch.Tensor:
    """(N, stack) frame indices of the stack ending at each frame, oldest first.

    Frames before an episode's first are replaced by that first frame, as the environment fills its
    stack at reset. Episodes must be stored contiguously (each id one run).
    """
    count = episodes.shape[0]
    index = torch.arange(count, device=episodes.device)
    starts = torch.ones(count, dtype=torch.bool, device=episodes.device)
    starts[1:] = episodes[1:] != episodes[:-1]
    if int(starts.sum()) != len(torch.unique(episodes)):
        raise ValueError("each episode's frames must be stored one after another")
    first = torch.cummax(torch.where(starts, index, torch.zeros_like(index)), dim=0).values
    back = torch.arange(stack - 1, -1, -1, device=episodes.device)
    return torch.maximum(index[:, None] - back, first[:, None])


def place_masks(masks: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Masks (N, h, w) of the centre crop -> (N, H, W) of the whole frame.

    The crop sits at ((H - h) // 2, (W - w) // 2), where :func:`vai.crops.center_crop` cuts it. The
    border outside it was never classified; it takes the value of the nearest classified pixel (edge
    replication): a body that touches the crop's edge probably goes on, and missing foreground is
    the costly error.
    """
    height, width = size
    rows_in, cols_in = masks.shape[-2:]
    if (rows_in, cols_in) == (height, width):
        return masks
    if rows_in > height or cols_in > width:
        raise ValueError(f"masks {rows_in}x{cols_in} are larger than the frames {height}x{width}")
    top, left = (height - rows_in) // 2, (width - cols_in) // 2
    rows = (torch.arange(height, device=masks.device) - top).clamp(0, rows_in - 1)
    cols = (torch.arange(width, device=masks.device) - left).clamp(0, cols_in - 1)
    return masks[:, rows][:, :, cols]


class AdaptedObservation(nn.Module):
    """A frozen adapter applied to observations: (B, 3F, H, W) -> mask x observation (B, 3F, S, S).

    Input uint8 (0-255) or float in [0, 1], H x W = S x S or larger (centre-cropped to the adapter's
    size S, e.g. 100 -> 84); output float in [0, 1] on the input's device. Gradients never reach the
    adapter, and it stays in eval mode whatever ``train()`` is called on the parent module.
    """

    def __init__(self, adapter: AttentionAdapter):
        super().__init__()
        self.adapter = adapter.eval()
        self.adapter.requires_grad_(False)

    def train(self, mode: bool = True) -> AdaptedObservation:
        super().train(mode)
        self.adapter.eval()
        return self

    @torch.no_grad()
    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        images = center_crop(observations, self.adapter.size)
        images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        batch, channels, height, width = images.shape
        masks = self.adapter.masks_for_stack(images)
        frames = images.reshape(batch, channels // 3, 3, height, width)
        return (frames * masks.unsqueeze(2)).reshape(batch, channels, height, width)


class AdapterWrapper(gym.ObservationWrapper):
    """An environment whose observations are uint8 (3F, S, S): the frozen adapter's masked crops.

    Runs the adapter on ``device`` (one stack per step); the observation space shrinks to S x S.
    """

    def __init__(self, env: gym.Env, adapter: AttentionAdapter, device: str | torch.device = "cpu"):
        super().__init__(env)
        self.device = torch.device(device)
        self.adapted = AdaptedObservation(adapter).to(self.device)
        channels = env.observation_space.shape[0]
        size = adapter.size
        self.observation_space = gym.spaces.Box(0, 255, (channels, size, size), dtype=np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(observation)).unsqueeze(0).to(self.device)
        masked = self.adapted(batch)[0]
        return (masked * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def save_adapter(adapter: AttentionAdapter, path: str | os.PathLike) -> Path:
    """Write ``adapter`` as safetensors with its architecture in the metadata, atomically."""
    return save_tensors(CHECKPOINT, adapter.state_dict(), {"config": json.dumps(adapter.config)}, path)


def load_adapter(path: str | os.PathLike, device: str | torch.device = "cpu") -> AttentionAdapter:
    """An adapter saved by :func:`save_adapter`, in eval mode on ``device``; UserError otherwise."""
    tensors, metadata = load_tensors(CHECKPOINT, path)
    try:
        adapter = AttentionAdapter(**json.loads(metadata["config"]))
        adapter.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CHECKPOINT.mismatch(path, error) from None
    return adapter.to(device).eval()
