"""DrawerWorld's table textures: where each comes from, read at the table texture's size."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from vai.data.store import damaged_data, require, resolve_data_dir

METAWORLD_TEXTURES = {"marble": "marble.png", "metal": "metal.png", "wood": "wood.png"}
"""Textures that ship inside the metaworld package (``metaworld/assets/textures``)."""

DATA_TEXTURES = {"blanket": "blanket.png", "fabric": "fabric.png"}
"""Textures of VAI's DrawerWorld, read from the ``drawerworld`` data set."""

GRID_CELLS = 8
"""The training ``grid`` is an 8 x 8 tiling of dm_control's floor checker (same colours and edges)."""

_GRID_TILE_XML = (
    '<mujoco><asset><texture name="grid" type="2d" builtin="checker" rgb1=".1 .2 .3" rgb2=".2 .3 .4" '
    'width="{side}" height="{side}" mark="edge" markrgb=".2 .3 .4"/></asset></mujoco>'
)


def _grid(height: int, width: int) -> np.ndarray:
    side = max(2, height // GRID_CELLS)
    tile = mujoco.MjModel.from_xml_string(_GRID_TILE_XML.format(side=side)).tex_data.reshape(side, side, 3)
    reps = (-(-height // side), -(-width // side), 1)
    return np.tile(tile, reps)[:height, :width]


def _read_image(path: Path, height: int, width: int, unreadable: Exception) -> np.ndarray:
    """The image at ``path`` resized to (height, width) RGB; ``unreadable`` is raised where it cannot be read."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise unreadable
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def table_texture(name: str, shape: tuple[int, int, int], data_dir: Path | None) -> np.ndarray:
    """Texture ``name`` as uint8 ``shape`` (H, W, 3) for the table's material."""
    height, width, _ = shape
    if name == "grid":
        return _grid(height, width)
    if name == "black":
        return np.zeros(shape, dtype=np.uint8)
    if name in METAWORLD_TEXTURES:
        import metaworld

        path = Path(metaworld.__file__).parent / "assets" / "textures" / METAWORLD_TEXTURES[name]
        return _read_image(path, height, width, ValueError(f"cannot read Meta-World's texture image {path}"))
    if name in DATA_TEXTURES:
        path = require("drawerworld", resolve_data_dir(data_dir)) / DATA_TEXTURES[name]
        return _read_image(path, height, width, damaged_data(path, f"cannot read texture image {path}"))
    raise ValueError(f"unknown table texture {name!r}")
