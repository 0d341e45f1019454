"""The data directory: where it is, whether a data set in it is whole, and how to fill it.

One resolver decides the folder for every caller (``--data-dir``, then ``VAI_DATA_DIR``, then a
per-user cache), so the CLI, the environments and the tests cannot look in different places.
Downloads are checked against the registry's sha256 before they are moved into place, and are
written to a temporary file in the destination folder first, so an interrupted or bad download
never leaves a partial or wrong file where a reader would take it for data.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import http.client
import os
import shlex
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vai.atomic import writing
from vai.data.registry import CONVERT_DMCGB_COLORS, DataFile, Dataset, get_dataset
from vai.errors import UserError

ENV_VAR = "VAI_DATA_DIR"
ELSEWHERE = f"choose another --data-dir (or {ENV_VAR})"
"""How a user points ``vai data fetch`` at another data directory, for a refused write."""
_CHUNK = 1 << 20
_TIMEOUT_S = 60.0
_URL_SCHEMES = ("http", "https", "file")

PathArg = str | os.PathLike[str] | None


def default_data_dir() -> Path:
    """The per-user cache folder used when nothing else is set.

    Follows the XDG base-directory spec: ``$XDG_CACHE_HOME/vai/data``, else
    ``~/.cache/vai/data`` (the spec says to ignore a relative ``XDG_CACHE_HOME``).
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "vai" / "data"


def resolve_data_dir(explicit: PathArg = None) -> Path:
    """The data directory: ``explicit`` if given, else ``$VAI_DATA_DIR``, else the default.

    Made absolute (not symlink-resolved) so messages name the folder actually looked in even if
    the working directory changes later.
    """
    if explicit is not None and os.fspath(explicit) != "":
        chosen = Path(explicit)
    elif os.environ.get(ENV_VAR):
        chosen = Path(os.environ[ENV_VAR])
    else:
        chosen = default_data_dir()
    return chosen.expanduser().absolute()


def dataset_path(name: str, data_dir: PathArg = None) -> Path:
    """The folder that holds data set ``name`` (whether or not it exists yet)."""
    return resolve_data_dir(data_dir) / get_dataset(name).folder


def missing_files(dataset: Dataset, data_dir: Path) -> list[str]:
    """Registered files of ``dataset`` absent from ``data_dir`` (by presence, not checksum)."""
    return [f.path for f in dataset.files if not (data_dir / f.path).is_file()]


LOCAL_COUNT_CAP = 100_000
"""Counting the files of a local data set stops here (an extracted Places365 holds 1.8 million)."""


def local_file_count(folder: Path, cap: int = LOCAL_COUNT_CAP) -> int:
    """Non-hidden regular files in ``folder`` and its sub-folders, counted up to ``cap`` (0 if it
    does not exist): image pools such as Places365 keep their images in one folder per class."""
    if not folder.is_dir():
        return 0
    count = 0
    for path in folder.rglob("*"):
        if not path.name.startswith(".") and path.is_file():
            count += 1
            if count >= cap:
                break
    return count


def require(name: str, data_dir: PathArg = None, files: Iterable[str] | None = None) -> Path:
    """The folder of data set ``name``, or a one-line UserError that says how to get it.

    ``files`` names files inside the data set folder (e.g. ``["video0.mp4"]``) when a mode
    needs only some of them; by default all registered files must exist. This checks presence
    only, to stay cheap at every start; ``verify`` checks contents.
    """
    dataset = get_dataset(name)
    root = resolve_data_dir(data_dir)
    folder = root / dataset.folder
    wanted = None if files is None else list(files)
    if dataset.local_only:
        absent = [n for n in wanted or () if not (folder / n).is_file()]
        if absent or (not wanted and local_file_count(folder) == 0):
            what = f"is missing {_first_few(absent)}" if absent else "not found"
            raise UserError(
                f"data set {name!r} {what} in {folder}: it has no checksummed download; "
                f"{dataset.source}, or set {ENV_VAR} / --data-dir"
            )
        return folder
    if wanted is None:
        needed = [f.path for f in dataset.files]
    else:
        known = [f.path for f in dataset.files]
        needed = [f"{dataset.folder}/{file_name}" for file_name in wanted]
        for file_name, rel in zip(wanted, needed):
            if rel not in known:
                choices = ", ".join(p.rsplit("/", 1)[-1] for p in known)
                raise UserError(f"data set {name!r} has no file {file_name!r}: it has {choices}")
    absent = [rel for rel in needed if not (root / rel).is_file()]
    if absent:
        what = "not found" if len(absent) == len(needed) else f"is missing {_first_few(absent)}"
        raise UserError(
            f"data set {name!r} {what} in {folder}: run '{fetch_command(name, root)}' (or set {ENV_VAR} / --data-dir)"
        )
    return folder


