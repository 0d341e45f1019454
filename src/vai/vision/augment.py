"""Distraction augmentation that trains the attention adapter (VAI, Sec. 3.3).

From clean training stacks and their foreground masks, :class:`Distractor` makes the adapter's
training pairs: the same foreground in front of a new background (the input) and the clean masked
stack (the target of the feature-consistency loss), plus the mask to predict. The foreground keeps
its pixel positions; only its colours move (colour jitter), so the target mask is the input mask
under the same crop.

Per stack, in order (the constructor's defaults are VAI's, ``train_stage2.py``; each keyword argument ``X`` is
the vision preset's field ``adapter_X``, :func:`vai.vision.adapter.distractor_settings`):

1. colour jitter of the whole frames (hue, brightness, contrast, saturation), one draw per stack;
2. one random crop (100 -> 84) shared by the 3 frames, their jittered copies and their masks;
3. a base background, one of: the original (jittered) background, a random colour, or a
   "confusing" colour near the foreground's mean colour (so colour alone cannot separate them);
   weighted by ``base_weight`` and plus uniform pixel noise;
4. optionally small boxes of random colour (VAI's ``add_random_boxes``, off by default), then a
   clamp to [0, 1];
5. a natural image overlaid on it with alpha ~ U(alpha_low, alpha_high): a random resized crop of a
   pool image (area 8-100 %, aspect 3/4-4/3, as ``RandomResizedCrop``), flipped half the time;
6. the jittered foreground pasted back over it with the mask.

Steps 3-5 draw per frame (VAI); ``coherent_stack=True`` draws them per stack instead (a static scene
behind a moving agent), only the pixel noise staying per frame.

Everything runs on the batch's device with one ``torch.Generator``, vectorised over the batch: the
only Python loops run over frame-independent things (the handful of boxes, the jitter operations).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vai.crops import random_crop

GRAY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R 601 luma, as torchvision's grayscale, used by contrast and saturation."""


class DistractedBatch(NamedTuple):
    """One training batch of the adapter, all float on the input's device."""

    distracted: torch.Tensor
    """(B, 3F, S, S) in [0, 1]: jittered foreground over a new background."""
    clean_masked: torch.Tensor
    """(B, 3F, S, S) in [0, 1]: the clean cropped stack times its mask (no jitter)."""
    target: torch.Tensor
    """(B, F, S, S) in [0, 1]: the cropped masks, one per frame."""


