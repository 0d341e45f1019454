"""What the agent's encoder sees: crop, the frozen adapter (VAI), and each algorithm's augmentation.

The replay buffer stores one frame per step in its *stored form*. Where the frozen adapter runs
(``vai`` only) is the preset's ``adapter_per_crop``:

- On (VAI, ``paper``): the stored form is the raw frame. The adapter runs on each view the encoder
  gets, as VAI's encoder runs it inside its forward pass: in training on every frame of each sampled
  stack's random crop (mask x crop, the mask clamped to [0, 1]; the crop's rim and its offset on the
  grid of the adapter's strided layers are the crop's own), when acting on the centre crop; with
  ``downsample`` d > 1 the adapted view is then average-pooled to 1/d of its side. The adapter is
  frozen and deterministic, so one pass per sampled view gives what VAI's repeated passes on the
  same crop give.
- Off (``quick``): the stored form is the *adapted* frame. The adapter runs once per frame, when the
  frame is stored, on the centre crop the policy sees at test time (mask x frame there; the 8-pixel
  rim that only training's random crops reach takes the mask's nearest edge value, as
  :func:`place_masks` extends it); training crops are cut from the stored adapted frames. One small
  forward pass per environment step instead of one per sampled frame.

Without the adapter, or with it off, a ``downsample`` d > 1 (CPU presets) average-pools the stored
frame to 1/d of its side, so sampling, cropping, augmentation and the encoder all work on d² times
fewer pixels and nothing is pooled per update.

Training view (stacks sampled from replay): random crop (100 -> 84, or 50 -> 42 at d = 2 from pooled
stored frames; RAD / PAD), one per sampled stack; ``drq`` instead shifts the centre crop by up to
4 / d pixels (DrQ). ``svea``'s random convolution is applied by the agent to a second copy of the
batch. Policy view (stacks in stored form): the centre crop, nothing random. Evaluation view (raw
environment observations): stored form, then the policy view. Views are float (B, 3F, S / d, S / d)
in [0, 1] on the input's device.

Encoder input (:meth:`ObservationPipeline.augment`): for ``vai``, VAI's adapt_aug (small boxes,
Gaussian noise) drawn afresh on every pass through an encoder, as VAI runs it inside its encoder's
forward; the other algorithms' views enter the encoder unchanged.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vai.crops import center_crop, random_crop
from vai.presets.rl import RLPreset
from vai.rl.algorithms import Algorithm
from vai.rl.augment import adapt_aug, random_shift
from vai.vision.adapter import AttentionAdapter, place_masks

DRQ_PAD = 4
"""DrQ's shift in pixels at full resolution."""

NOISE_BANK_VIEWS = 4
"""With the preset's ``adapt_noise_bank``, on a CPU, adapt_aug's Gaussian noise comes from a bank of
this many training batches' worth of N(0, 1) values, made once from a fixed seed
(:func:`vai.rl.augment.standard_normal`)."""


