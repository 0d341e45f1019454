"""Atomic file writes: a killed run leaves the old file or the new one, never half of one.

A write that the file system refuses (full, read-only, no permission, a file where a folder should be)
is a :class:`~vai.errors.WriteFailed` naming the path and the fix, also when torch reports it only as
"enforce fail ... unexpected pos". A process killed mid-write leaves its hidden temporary file, which
:func:`remove_stale_temporaries` clears when the directory's next owner starts (:mod:`vai.lock`).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vai.errors import WriteFailed

ELSEWHERE = "choose another --out or --run"
"""How a user points a command at another directory."""

_FIXES = {
    errno.ENOSPC: "no space left on its file system ({free} free): free space, or {elsewhere}",
    errno.EDQUOT: "disk quota exceeded ({free} free): free space, or {elsewhere}",
    errno.EFBIG: "the file outgrew this process's file size limit (ulimit -f): raise the limit, or {elsewhere}",
    errno.EROFS: "the file system is read-only: {elsewhere} on a writable one",
    errno.EACCES: "permission denied: {elsewhere} where you may write",
    errno.EPERM: "operation not permitted: {elsewhere} where you may write",
    errno.EISDIR: "it is a directory: remove it, or {elsewhere}",
    errno.ENAMETOOLONG: "the name is too long for its file system: {elsewhere}",
    errno.EIO: "the disk or its connection failed (input/output error): check it, or {elsewhere}",
}
_NOT_A_FOLDER = (errno.ENOTDIR, errno.EEXIST)
"""What the system says of a path through a file, or of a folder to make where a file lies."""
_RUST_IO = re.compile(r"\(os error (?P<errno>\d+)\)")
"""How an error of a library written in Rust (safetensors) names the system's error number."""
_TORCH_WRITE = ("inline_container", "PytorchStreamWriter")
"""Words of the RuntimeError torch's archive writer raises when a write fails (a full disk among others)."""


def _free_space(path: Path) -> str:
    """The free space of the file system ``path`` (or its nearest existing parent) is on, for messages."""
    for folder in (path, *path.parents):
        try:
            return f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB"
        except OSError:
            continue
    return "unknown"


def write_failure(path: str | os.PathLike, error: BaseException, elsewhere: str = ELSEWHERE) -> WriteFailed | None:
    """The one-line :class:`WriteFailed` for ``error`` raised while writing ``path``, or None where
    ``error`` is not a refused write (a bug to show as it is). ``elsewhere`` says how the user points
    the command at another place (``--data-dir`` for downloads)."""
    path = Path(path)
    if isinstance(error, RuntimeError) and any(word in str(error) for word in _TORCH_WRITE):
        # torch does not say why; a full disk or a file size limit are what refuse a write midway.
        return cut_short(path, "torch: " + str(error).splitlines()[0][:120], elsewhere)
    system = None if isinstance(error, OSError) else _RUST_IO.search(str(error))
    if system is not None:  # safetensors' SafetensorError: "I/O error: File too large (os error 27)"
        error = OSError(int(system["errno"]), os.strerror(int(system["errno"])))
    if not isinstance(error, OSError):
        return None
    if error.errno in _NOT_A_FOLDER:
        # The path itself counts: a folder to make (TensorBoard's, a data set's) may be a file already.
        blocking = next((folder for folder in (path, *path.parents) if folder.exists()), path.parent)
        if blocking.is_dir() and error.errno == errno.EEXIST:
            return None
        return WriteFailed(f"cannot write {path}: {blocking} is a file, not a directory: {elsewhere}")
    fix = _FIXES.get(error.errno)
    if fix is None:
        return None
    return WriteFailed(f"cannot write {path}: " + fix.format(free=_free_space(path), elsewhere=elsewhere))


