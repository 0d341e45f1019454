"""What the agent's encoder sees: crop, the frozen adapter (VAI), and each algorithm's augmentation.

Training view (batches from replay): random crop 100 -> 84 (RAD / PAD); ``drq`` instead shifts the
centre crop by up to 4 pixels (DrQ); ``vai`` passes the crop through the frozen attention adapter,
mask x observation per frame, then adds VAI's adapt_aug (small boxes, Gaussian noise). ``svea``'s
random convolution is applied by the agent to a second copy of the batch (SVEA mixes both).
Evaluation view: centre crop, the adapter for ``vai``, nothing random. Inputs uint8 (B, 3F, H, W),
outputs float (B, 3F, S, S) in [0, 1] on the input's device.
"""

from __future__ import annotations

import torch
from torch import nn

from vai.config import RLPreset
from vai.rl.augment import adapt_aug, center_crop, random_crop, random_shift
from vai.vision.adapter import AdaptedObservation, AttentionAdapter


class ObservationPipeline(nn.Module):
    def __init__(self, algorithm: str, preset: RLPreset, adapter: AttentionAdapter | None = None):
        super().__init__()
        if (algorithm == "vai") != (adapter is not None):
            raise ValueError("the vai algorithm needs an adapter and the others take none")
        if adapter is not None and adapter.size != preset.image_size:
            raise ValueError(f"the adapter was trained at {adapter.size} px, the agent sees {preset.image_size} px")
        self.algorithm, self.size = algorithm, preset.image_size
        self.boxes, self.noise = preset.adapt_boxes, preset.adapt_noise
        self.adapted = AdaptedObservation(adapter) if adapter is not None else None

    def _finish(self, crops: torch.Tensor) -> torch.Tensor:
        if self.adapted is not None:
            return self.adapted(crops)
        return crops.float() / 255

    def train_view(self, observations: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.algorithm == "drq":
            crops = random_shift(center_crop(observations, self.size).float(), generator=generator) / 255
            return crops
        images = self._finish(random_crop(observations, self.size, generator))
        if self.adapted is not None:
            images = adapt_aug(images, self.boxes, self.noise, generator)
        return images

    @torch.no_grad()
    def eval_view(self, observations: torch.Tensor) -> torch.Tensor:
        return self._finish(center_crop(observations, self.size))