class Distractor(nn.Module):
    """Make (distracted, clean masked, target mask) triples from clean stacks and their masks.

    ``backgrounds`` is the natural-image pool, uint8 (M, 3, P, P) (see ``vai.vision.backgrounds``);
    it moves with the module (``.to(device)``). Each overlay is a random resized crop of a pool image
    (step 5 of the module's list), flipped horizontally half the time.
    """

    def __init__(
        self,
        backgrounds: torch.Tensor,
        crop_size: int = 84,
        *,
        hue_mean: float = -0.015,
        hue_std: float = 0.015,
        brightness_std: float = 0.08,
        contrast_std: float = 0.08,
        saturation_std: float = 0.05,
        original_prob: float = 0.3,
        color_prob: float = 0.5,
        confusing_prob: float = 0.2,
        confusing_std: float = 0.2,
        base_weight: float = 0.5,
        noise_level: float = 0.1,
        natural_prob: float = 1.0,
        alpha_low: float = 0.0,
        alpha_high: float = 1.0,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        boxes: int = 0,
        box_mean: float = 5.0,
        box_std: float = 5.0,
        box_min: int = 1,
        box_max: int = 10,
        coherent_stack: bool = False,
    ):
        """Arguments (defaults are VAI's):

        - ``hue_mean``, ``hue_std``: hue shift ~ N(hue_mean, hue_std), in turns of the colour circle
          (VAI: N(-0.015, 0.015)).
        - ``brightness_std``, ``contrast_std``, ``saturation_std``: factors ~ N(1, std) (VAI: 0.08,
          0.08, 0.05). A std of 0 skips that jitter exactly.
        - ``original_prob``, ``color_prob``, ``confusing_prob``: how often the base background is the
          original one, a uniform random colour, or the foreground's mean colour plus N(0,
          ``confusing_std``) per channel (VAI: 0.3, 0.5, 0.2 and 0.2). They must sum to 1.
        - ``base_weight``: the base background is multiplied by this (VAI 0.5: darker, so the
          overlay and noise matter) and ``noise_level`` x U(0, 1) per pixel is added (VAI: 0.1).
        - ``natural_prob``: how often a natural image is overlaid (VAI: always), with alpha ~
          U(``alpha_low``, ``alpha_high``) (VAI: U(0, 1)); the crop covers a fraction
          U(``crop_scale``) of the pool image's area at an aspect ratio log-uniform in
          ``crop_ratio`` (VAI: ``RandomResizedCrop`` defaults, 0.08-1 and 3/4-4/3).
        - ``boxes``: boxes per frame (0: none; VAI's option paints 5); each box one square side for
          the batch, int(N(``box_mean``, ``box_std``)) clipped to [``box_min``, ``box_max``] pixels
          (VAI: 5, 5, 1, 10), a place and a uniform random colour per frame, on the background only.
        - ``coherent_stack``: draw steps 3-5 per stack instead of per frame (see the module).
        """
        super().__init__()
        if backgrounds.dtype != torch.uint8 or backgrounds.ndim != 4 or backgrounds.shape[1] != 3:
            raise ValueError(
                f"backgrounds must be uint8 (M, 3, P, P), got {backgrounds.dtype} {tuple(backgrounds.shape)}"
            )
        if abs(original_prob + color_prob + confusing_prob - 1) > 1e-6:
            raise ValueError("original_prob + color_prob + confusing_prob must be 1")
        self.register_buffer("backgrounds", backgrounds, persistent=False)
        self.crop_size = crop_size
        self.hue_mean, self.hue_std, self.brightness_std = hue_mean, hue_std, brightness_std
        self.contrast_std, self.saturation_std = contrast_std, saturation_std
        self.original_prob, self.color_prob = original_prob, color_prob
        self.confusing_std, self.base_weight, self.noise_level = confusing_std, base_weight, noise_level
        self.natural_prob, self.alpha_low, self.alpha_high = natural_prob, alpha_low, alpha_high
        self.crop_scale, self.crop_ratio = crop_scale, crop_ratio
        self.boxes, self.box_mean, self.box_std = boxes, box_mean, box_std
        self.box_min, self.box_max = box_min, box_max
        self.coherent_stack = coherent_stack

    @torch.no_grad()
    def forward(self, frames: torch.Tensor, masks: torch.Tensor, generator: torch.Generator) -> DistractedBatch:
        """``frames`` uint8 or float in [0, 1] (B, 3F, H, W), ``masks`` bool or float (B, F, H, W).

        ``generator`` must live on the frames' device (``torch.Generator(device=...)``).
        """
        batch, channels, height, width = frames.shape
        stack = masks.shape[1]
        if masks.shape != (batch, stack, height, width) or channels != 3 * stack:
            raise ValueError(
                f"frames (B, 3F, H, W) and masks (B, F, H, W) disagree: {tuple(frames.shape)}, {tuple(masks.shape)}"
            )
        if min(height, width) < self.crop_size:
            raise ValueError(f"frames of {height}x{width} are smaller than the crop ({self.crop_size})")
        draw = _Draw(generator, frames.device)
        images = frames.float() / 255 if frames.dtype == torch.uint8 else frames.float()
        jittered = self._jitter(images.reshape(batch, stack, 3, height, width), draw)
        both = torch.cat([images, jittered.reshape(batch, channels, height, width), masks.float()], dim=1)
        both = random_crop(both, self.crop_size, generator)  # corners 0 .. H - S - 1, as VAI's
        size = self.crop_size
        clean = both[:, :channels].reshape(batch, stack, 3, size, size)
        jittered = both[:, channels : 2 * channels].reshape(batch, stack, 3, size, size)
        target = both[:, 2 * channels :]
        mask = target.unsqueeze(2)

        groups = 1 if self.coherent_stack else stack
        background = self._base_background(jittered, mask, draw, groups)
        background = self._draw_boxes(background, draw, groups).clamp(0, 1)
        background = self._overlay_natural(background, draw, groups)
        distracted = mask * jittered + (1 - mask) * background
        return DistractedBatch(
            distracted=distracted.reshape(batch, channels, size, size),
            clean_masked=(clean * mask).reshape(batch, channels, size, size),
            target=target,
        )

    def _jitter(self, frames: torch.Tensor, draw: _Draw) -> torch.Tensor:
        """Colour jitter of (B, F, 3, H, W), one draw per stack (VAI jitters the 3 frames alike)."""
        batch = frames.shape[0]
        if self.hue_std > 0 or self.hue_mean != 0:
            frames = shift_hue(frames, draw.normal(self.hue_mean, self.hue_std, batch, 1, 1, 1))
        if self.brightness_std > 0:
            factor = draw.normal(1.0, self.brightness_std, batch, 1, 1, 1, 1).clamp_min(0)
            frames = (frames * factor).clamp(0, 1)
        if self.contrast_std > 0:
            factor = draw.normal(1.0, self.contrast_std, batch, 1, 1, 1, 1).clamp_min(0)
            mean = grayscale(frames).mean(dim=(-2, -1), keepdim=True)
            frames = (factor * frames + (1 - factor) * mean).clamp(0, 1)
        if self.saturation_std > 0:
            factor = draw.normal(1.0, self.saturation_std, batch, 1, 1, 1, 1).clamp_min(0)
            frames = (factor * frames + (1 - factor) * grayscale(frames)).clamp(0, 1)
        return frames

    def _base_background(self, frames: torch.Tensor, mask: torch.Tensor, draw: _Draw, groups: int) -> torch.Tensor:
        """Original, random colour or confusing colour, times ``base_weight``, plus noise (VAI);
        not yet clamped (boxes come first, as VAI paints them)."""
        batch, stack, _, size, _ = frames.shape
        if groups == 1:  # the confusing colour of a coherent stack is the mean over its 3 frames
            total = (frames * mask).sum(dim=(1, 3, 4), keepdim=True)
            count = mask.sum(dim=(1, 3, 4), keepdim=True)
        else:
            total = (frames * mask).sum(dim=(3, 4), keepdim=True)
            count = mask.sum(dim=(3, 4), keepdim=True)
        confusing = total / (count + 1e-5) + draw.normal(0.0, self.confusing_std, batch, groups, 3, 1, 1)
        color = draw.uniform(batch, groups, 3, 1, 1)
        choice = draw.uniform(batch, groups, 1, 1, 1)
        is_original = (choice < self.original_prob).float()
        is_color = ((choice >= self.original_prob) & (choice < self.original_prob + self.color_prob)).float()
        is_confusing = 1 - is_original - is_color
        base = is_original * frames + is_color * color + is_confusing * confusing
        noise = draw.uniform(batch, stack, 3, size, size)
        return self.base_weight * base + self.noise_level * noise

    def _overlay_natural(self, background: torch.Tensor, draw: _Draw, groups: int) -> torch.Tensor:
        """Blend a natural image over the base with alpha ~ U(alpha_low, alpha_high) (VAI)."""
        batch, _, _, size, _ = background.shape
        count = batch * groups
        pool = self.backgrounds
        picks = draw.integers(pool.shape[0], count)
        natural = resized_crops(pool, picks, size, draw, self.crop_scale, self.crop_ratio)
        flip = draw.uniform(count, 1, 1, 1) < 0.5
        natural = torch.where(flip, natural.flip(-1), natural).reshape(batch, groups, 3, size, size)
        alpha = self.alpha_low + (self.alpha_high - self.alpha_low) * draw.uniform(batch, groups, 1, 1, 1)
        alpha = alpha * (draw.uniform(batch, groups, 1, 1, 1) < self.natural_prob).float()
        return (1 - alpha) * background + alpha * natural

    def _draw_boxes(self, background: torch.Tensor, draw: _Draw, groups: int) -> torch.Tensor:
        """Paint ``boxes`` squares of random colour per frame (or stack) on the background: each box
        one side for the whole batch, its own place and colour per frame (VAI)."""
        batch, _, _, size, _ = background.shape
        pixels = torch.arange(size, device=background.device)
        rows, cols = pixels.view(size, 1), pixels.view(1, size)
        if self.boxes:
            # int() of a Gaussian truncates toward zero, as VAI's int(random.gauss(...)).
            sides = draw.normal(self.box_mean, self.box_std, self.boxes).trunc()
            sides = sides.clamp(self.box_min, min(self.box_max, size - 1)).long().tolist()
        for side in sides if self.boxes else ():
            corner = (draw.uniform(batch, groups, 2) * (size - side)).long()
            top, left = corner[..., 0, None, None], corner[..., 1, None, None]
            inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
            color = draw.uniform(batch, groups, 3, 1, 1)
            background = torch.where(inside.unsqueeze(2), color, background)
        return background