def damaged_data(path: Path, what: str) -> UserError:
    """The one-line error for a data file that is there but cannot be read (``what`` says why)."""
    return UserError(f"{what}: check it with 'vai data verify {path.parent.name}' and fetch it again")


def fetch_command(name: str, data_dir: Path) -> str:
    """The shell command that fetches ``name`` (one name, or several separated by spaces).

    Adds ``--data-dir`` only when ``data_dir`` is not where a plain command would fetch to, so
    the advice in an error message works when pasted as is.
    """
    command = f"vai data fetch {name}"
    if data_dir != resolve_data_dir():
        command += f" --data-dir {shlex.quote(str(data_dir))}"
    return command


class Status(str, enum.Enum):
    """The state of one file (or local-only folder) in the data directory."""

    OK = "ok"
    MISSING = "missing"
    CORRUPTED = "corrupted"


@dataclass(frozen=True)
class FileCheck:
    """The result of verifying one file; ``detail`` says why it is not OK (or what was seen)."""

    path: str
    status: Status
    detail: str = ""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks so large videos do not load into memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(name: str, data_dir: PathArg = None) -> list[FileCheck]:
    """Check every file of data set ``name`` against its registered sha256.

    A local-only data set has no checksums: it is OK when its folder holds at least one file.
    """
    dataset = get_dataset(name)
    root = resolve_data_dir(data_dir)
    if dataset.local_only:
        count = local_file_count(root / dataset.folder)
        path = f"{dataset.folder}/"
        if count == 0:
            detail = f"no files in {root / dataset.folder}; local only: provide your own images"
            return [FileCheck(path, Status.MISSING, detail)]
        return [FileCheck(path, Status.OK, f"{count} files (local only, no checksums)")]
    return [_check_file(entry, root) for entry in dataset.files]


def _check_file(entry: DataFile, root: Path) -> FileCheck:
    target = root / entry.path
    if not target.is_file():
        return FileCheck(entry.path, Status.MISSING, f"no file {target}")
    try:
        actual = sha256_file(target)
    except OSError as exc:
        return FileCheck(entry.path, Status.CORRUPTED, f"unreadable: {_one_line(exc)}")
    if actual != entry.sha256:
        detail = f"sha256 {actual[:16]}..., expected {entry.sha256[:16]}..."
        return FileCheck(entry.path, Status.CORRUPTED, detail)
    return FileCheck(entry.path, Status.OK)


@dataclass(frozen=True)
class FetchResult:
    """What ``fetch`` did for one file: ``fetched`` from ``source`` or already ``present``."""

    path: str
    action: str
    source: str


def fetch(
    name: str,
    data_dir: PathArg = None,
    mirror: str | None = None,
    on_file: Callable[[FetchResult], None] | None = None,
) -> list[FetchResult]:
    """Download data set ``name`` into the data directory; files already valid are kept.

    ``mirror`` is a base URL (``http(s)://`` or ``file://``, or a plain local folder path) that
    holds the files at their data-directory paths, e.g. ``file:///srv/vai-data`` serving
    ``colors/color_easy.json``; it replaces the upstream sources, and files from it are taken
    as they are (no conversion). ``on_file`` is called after each file, for progress output.
    Raises UserError on a network error, a bad download or a local-only data set, and a
    :class:`~vai.errors.WriteFailed` naming the file and the fix where the data directory refuses a
    write (a file where a folder should be, read-only, full); files fetched before it stay.
    """
    dataset = get_dataset(name)
    root = resolve_data_dir(data_dir)
    if dataset.local_only:
        raise UserError(
            f"data set {name!r} has no checksummed download: provide it in {root / dataset.folder} "
            f"({dataset.source}), or point {ENV_VAR} / --data-dir at a data directory that has it"
        )
    base = _mirror_base(mirror) if mirror is not None else None
    results = []
    for entry in dataset.files:
        result = fetch_file(entry, root, mirror_base=base)
        results.append(result)
        if on_file is not None:
            on_file(result)
    return results