class ObservationPipeline(nn.Module):
    def __init__(self, algorithm: Algorithm, preset: RLPreset, adapter: AttentionAdapter | None = None):
        super().__init__()
        if algorithm.adapter != (adapter is not None):
            needs = "needs an adapter" if algorithm.adapter else "takes no adapter"
            raise ValueError(f"the {algorithm.name} algorithm {needs}")
        if adapter is not None and adapter.size != preset.image_size:
            raise ValueError(f"the adapter was trained at {adapter.size} px, the agent sees {preset.image_size} px")
        if preset.downsample < 1 or preset.image_size % preset.downsample:
            raise ValueError(f"downsample {preset.downsample} does not divide image_size {preset.image_size}")
        self.algorithm, self.size, self.downsample = algorithm, preset.image_size, preset.downsample
        self.per_crop = adapter is not None and preset.adapter_per_crop
        """The adapter runs on each view (replay keeps raw frames), not once per stored frame."""
        self.crop = preset.image_size // preset.downsample
        """Side of the views the encoder sees."""
        self.batch_size = preset.batch_size
        self.boxes, self.box_std, self.box_max = preset.adapt_boxes, preset.adapt_box_std, preset.adapt_box_max
        self.noise, self.noise_bank = preset.adapt_noise, preset.adapt_noise_bank
        self.adapter = adapter.eval().requires_grad_(False) if adapter is not None else None
        self._noise_bank: torch.Tensor | None = None

    def train(self, mode: bool = True) -> ObservationPipeline:
        super().train(mode)
        if self.adapter is not None:
            self.adapter.eval()  # frozen: never in training mode
        return self

    def stored_shape(self, frame_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Shape of a stored frame for environment frames of ``frame_shape`` (3, H, W)."""
        if self.per_crop:
            return tuple(frame_shape)
        channels, height, width = frame_shape
        return channels, height // self.downsample, width // self.downsample

    @torch.no_grad()
    def store_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (N, 3, H, W) -> the stored form, uint8: raw with ``adapter_per_crop``, else
        masked for ``vai`` and pooled by d."""
        if self.per_crop or (self.adapter is None and self.downsample == 1):
            return frames
        images = frames.float() / 255
        if self.adapter is not None:
            masks = self.adapter(center_crop(images, self.size))[:, 0]  # (N, S, S)
            images = images * place_masks(masks, images.shape[-2:])[:, None]
        if self.downsample > 1:
            images = F.avg_pool2d(images, self.downsample)
        return (images * 255).round().to(torch.uint8)

    def store(self, observation: np.ndarray) -> np.ndarray:
        """The newest frame of an environment observation (3F, H, W), as the replay buffer keeps it."""
        frame = torch.as_tensor(np.ascontiguousarray(observation[-3:]), device=self._device()).unsqueeze(0)
        return self.store_frames(frame)[0].cpu().numpy()

    def store_stacks(self, observations: torch.Tensor) -> torch.Tensor:
        """Raw stacks (B, 3F, H, W) -> stored form, every frame."""
        batch, channels, height, width = observations.shape
        frames = self.store_frames(observations.reshape(-1, 3, height, width))
        return frames.reshape(batch, channels, *frames.shape[-2:])

    def train_view(self, stored: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Stacks from replay (stored form) -> randomly cropped (``drq``: shifted) float views; with
        ``adapter_per_crop`` each crop is adapted (and pooled) after it is cut."""
        if self.per_crop:
            return self.adapt_crops(random_crop(stored, self.size, generator))
        if self.algorithm.shift:
            centre = center_crop(stored, self.crop).float() / 255
            return random_shift(centre, max(1, DRQ_PAD // self.downsample), generator)
        return random_crop(stored, self.crop, generator).float().div_(255)

    def augment(self, view: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """What one encoder pass sees of ``view``: a fresh adapt_aug of it (a new tensor) where the
        algorithm has ``adapt_aug`` (``vai``), else ``view`` itself."""
        if not self.algorithm.adapt_aug:
            return view
        return adapt_aug(
            view,
            self.boxes,
            self.noise,
            generator,
            self.box_std,
            self.box_max,
            self.downsample,
            self._bank_for(view),
        )

    def _bank_for(self, images: torch.Tensor) -> torch.Tensor | None:
        """The CPU's noise bank (``adapt_noise_bank``), made from a fixed seed when first needed, sized
        for training batches whatever view comes first (one acting stack or a batch), so a resumed run
        draws from the same bank; made again only for a view larger than a batch. None without the
        setting and on a GPU, where fresh noise costs nothing: adapt_aug then draws afresh."""
        if not self.noise_bank or images.device.type != "cpu" or self.noise <= 0:
            return None
        batch_view = self.batch_size * images[0].numel()
        if self._noise_bank is None or self._noise_bank.numel() < images.numel():
            generator = torch.Generator().manual_seed(0)
            self._noise_bank = torch.randn(NOISE_BANK_VIEWS * max(batch_view, images.numel()), generator=generator)
        return self._noise_bank

    def policy_view(self, stored: torch.Tensor) -> torch.Tensor:
        """Stacks in stored form -> the centre crops the policy sees (adapted here with
        ``adapter_per_crop``)."""
        if self.per_crop:
            return self.adapt_crops(center_crop(stored, self.size))
        return center_crop(stored, self.crop).float() / 255

    @torch.no_grad()
    def adapt_crops(self, crops: torch.Tensor) -> torch.Tensor:
        """Raw uint8 crops (B, 3F, S, S) -> mask x crop, every frame through the frozen adapter at
        once (frames fold into the batch), average-pooled by d: float (B, 3F, S / d, S / d)."""
        images = crops.float() / 255
        batch, channels, height, width = images.shape
        masks = self.adapter.masks_for_stack(images)  # (B, F, S, S), clamped to [0, 1]
        frames = images.view(batch, channels // 3, 3, height, width) * masks[:, :, None]
        view = frames.view(batch, channels, height, width)
        return F.avg_pool2d(view, self.downsample) if self.downsample > 1 else view

    @torch.no_grad()
    def eval_view(self, observations: torch.Tensor) -> torch.Tensor:
        """Raw environment stacks -> centre crops as the policy sees them."""
        return self.policy_view(self.store_stacks(observations))

    def _device(self) -> torch.device:
        return next(self.adapter.parameters()).device if self.adapter is not None else torch.device("cpu")


class StoredStack:
    """The policy's current stack kept as stored frames (oldest first): each environment frame is
    stored once, so in the stored form (``adapter_per_crop`` off) acting on it needs no second pass
    of the adapter; with ``adapter_per_crop`` the frames are raw and acting adapts the stack's centre
    crop. At reset the first frame fills the stack, as the environment fills its own."""

    def __init__(self, pipeline: ObservationPipeline, observation: np.ndarray):
        self.pipeline = pipeline
        depth = observation.shape[0] // 3
        self.frames: deque[np.ndarray] = deque([pipeline.store(observation)] * depth, maxlen=depth)

    @property
    def newest(self) -> np.ndarray:
        return self.frames[-1]

    def push(self, observation: np.ndarray) -> np.ndarray:
        """Store the newest frame of ``observation``, add it to the stack and return it."""
        return self.append(self.pipeline.store(observation))

    def append(self, stored: np.ndarray) -> np.ndarray:
        """Add a frame already in stored form (:meth:`ObservationPipeline.store`) and return it."""
        self.frames.append(stored)
        return stored
