"""What the agent's encoder sees: crop, the frozen adapter (VAI), and each algorithm's augmentation.

The replay buffer stores one frame per step in the form the agent learns from. For ``vai`` that is
the *adapted* frame: the frozen adapter runs once per frame, when the frame is stored, on the
centre crop the policy sees at test time (mask x frame there; the 8-pixel rim that only training's
random crops reach takes the mask's nearest edge value, as :func:`place_masks` extends it). So the
adapter costs one small forward pass per environment step instead of six per sampled transition,
and training and evaluation see the same adapted pixels.

Training view (stacks sampled from replay): random crop 100 -> 84 (RAD / PAD); ``drq`` instead
shifts the centre crop by up to 4 pixels (DrQ); ``vai`` then adds VAI's adapt_aug (small boxes,
Gaussian noise). ``svea``'s random convolution is applied by the agent to a second copy of the batch.
Evaluation view (raw environment observations): the adapter for ``vai``, centre crop, nothing random.
Views are float (B, 3F, S, S) in [0, 1] on the input's device; with ``downsample`` d > 1 they are
average-pooled to S / d (a cheaper encoder for CPU runs).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vai.config import RLPreset
from vai.rl.augment import adapt_aug, random_crop, random_shift
from vai.vision.adapter import AttentionAdapter, center_crop, place_masks


class ObservationPipeline(nn.Module):
    def __init__(self, algorithm: str, preset: RLPreset, adapter: AttentionAdapter | None = None):
        super().__init__()
        if (algorithm == "vai") != (adapter is not None):
            raise ValueError("the vai algorithm needs an adapter and the others take none")
        if adapter is not None and adapter.size != preset.image_size:
            raise ValueError(f"the adapter was trained at {adapter.size} px, the agent sees {preset.image_size} px")
        self.algorithm, self.size, self.downsample = algorithm, preset.image_size, preset.downsample
        self.boxes, self.noise = preset.adapt_boxes, preset.adapt_noise
        self.adapter = adapter.eval().requires_grad_(False) if adapter is not None else None

    def train(self, mode: bool = True) -> ObservationPipeline:
        super().train(mode)
        if self.adapter is not None:
            self.adapter.eval()  # frozen: never in training mode
        return self

    @torch.no_grad()
    def adapt_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (N, 3, H, W) -> the stored form, uint8 (N, 3, H, W): masked for ``vai``."""
        if self.adapter is None:
            return frames
        images = frames.float() / 255
        masks = self.adapter(center_crop(images, self.size))[:, 0]  # (N, S, S)
        masks = place_masks(masks, images.shape[-2:])
        return (images * masks[:, None] * 255).round().to(torch.uint8)

    def store(self, observation: np.ndarray) -> np.ndarray:
        """The newest frame of an environment observation (3F, H, W), as the replay buffer keeps it."""
        frame = torch.as_tensor(np.ascontiguousarray(observation[-3:]), device=self._device()).unsqueeze(0)
        return self.adapt_frames(frame)[0].cpu().numpy()

    def adapt_stacks(self, observations: torch.Tensor) -> torch.Tensor:
        """Raw stacks (B, 3F, H, W) -> stored form, every frame adapted."""
        batch, channels, height, width = observations.shape
        frames = self.adapt_frames(observations.reshape(-1, 3, height, width))
        return frames.reshape(batch, channels, height, width)

    def train_view(self, stored: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Stacks from replay (stored form) -> augmented float crops."""
        if self.algorithm == "drq":
            return self._pool(random_shift(center_crop(stored, self.size).float(), generator=generator) / 255)
        images = random_crop(stored, self.size, generator).float() / 255
        if self.adapter is not None:
            images = adapt_aug(images, self.boxes, self.noise, generator)
        return self._pool(images)

    @torch.no_grad()
    def eval_view(self, observations: torch.Tensor) -> torch.Tensor:
        """Raw environment stacks -> centre crops as the policy sees them."""
        return self._pool(center_crop(self.adapt_stacks(observations), self.size).float() / 255)

    def _pool(self, images: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(images, self.downsample) if self.downsample > 1 else images

    def _device(self) -> torch.device:
        return next(self.adapter.parameters()).device if self.adapter is not None else torch.device("cpu")