def fetch_file(entry: DataFile, root: Path, mirror_base: str | None = None) -> FetchResult:
    """Make ``root / entry.path`` a checksum-valid copy of ``entry``, downloading if needed.

    The download goes to a hidden ``.part`` file next to the destination (same file system, so
    ``os.replace`` is atomic) and replaces the destination only once its sha256 matches; every
    temporary file is removed on any failure, interrupts included.
    """
    target = root / entry.path
    if _is_whole(target, entry.sha256):
        return FetchResult(entry.path, "present", str(target))
    if mirror_base is not None:
        url, convert = f"{mirror_base}/{urllib.parse.quote(entry.path)}", None
    else:
        url, convert = entry.url, entry.convert
    temporaries: list[Path] = []
    try:
        # A refused write (a file where a folder should be, read-only, full) is one line naming the fix.
        with writing(target, elsewhere=ELSEWHERE):
            target.parent.mkdir(parents=True, exist_ok=True)
            downloaded = _temporary(target, temporaries)
            _download(url, downloaded)
            final = downloaded
            if convert is not None:
                final = _temporary(target, temporaries)
                final.write_bytes(_convert(convert, downloaded, url))
            actual = sha256_file(final)
            if actual != entry.sha256:
                raise UserError(
                    f"checksum mismatch for {entry.path} from {url}: sha256 {actual[:16]}..., "
                    f"expected {entry.sha256[:16]}...; nothing was saved"
                )
            os.chmod(final, 0o644)
            os.replace(final, target)
    finally:
        for path in temporaries:
            path.unlink(missing_ok=True)
    return FetchResult(entry.path, "fetched", url)


def _is_whole(target: Path, sha256: str) -> bool:
    """Whether ``target`` is a file with the registered checksum (one that cannot be read is not)."""
    try:
        return target.is_file() and sha256_file(target) == sha256
    except OSError:
        return False


def _mirror_base(mirror: str) -> str:
    """A mirror as a URL without a trailing slash; a plain path becomes a ``file://`` URL."""
    scheme = urllib.parse.urlsplit(mirror).scheme
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):  # a path (or a Windows drive)
        return Path(mirror).expanduser().absolute().as_uri().rstrip("/")
    if scheme not in _URL_SCHEMES:
        raise UserError(f"unsupported mirror {mirror!r}: use an http(s):// or file:// URL or a folder")
    return mirror.rstrip("/")


def _temporary(target: Path, cleanup: list[Path]) -> Path:
    """A new empty hidden file beside ``target``, recorded in ``cleanup`` for removal."""
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(handle)
    path = Path(name)
    cleanup.append(path)
    return path


def _download(url: str, destination: Path) -> None:
    """Stream ``url`` into ``destination``; a failure to read ``url`` becomes a one-line UserError, a
    failure to write ``destination`` is raised as it is (an OSError, for the caller's :func:`writing`)."""
    if urllib.parse.urlsplit(url).scheme not in _URL_SCHEMES:
        raise UserError(f"cannot download {url}: only http(s):// and file:// URLs are supported")
    with _reading(url):
        response = urllib.request.urlopen(url, timeout=_TIMEOUT_S)
    with response, open(destination, "wb") as out:
        while True:
            with _reading(url):
                chunk = response.read(_CHUNK)
            if not chunk:
                return
            out.write(chunk)


@contextlib.contextmanager
def _reading(url: str) -> Iterator[None]:
    """A block that reads ``url``: any failure becomes a one-line UserError naming it."""
    try:
        yield
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code} {_one_line(exc.reason)}"
        raise UserError(f"could not download {url}: {reason}") from exc
    except urllib.error.URLError as exc:
        raise UserError(f"could not download {url}: {_one_line(exc.reason)}") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise UserError(f"could not download {url}: {_one_line(exc)}") from exc


def _convert(kind: str, downloaded: Path, url: str) -> bytes:
    """Apply the registry's conversion ``kind`` to a downloaded file."""
    if kind != CONVERT_DMCGB_COLORS:
        raise UserError(f"no converter {kind!r} for {url} (vai's registry and code disagree)")
    from vai.data.convert import convert_colors_pt

    try:
        return convert_colors_pt(downloaded)
    except ImportError as exc:
        raise UserError(
            f"converting {url} needs torch ({_one_line(exc)}): install torch, or fetch with "
            "--mirror from a copy that has the JSON files"
        ) from exc
    except Exception as exc:  # untrusted input: unpickling can fail in many ways
        raise UserError(f"cannot convert {url}: {type(exc).__name__}: {_one_line(exc)}") from exc


def _first_few(paths: list[str], limit: int = 3) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _one_line(value: object) -> str:
    """``value`` as text on one line (messages from the OS or torch may span several)."""
    return " ".join(str(value).split())
