"""Batched image operations of the agent besides its crops (:mod:`vai.crops`): DrQ's random shift,
SVEA's random convolution and VAI's adapt_aug. Every function works on a whole batch on its device;
none loops over samples.

Observations are stacks (B, 3F, H, W); a random shift moves the F frames of one stack together
(they are one observation), different stacks independently.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vai.crops import crop_at


def random_shift(images: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ's augmentation: replicate-pad by ``pad`` pixels, then crop back at a random integer shift."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    top = torch.randint(0, 2 * pad + 1, (batch,), generator=generator, device=images.device)
    left = torch.randint(0, 2 * pad + 1, (batch,), generator=generator, device=images.device)
    if height != width:
        raise ValueError("random_shift expects square images")
    return crop_at(padded.contiguous(), top, left, height)


def random_convolution(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """SVEA's / DMControl-GB's augmentation: a random 3x3 RGB -> RGB convolution per stack.

    Weights ~ N(0, 1/sqrt(27))-ish (Kaiming normal for 27 inputs) shared by the frames of a stack,
    applied with replicate padding; the result is clamped to [0, 1]. Images float in [0, 1].
    """
    batch, channels, height, width = images.shape
    frames = channels // 3
    weight = torch.randn(batch, 3, 3, 3, 3, generator=generator, device=images.device) * (2 / 27) ** 0.5
    # Grouped convolution: one group per stack; the stack's frames fold into that group's batch.
    per_frame = (
        images.reshape(batch, frames, 3, height, width).transpose(0, 1).reshape(frames, batch * 3, height, width)
    )
    padded = F.pad(per_frame, (1, 1, 1, 1), mode="replicate")
    out = F.conv2d(padded, weight.reshape(batch * 3, 3, 3, 3), groups=batch)
    out = out.reshape(frames, batch, 3, height, width).transpose(0, 1).reshape(batch, channels, height, width)
    return out.clamp(0, 1)


def standard_normal(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device, bank: torch.Tensor | None = None
) -> torch.Tensor:
    """N(0, 1) noise of ``shape``: drawn afresh, or a window of ``bank`` (precomputed N(0, 1) values,
    at least as many as ``shape`` holds) at an offset drawn from ``generator`` (a CPU generator).

    Every value in a window is still N(0, 1) and independent of the others; only windows of
    different calls may overlap. The bank is the CPU's speed-up: drawing the million normals of one
    quick-preset view takes milliseconds there, while slicing takes nothing.
    """
    if bank is None:
        return torch.randn(shape, generator=generator, device=device)
    count = math.prod(shape)
    if bank.numel() < count:
        raise ValueError(f"a noise bank of {bank.numel()} values cannot fill {shape}")
    offset = int(torch.randint(0, bank.numel() - count + 1, (1,), generator=generator))
    return bank[offset : offset + count].view(shape)


def adapt_aug(
    images: torch.Tensor,
    boxes: int,
    noise: float,
    generator: torch.Generator | None = None,
    box_std: float = 2.0,
    box_max: int = 5,
    downsample: int = 1,
    noise_bank: torch.Tensor | None = None,
) -> torch.Tensor:
    """VAI's augmentation of the adapted observation (``encoder.py``, ``--adapt_aug``), on a new tensor.

    Every RGB frame of the stacks (B, 3F, S, S) in [0, 1] is treated alone: ``boxes`` squares of
    random colour are painted on it, later boxes over earlier ones; then Gaussian noise of std
    ``noise`` is added to every pixel, with no clamp after. Box ``k`` has one side for the whole batch,
    int(N(0, ``box_std``)) (truncated toward zero) clamped to ``[1, box_max]``, so most boxes are one
    pixel; each frame draws its own corner, uniform in ``0 .. S - side - 1`` per axis, and colour,
    uniform in [0, 1]^3. Views pooled by ``downsample`` d get sides divided by d (at least 1 px).
    ``noise_bank``: see :func:`standard_normal`.

    It teaches the agent to ignore the specks of background the adapter may leak at test time.
    """
    batch, channels, height, width = images.shape
    device = images.device
    out = images.clone(memory_format=torch.contiguous_format)
    if boxes > 0:
        frames = batch * (channels // 3)
        gauss = torch.randn(boxes, generator=generator, device=device) * box_std
        side = gauss.trunc().long().clamp(1, box_max)  # (K,): one side per box, as VAI's random.gauss
        largest = max(1, box_max // downsample)
        side = (side // downsample).clamp(min=1)
        corner = torch.rand(2, frames, boxes, generator=generator, device=device)
        top = (corner[0] * (height - side).clamp(min=1)).long()  # uniform in 0 .. H - side - 1
        left = (corner[1] * (width - side).clamp(min=1)).long()
        colour = torch.rand(frames, boxes, 3, generator=generator, device=device)
        square = side[None, :, None].expand(frames, boxes, 2)
        paint_boxes(out.view(frames, 3, height, width), top, left, square, colour, largest)
    if noise > 0:
        out.add_(standard_normal(out.shape, generator, device, noise_bank), alpha=noise)
        # Channels-last, the layout the encoder's convolutions take (their weight gradient is about
        # twice as fast on it on a CPU), so the encoder copies nothing more. A plain copy: an add that
        # writes channels-last while it reads the noise in (C, H, W) order costs more than both.
        return out.contiguous(memory_format=torch.channels_last)
    return out


def paint_boxes(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, side: torch.Tensor, colour: torch.Tensor, box_max: int
) -> None:
    """Paint boxes (B, K) at ``top``, ``left`` of ``side`` (B, K, 2) rows x columns in ``colour``
    (B, K, 3) into every frame of ``images`` (B, 3F, H, W, contiguous), in place; sides are at most
    ``box_max``. Where boxes overlap, the later box wins: box k is painted after box k - 1. Only the
    boxes' pixels are touched: each box is listed as a ``box_max`` x ``box_max`` grid of pixel
    indices, the positions past its side repeating its last row and column (a pixel listed twice
    takes the same colour twice), so the work grows with the boxes' area, not the image's, and
    nothing waits on the device."""
    batch, channels, height, width = images.shape
    offsets = torch.arange(box_max, device=images.device)
    rows = top[..., None] + torch.minimum(offsets, side[..., 0:1] - 1)  # (B, K, box_max)
    cols = left[..., None] + torch.minimum(offsets, side[..., 1:2] - 1)
    pixels = (rows[..., :, None] * width + cols[..., None, :]).flatten(2)  # (B, K, box_max²)
    # Channel 3f + c of every frame f takes colour component c.
    colours = colour.to(images.dtype).repeat(1, 1, channels // 3)  # (B, K, 3F)
    flat = images.view(batch, channels, height * width)
    for box in range(top.shape[1]):
        index = pixels[:, box, None, :].expand(batch, channels, -1)
        flat.scatter_(2, index, colours[:, box, :, None].expand_as(index))