def cut_short(path: str | os.PathLike, reason: str, elsewhere: str = ELSEWHERE) -> WriteFailed:
    """The :class:`WriteFailed` for a writer that stopped midway without saying why (``reason``: what it
    did say): a full disk or a file size limit are what stop a write midway."""
    return WriteFailed(
        f"cannot write {path} ({reason}; {_free_space(Path(path))} free on its file system): "
        f"free space or raise the file size limit (ulimit -f), or {elsewhere}"
    )


@contextmanager
def writing(path: str | os.PathLike, elsewhere: str = ELSEWHERE) -> Iterator[Path]:
    """A block that writes ``path``: a refused write leaves it as :class:`WriteFailed` (see :func:`write_failure`)."""
    try:
        yield Path(path)
    except Exception as error:  # writers wrap refused writes in errors of their own (torch, safetensors)
        failure = write_failure(path, error, elsewhere)
        if failure is None:
            raise
        raise failure from None


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], suffix: str = ".tmp") -> Path:
    """Call ``write(temporary)`` for a temporary file beside ``path``, then rename it over ``path``.

    The temporary file is flushed to disk before the rename and the directory after it, so that
    even a power cut leaves the old file or the new one. The file gets the usual permissions (0666
    less the umask; ``mkstemp`` alone gives 0600), and the temporary file is removed if anything
    fails. ``suffix`` ends the temporary name (writers that choose a format from the extension,
    like OpenCV's video writer, need the real one). A refused write is a :class:`WriteFailed`.
    """
    path = Path(path)
    with writing(path):
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


@contextmanager
def replaced_together(*paths: str | os.PathLike) -> Iterator[None]:
    """A block that replaces the files ``paths`` one after another (each with :func:`atomic_write`): if
    it fails, each is put back as it was before the block, the old file or none, so that a refused
    second write leaves no new first file beside an old second one. The old files are kept meanwhile
    as hard links under temporary names (no space needed; the next owner of the directory clears
    them should the process be killed)."""
    kept: dict[Path, Path | None] = {}
    try:
        for path in map(Path, paths):
            kept[path] = _hard_link_copy(path) if path.is_file() else None
        yield
    except BaseException:
        for path, old in kept.items():
            if old is not None:
                os.replace(old, path)
            else:
                path.unlink(missing_ok=True)
        raise
    finally:
        for old in kept.values():
            if old is not None:
                old.unlink(missing_ok=True)


def _hard_link_copy(path: Path) -> Path:
    """A second name for ``path``'s file, of the temporary form (``.NAME.XXXXXXXX.SUFFIX``); a copy where
    the file system has no hard links."""
    for _ in range(100):
        name = path.with_name(f".{path.name}.{os.urandom(4).hex()}{path.suffix or '.tmp'}")
        try:
            os.link(path, name)
        except FileExistsError:
            continue
        except OSError:
            with writing(name):
                shutil.copy2(path, name)
        return name
    raise FileExistsError(f"no free temporary name beside {path}")


_TEMPORARY = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}(?P<suffix>\.[^.]+)")
"""The name :func:`atomic_write` gives a temporary file: ``.TARGET.XXXXXXXX`` and its suffix."""


def is_temporary(name: str) -> bool:
    """Whether ``name`` is that of a temporary file of :func:`atomic_write` (``.last.pt.k2j4xq_a.tmp``)."""
    match = _TEMPORARY.fullmatch(name)
    return bool(match) and match["suffix"] in (".tmp", Path(match["target"]).suffix)


def remove_stale_temporaries(directory: str | os.PathLike, owned_apart: Callable[[Path], bool]) -> list[Path]:
    """Delete the temporary files that writers killed mid-write left in ``directory`` and its folders;
    returns them. Only the directory's owner may call it, as no write of its own is under way then;
    ``owned_apart(folder)`` names subfolders another owner cleans (an agent's directory in a run)."""
    removed = []
    for folder, subfolders, files in os.walk(directory):
        subfolders[:] = [name for name in subfolders if not owned_apart(Path(folder) / name)]
        for name in files:
            if is_temporary(name):
                (Path(folder) / name).unlink(missing_ok=True)
                removed.append(Path(folder) / name)
    return removed


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
