"""Square windows of images: the centre crop the policy sees and the random crops training draws.

Frames are 100 px and agents see 84 px (RAD, PAD, VAI). Acting and measurement take the centre
window, at offset (H - size) // 2; training takes one window per image at a random corner, drawn
as PAD's and VAI's ``utils.random_crop`` draws it. The channels of one image (a stack of frames,
their masks) are cut at one place, different images independently. Batched crops are one gather on
the images' device, with no loop over the batch.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Images = TypeVar("Images", np.ndarray, torch.Tensor)


def center_crop(images: Images, size: int) -> Images:
    """The centre ``size`` x ``size`` window of the last two axes of (..., H, W), numpy or torch, a
    view of ``images``; offsets (H - size) // 2 and (W - size) // 2 (8 for 100 -> 84)."""
    height, width = images.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"images of {height}x{width} are smaller than {size}x{size}")
    top, left = (height - size) // 2, (width - size) // 2
    return images[..., top : top + size, left : left + size]


def crop_at(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """Windows of side ``size`` of images (B, C, H, W), any dtype, whose corners are ``top`` and
    ``left`` (B,): one gather, every channel of an image cut at its own corner."""
    batch, channels, height, width = images.shape
    offsets = torch.arange(size, device=images.device)
    rows = (top.reshape(-1, 1) + offsets)[:, :, None]  # (B, S, 1)
    cols = (left.reshape(-1, 1) + offsets)[:, None, :]  # (B, 1, S)
    flat = (rows * width + cols).reshape(batch, 1, size * size).expand(batch, channels, size * size)
    return images.reshape(batch, channels, height * width).gather(2, flat).reshape(batch, channels, size, size)


def random_crop(images: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A ``size`` x ``size`` window of each image (B, C, H, W) at a random corner.

    The corner's row and column are drawn from ``0 .. H - size - 1`` and ``0 .. W - size - 1``
    (0..15 for 100 -> 84), rows first, as PAD's and VAI's ``utils.random_crop`` draws them (an
    exclusive upper bound, so the window touching the bottom or right edge is never cut); an image
    of side ``size`` comes back whole.
    """
    batch, _, height, width = images.shape
    device = images.device
    top = torch.randint(0, max(height - size, 1), (batch,), generator=generator, device=device)
    left = torch.randint(0, max(width - size, 1), (batch,), generator=generator, device=device)
    return crop_at(images, top, left, size)