def resized_crops(
    pool: torch.Tensor,
    picks: torch.Tensor,
    size: int,
    draw: _Draw,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> torch.Tensor:
    """Random resized crops of pool images, float (N, 3, size, size) in [0, 1] (``RandomResizedCrop``).

    For each pick, a window of U(``scale``) x the image's area with an aspect ratio log-uniform in
    ``ratio`` at a uniform place, resampled bilinearly to ``size``; like torchvision, the first of
    ``attempts`` draws that fits in the image is taken, else the whole image. Vectorised: one affine
    grid per crop, one ``grid_sample`` for all.
    """
    count = picks.shape[0]
    height, width = pool.shape[-2:]
    area = draw.uniform(count, attempts) * (scale[1] - scale[0]) + scale[0]
    log_low, log_high = torch.log(torch.tensor(ratio[0])), torch.log(torch.tensor(ratio[1]))
    aspect = torch.exp(draw.uniform(count, attempts) * (log_high - log_low) + log_low)
    crop_width = torch.sqrt(area * height * width * aspect).round()
    crop_height = torch.sqrt(area * height * width / aspect).round()
    fits = (crop_width >= 1) & (crop_width <= width) & (crop_height >= 1) & (crop_height <= height)
    first = fits.float().argmax(dim=1, keepdim=True)
    found = fits.gather(1, first)[:, 0]
    crop_width = torch.where(found, crop_width.gather(1, first)[:, 0], torch.full_like(found, width, dtype=area.dtype))
    crop_height = torch.where(
        found, crop_height.gather(1, first)[:, 0], torch.full_like(found, height, dtype=area.dtype)
    )
    top = (draw.uniform(count) * (height - crop_height + 1)).floor()
    left = (draw.uniform(count) * (width - crop_width + 1)).floor()
    # Output pixel centres mapped into the window, in grid_sample's [-1, 1] units (corners not aligned).
    theta = torch.zeros(count, 2, 3, device=pool.device)
    theta[:, 0, 0] = crop_width / width
    theta[:, 0, 2] = (2 * left + crop_width) / width - 1
    theta[:, 1, 1] = crop_height / height
    theta[:, 1, 2] = (2 * top + crop_height) / height - 1
    grid = F.affine_grid(theta, [count, 3, size, size], align_corners=False)
    images = pool[picks].float() / 255
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grayscale(rgb: torch.Tensor) -> torch.Tensor:
    """Luma of (..., 3, H, W), keeping a channel axis of 1."""
    red, green, blue = rgb.unbind(-3)
    return (GRAY_WEIGHTS[0] * red + GRAY_WEIGHTS[1] * green + GRAY_WEIGHTS[2] * blue).unsqueeze(-3)


def shift_hue(rgb: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of (..., 3, H, W) RGB in [0, 1] by ``shift`` turns (broadcast over (..., H, W)).

    Through HSV: value and saturation stay, so grays do not change.
    """
    red, green, blue = rgb.unbind(-3)
    value = torch.maximum(torch.maximum(red, green), blue)
    chroma = value - torch.minimum(torch.minimum(red, green), blue)
    safe = chroma.clamp_min(1e-12)
    hue = torch.where(
        value == red,
        ((green - blue) / safe).remainder(6),
        torch.where(value == green, (blue - red) / safe + 2, (red - green) / safe + 4),
    )
    hue = torch.where(chroma > 0, hue, torch.zeros_like(hue)) / 6
    hue = (hue + shift).remainder(1)
    # HSV -> RGB: channel n takes value - chroma * clamp(min(k, 4 - k), 0, 1), k = (n + 6 hue) mod 6.
    channels = []
    for n in (5, 3, 1):
        k = (n + 6 * hue).remainder(6)
        channels.append(value - chroma * torch.minimum(k, 4 - k).clamp(0, 1))
    return torch.stack(channels, dim=-3)


class _Draw:
    """Random draws from one generator on one device."""

    def __init__(self, generator: torch.Generator, device: torch.device):
        self.generator, self.device = generator, device

    def uniform(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=self.device)

    def normal(self, mean: float, std: float, *shape: int) -> torch.Tensor:
        return mean + std * torch.randn(shape, generator=self.generator, device=self.device)

    def integers(self, high: int, count: int) -> torch.Tensor:
        return torch.randint(high, (count,), generator=self.generator, device=self.device)
