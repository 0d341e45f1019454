"""One owner per directory: a stage writes into a run or agent directory only while it holds its lock.

The lock is ``fcntl.flock`` on ``DIRECTORY/.vai.lock``, which holds the owner's PID. The operating
system lets go of it when its process ends in any way, ``kill -9`` included, so a lock is never stale;
a second process on the same directory gets a one-line :class:`~vai.errors.UserError` naming the
directory and the owner's PID. The file stays when the owner ends, except where the owner made the
directory and fails leaving nothing in it: then the directory goes too, so that a refused command
leaves nothing behind (a process that locked the file as it was being removed sees that its file is
gone, and takes the new one). A process that owns a directory owns it again without waiting (``vai
run`` holds its run directory while its stages take it), and the first owner of a directory clears
the temporary files that writers killed mid-write left there (:mod:`vai.atomic`).

Example::

    with owning(agent_dir.path):
        ...  # the only vai process writing into agent_dir
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vai.atomic import ELSEWHERE, remove_stale_temporaries, writing
from vai.errors import UserError

LOCK_NAME = ".vai.lock"
"""The lock file inside an owned directory."""


def lock_path(directory: str | os.PathLike) -> Path:
    return Path(directory) / LOCK_NAME


def _owned_apart(folder: Path) -> bool:
    """Whether ``folder`` has an owner of its own (an agent's directory inside a run directory)."""
    return lock_path(folder).is_file()


@contextmanager
def owning(directory: str | os.PathLike) -> Iterator[Path]:
    """Hold ``directory`` (made if missing) for the block; a UserError if another process holds it.

    A directory this process holds already is held again; otherwise its stale temporary files are
    removed on entry. A directory that cannot be made or written is a :class:`~vai.errors.WriteFailed`.
    Where the block fails and the directory, made here, holds nothing but the lock, the lock file and
    the folders made for it are removed.
    """
    directory = Path(directory)
    path = lock_path(directory)
    made = _missing_folders(directory)
    descriptor, locked = _open_locked(directory)
    try:
        if not locked:
            owner = _owner(descriptor)
            if owner == str(os.getpid()):  # this process's own, taken further up the call
                yield directory
                return
            raise _in_use(directory, owner) from None
        with writing(path):
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        remove_stale_temporaries(directory, _owned_apart)
        try:
            yield directory
        except BaseException:
            _remove_if_bare(directory, made)  # still locked: no other process writes there meanwhile
            raise
    finally:
        os.close(descriptor)  # lets go of the lock


def _open_locked(directory: Path) -> tuple[int, bool]:
    """A descriptor of ``directory``'s lock file (made if missing), and whether this process now holds
    the lock. A lock file removed by its owner while this process waited to lock it is opened again."""
    path = lock_path(directory)
    while True:
        with writing(path):
            directory.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return descriptor, False
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(descriptor).st_ino:
            return descriptor, True
        os.close(descriptor)


def _missing_folders(directory: Path) -> list[Path]:
    """The folders that making ``directory`` would create, the deepest first."""
    missing = []
    for folder in (directory, *directory.parents):
        if folder.exists() or folder.is_symlink():
            break
        missing.append(folder)
    return missing


def _remove_if_bare(directory: Path, made: list[Path]) -> None:
    """Remove ``directory``'s lock file and the folders in ``made`` (deepest first) where the directory
    holds nothing else; nothing where it does or was there before."""
    try:
        if not made or any(entry.name != LOCK_NAME for entry in directory.iterdir()):
            return
        lock_path(directory).unlink(missing_ok=True)
        for folder in made:
            folder.rmdir()
    except OSError:  # a folder someone else has just filled, or one that cannot be removed: left
        pass


def refuse_if_held(directory: str | os.PathLike) -> None:
    """The UserError :func:`owning` would give if another process holds ``directory``; nothing where none
    does. Creates nothing: for checks made before a command may write (``--resume`` of a run that another
    process is still training)."""
    try:
        descriptor = os.open(lock_path(directory), os.O_RDONLY)
    except OSError:  # no lock file: never owned, so not held
        return
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(descriptor)
            if owner != str(os.getpid()):
                raise _in_use(Path(directory), owner) from None
        else:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def _owner(descriptor: int) -> str:
    """The PID the lock file holds, as written."""
    return os.pread(descriptor, 32, 0).decode(errors="replace").strip()


def _in_use(directory: Path, owner: str) -> UserError:
    return UserError(
        f"{directory} is in use by another vai process (PID {owner or 'unknown'}): wait for it to end, or {ELSEWHERE}"
    )


def empty(directory: str | os.PathLike) -> None:
    """Delete all that ``directory``, which this process owns, holds but its lock (``vai run --fresh``);
    a folder with an owner of its own (an agent in training) only once this process owns it too."""
    for entry in Path(directory).iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            with owning(entry) if _owned_apart(entry) else contextlib.nullcontext():
                shutil.rmtree(entry)
        else:
            entry.unlink()
