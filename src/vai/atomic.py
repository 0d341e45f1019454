"""Atomic file writes: a killed run leaves the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], suffix: str = ".tmp") -> Path:
    """Call ``write(temporary)`` for a temporary file beside ``path``, then rename it over ``path``.

    The temporary file is flushed to disk before the rename and the directory after it, so that
    even a power cut leaves the old file or the new one. The file gets the usual permissions (0666
    less the umask; ``mkstemp`` alone gives 0600), and the temporary file is removed if anything
    fails. ``suffix`` ends the temporary name (writers that choose a format from the extension,
    like OpenCV's video writer, need the real one).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        _fsync_file(temporary)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(path.parent)
    return path


def _fsync_file(path: Path) -> None:
    """Flush the file's bytes to disk, so that the rename cannot land before them."""
    descriptor = os.open(path, os.O_RDWR)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where directories cannot be synced."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda temporary: temporary.write_bytes(data))


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda temporary: temporary.write_text(text))


def finite_json(data: object) -> object:
    """``data`` with every NaN or infinite float replaced by None, so that it is valid JSON.

    Python's ``json`` writes them as bare ``NaN`` and ``Infinity``, which other parsers refuse (an
    undefined score, such as the precision of an empty mask, is such a value).
    """
    import math

    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite_json(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [finite_json(value) for value in data]
    return data


def write_json_atomic(data: object, path: str | os.PathLike) -> Path:
    """``data`` as indented, standard JSON (reports, configs; undefined numbers as null), atomically."""
    import json

    return write_text_atomic(json.dumps(finite_json(data), indent=2, allow_nan=False) + "\n", path)
