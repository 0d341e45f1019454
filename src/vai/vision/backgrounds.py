"""The pool of background images that the attention adapter's augmentation pastes behind the agent.

VAI (Sec. 3.3) overlays natural images (Places365) on the background of training frames. Two sources:

- :func:`load_background_images`: a folder of the user's images (Places365, or the workspace's
  ``backgrounds/`` stand-in). Test videos (``video_easy`` / ``video_hard``) are refused: nothing may
  train on what the agent is measured on.
- :func:`procedural_backgrounds`: the built-in default when no folder is named, so training never
  needs a download. See its docstring for what it draws.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vai.errors import UserError
from vai.tasks import VIDEO_MODES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

TEST_DATA_FOLDERS = (*VIDEO_MODES, "drawerworld")
"""Folders of the benchmark data that hold test visuals; an augmentation pool may not come from them."""

DEFAULT_MAX_IMAGES = 5000
"""At most this many images are loaded (an evenly spaced subset of a larger folder, e.g. Places365)."""

FLAG = "--backgrounds"
"""How a user names the image folder (quoted in error messages)."""


def load_background_images(folder: Path, size: int, max_images: int = DEFAULT_MAX_IMAGES) -> torch.Tensor:
    """Every ``.jpg`` / ``.png`` under ``folder`` (recursively) as uint8 (M, 3, size, size) RGB.

    Each image is centre-cropped to a square, then resized with ``cv2.INTER_AREA``. Files are read in
    sorted order; past ``max_images`` an evenly spaced subset is taken, so the pool is reproducible.
    """
    folder = Path(folder)
    _refuse_test_data(folder)
    if not folder.is_dir():
        raise UserError(
            f"background image folder {folder} not found: pass {FLAG} a folder of natural images "
            f"(e.g. Places365 or the data directory's backgrounds/), or omit it for procedural ones"
        )
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise UserError(
            f"no .jpg or .png images in {folder}: pass {FLAG} a folder of natural images "
            f"(e.g. Places365 or the data directory's backgrounds/), or omit it for procedural ones"
        )
    if len(paths) > max_images:
        picks = np.linspace(0, len(paths) - 1, max_images).round().astype(int)
        paths = [paths[i] for i in picks]
    images = np.stack([_read_square(path, size) for path in paths])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def describe_pool(folder: str | Path | None) -> str:
    """How tables name an adapter's augmentation pool: ``procedural``, the folder's name, and for
    the data directory's stand-in cut from the ``video_hard`` footage, a warning that it is optimistic."""
    if folder in (None, "", "procedural"):
        return "procedural"
    name = Path(folder).name
    if name == "backgrounds":
        return "backgrounds (stand-in cut from video_hard clips 0-29: optimistic on video_hard)"
    return name


def procedural_backgrounds(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` natural-looking images, uint8 (count, 3, size, size), on ``generator``'s device.

    Each image sums three ingredients that natural photographs have and flat colours lack:

    - fractal value noise: random colour grids of 2, 4, 8 and 16 cells, bicubically upsampled and
      weighted 1, 1/2, 1/4, 1/8 (a 1/f spectrum, like natural scenes);
    - three sinusoidal gratings of random orientation, frequency (1-8 cycles per image), phase and
      colour (edges and textures: fences, floors, windows);
    - five soft Gaussian blobs of random colour, position and radius (objects), alpha-blended on top.

    Each image is then stretched to a random contrast range inside [0, 1]. The same generator state
    gives the same images.
    """
    device = generator.device

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=generator, device=device)

    image = uniform(count, 3, 1, 1)
    for octave, cells in enumerate((2, 4, 8, 16)):
        grid = uniform(count, 3, cells, cells) - 0.5
        upsample = _bicubic_matrix(cells, size, device)
        image = image + torch.einsum("yc,nkcd,xd->nkyx", upsample, grid, upsample) / 2**octave

    axis = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    ys, xs = axis.view(1, 1, size, 1), axis.view(1, 1, 1, size)
    for _ in range(3):
        angle = uniform(count, 1, 1, 1) * math.pi
        frequency = 1 + 7 * uniform(count, 1, 1, 1)
        phase = uniform(count, 1, 1, 1) * 2 * math.pi
        wave = torch.sin(2 * math.pi * frequency * (xs * angle.cos() + ys * angle.sin()) + phase)
        image = image + 0.25 * wave * (uniform(count, 3, 1, 1) - 0.5)

    for _ in range(5):
        centre_y, centre_x = uniform(count, 1, 1, 1), uniform(count, 1, 1, 1)
        radius = 0.05 + 0.25 * uniform(count, 1, 1, 1)
        weight = torch.exp(-((ys - centre_y) ** 2 + (xs - centre_x) ** 2) / (2 * radius**2))
        image = image * (1 - weight) + uniform(count, 3, 1, 1) * 1.5 * weight

    low = image.amin(dim=(1, 2, 3), keepdim=True)
    high = image.amax(dim=(1, 2, 3), keepdim=True)
    floor = 0.3 * uniform(count, 1, 1, 1)
    span = (1 - floor) * (0.5 + 0.5 * uniform(count, 1, 1, 1))
    image = floor + span * (image - low) / (high - low).clamp_min(1e-6)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def _bicubic_matrix(cells: int, size: int, device: torch.device) -> torch.Tensor:
    """(size, cells) matrix M with M @ grid @ M.T = bicubic upsampling of a cells x cells grid.

    Bicubic interpolation is separable; two small matrix products replace a full 2-D resize.
    """
    identity = torch.eye(cells, device=device).view(cells, 1, cells, 1)
    columns = F.interpolate(identity, size=(size, 1), mode="bicubic", align_corners=False)
    return columns.view(cells, size).T


def _refuse_test_data(folder: Path) -> None:
    """Test visuals never train: refuse a folder that is, is inside, or contains a test data folder."""
    inside = [part for part in folder.resolve().parts if part in TEST_DATA_FOLDERS]
    contains = [name for name in TEST_DATA_FOLDERS if (folder / name).is_dir()]
    if inside or contains:
        raise UserError(
            f"{folder} holds test data ({(inside or contains)[0]}/), which must never train the adapter: "
            f"pass {FLAG} the data directory's backgrounds/ or your own images (e.g. Places365)"
        )


def _read_square(path: Path, size: int) -> np.ndarray:
    """One image as uint8 (size, size, 3) RGB: centre square crop, then area resize."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError(f"cannot read image {path}: delete or replace it, or pass {FLAG} another folder")
    height, width = bgr.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = bgr[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    resized = cv2.resize(square, (size, size), interpolation=interpolation)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
