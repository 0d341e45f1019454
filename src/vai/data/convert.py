"""Turn DMControl-GB's colour pickles (``color_easy.pt``, ``color_hard.pt``) into vai's JSON.

Upstream stores each colour set as a torch pickle: a list of at least 100 dicts, one per
setting, indexed at random by ``ColorWrapper.get_random_color`` and passed as
``setting_kwargs`` to ``get_model_and_assets_from_setting_kwargs``, which asserts every value is
a list, tuple or ``np.ndarray`` of RGB floats (nicklashansen/dmcontrol-generalization-benchmark,
``src/env/wrappers.py`` and ``src/env/dm_control/dm_control/suite/common/settings.py``).
Newer users of the files load them with ``weights_only=False``, a sign that the values are numpy
arrays rather than plain lists.

vai keeps JSON instead, so that reading colours needs neither torch nor unpickling. The JSON is
byte-for-byte what ``json.dumps(..., indent=0)`` writes for the keys below, in this order, with
each channel rounded to 6 decimals: that fixed form is what makes the registry's sha256 a test
of a good conversion.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

# The keys and their order in the project's JSON (see shared/data/colors/*.json). Other keys
# an upstream setting might carry are not used by the colour modes and are dropped.
COLOR_KEYS = ("grid_rgb1", "self_rgb", "skybox_rgb", "grid_rgb2")
DECIMALS = 6


def colors_to_json(settings: Iterable[Mapping[str, Any]]) -> bytes:
    """Encode colour settings in vai's canonical JSON form.

    Values may be lists, tuples, numpy arrays or tensors of three numbers. Raises ValueError
    when a setting lacks a key or a colour is not three numbers, since a silently different
    file would only surface later as a checksum mismatch.
    """
    out = []
    for i, setting in enumerate(settings):
        if not isinstance(setting, Mapping):
            raise ValueError(f"colour setting {i} is a {type(setting).__name__}, expected a dict")
        entry = {}
        for key in COLOR_KEYS:
            if key not in setting:
                raise ValueError(f"colour setting {i} has no {key!r}")
            rgb = [round(float(channel), DECIMALS) for channel in setting[key]]
            if len(rgb) != 3:
                raise ValueError(f"colour setting {i} {key!r} has {len(rgb)} channels, expected 3")
            entry[key] = rgb
        out.append(entry)
    return json.dumps(out, indent=0).encode("ascii")


def load_colors_pt(path: str | os.PathLike[str]) -> list[Any]:
    """Read an upstream colour pickle without running arbitrary pickled code.

    ``torch.load`` runs in ``weights_only`` mode with only numpy's array-rebuilding globals
    allowed, because the file comes from the network and has no checksum of its own (only the
    converted JSON does). Imports torch lazily: only this conversion needs it.
    """
    import torch

    with torch.serialization.safe_globals(_numpy_globals()):
        loaded = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if not isinstance(loaded, (list, tuple)):
        raise ValueError(f"expected a list of colour settings, found a {type(loaded).__name__}")
    return list(loaded)


def convert_colors_pt(path: str | os.PathLike[str]) -> bytes:
    """The canonical JSON bytes for the upstream colour pickle at ``path``."""
    return colors_to_json(load_colors_pt(path))


def _numpy_globals() -> list[Any]:
    """The numpy globals a pickled float array needs, under old and new module names.

    numpy 2 moved ``numpy.core`` to ``numpy._core``; a pickle written with numpy 1 (as the
    upstream files were, in 2020-21) names the old path, so both names are allowed.
    """
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2 has no numpy._core
        from numpy.core import multiarray  # type: ignore[no-redef]

    allowed: list[Any] = [np.ndarray, np.dtype]
    allowed += [type(np.dtype(t)) for t in (np.float16, np.float32, np.float64)]
    for function in (multiarray._reconstruct, multiarray.scalar):
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            allowed.append((function, f"{module}.{function.__name__}"))
    return allowed
