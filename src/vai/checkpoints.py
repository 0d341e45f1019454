"""Checkpoint files: written atomically with a format name, a version and a checksum, checked on reading.

The Transporter and the adapter are safetensors files whose metadata holds the header; an agent is a
``torch.save`` dictionary that holds it beside its weights. Either way a loader gets back weights it
can trust, or a one-line :class:`UserError` that names the file and the fix: for a missing or
unreadable file, another program's file, a version this vai does not read, or damaged weights.

The checksum is there because safetensors checks a file's header and sizes but not its bytes, and
torch's loader does not check its archive's either: a flipped bit in a weight loads silently and
gives meaningless masks or actions. A file that records no checksum loads unchecked.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vai.atomic import atomic_write
from vai.errors import UserError

DIGEST_KEY = "sha256"
PathArg = str | os.PathLike[str]


@dataclass(frozen=True)
class CheckpointFormat:
    """One kind of checkpoint: what its header says, and what its loader tells a user."""

    name: str
    """Recorded under ``format``; tells vai's files of this kind from any other file."""
    version: int
    """The layout this vai writes and reads; files of any other version are refused."""
    kind: str
    """What the file is, in messages: ``"Transporter checkpoint"``."""
    fix: str
    """What the user does about a file that cannot be loaded, in messages."""
    changes: str
    """What this version holds that older ones lack, in the message that refuses an older file."""
    version_in_name: bool = False
    """Record ``name/version`` under ``format`` and no ``version``, as the Transporter's files do."""

    def header(self) -> dict[str, Any]:
        """The format name and version as a file of this kind records them."""
        if self.version_in_name:
            return {"format": f"{self.name}/{self.version}"}
        return {"format": self.name, "version": self.version}

    def error(self, path: Path, problem: str) -> UserError:
        """``UserError("{kind} {path} {problem}: {fix}")``: the one line every refusal takes."""
        return UserError(f"{self.kind} {path} {problem}: {self.fix}")

    def mismatch(self, path: Path, error: Exception) -> UserError:
        """The refusal of a file whose weights or settings do not fit the model its header describes."""
        return self.error(path, f"does not match the model it describes ({_first_line(error)})")


def _first_line(error: Exception) -> str:
    """An exception's message shortened to one line, for a UserError's parenthesis."""
    return (str(error).splitlines() or [type(error).__name__])[0][:160]


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_tensors(
    checkpoint: CheckpointFormat, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str], path: PathArg
) -> Path:
    """Write ``tensors`` as safetensors, ``metadata`` beside the header and checksum, atomically."""
    from safetensors.torch import save_file

    tensors = {name: value.detach().cpu().contiguous() for name, value in tensors.items()}
    header = {**checkpoint.header(), **metadata, DIGEST_KEY: tensors_digest(tensors)}
    header = {key: str(value) for key, value in header.items()}
    return atomic_write(path, lambda temporary: save_file(tensors, str(temporary), metadata=header))


def load_tensors(checkpoint: CheckpointFormat, path: PathArg) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a file :func:`save_tensors` wrote, checked; UserError otherwise."""
    from safetensors import safe_open

    path = _existing(checkpoint, path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as reader:
            metadata = reader.metadata() or {}
            tensors = {name: reader.get_tensor(name) for name in reader.keys()}
    # A damaged file fails in many ways (header JSON, sizes, I/O): each means the same to the user.
    except Exception as error:
        raise checkpoint.error(path, f"is unreadable ({_first_line(error)})") from None
    _check(checkpoint, path, metadata, tensors)
    return tensors, metadata


def save_payload(checkpoint: CheckpointFormat, payload: Mapping[str, Any], weights: str, path: PathArg) -> Path:
    """``torch.save`` ``payload`` with the header and the checksum of ``payload[weights]``, atomically.

    ``payload`` holds plain tensors, numbers, strings and containers of them, so that
    :func:`load_payload` reads it with ``weights_only=True`` and never runs code from the file.
    """
    payload = {**checkpoint.header(), **payload, DIGEST_KEY: tensors_digest(payload[weights])}
    return atomic_write(path, lambda temporary: torch.save(payload, temporary))


def load_payload(checkpoint: CheckpointFormat, weights: str, path: PathArg) -> dict[str, Any]:
    """The dictionary :func:`save_payload` wrote, its header and weights checked; UserError otherwise."""
    path = _existing(checkpoint, path)
    if not zipfile.is_zipfile(path):  # vai writes torch's zip archives only; torch would warn of others first
        raise checkpoint.error(path, "is unreadable (not a torch checkpoint archive)")
    try:
        with warnings.catch_warnings():  # a damaged file's one line is vai's, not torch's warnings before it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for damaged files
        raise checkpoint.error(path, f"is unreadable ({_first_line(error)})") from None
    if not isinstance(payload, dict):
        payload = {}
    tensors = payload.get(weights)
    _check(checkpoint, path, payload, tensors if isinstance(tensors, dict) else None)
    return payload


def _existing(checkpoint: CheckpointFormat, path: PathArg) -> Path:
    path = Path(path)
    if not path.is_file():
        raise checkpoint.error(path, "not found")
    return path


def _check(
    checkpoint: CheckpointFormat, path: Path, header: Mapping[str, Any], tensors: Mapping[str, torch.Tensor] | None
) -> None:
    """Refuse another program's file, another version, and weights that fail their checksum."""
    name, version = header.get("format"), header.get("version")
    if version is None and isinstance(name, str) and "/" in name:  # the ``version_in_name`` form
        name, _, version = name.rpartition("/")
    if name != checkpoint.name:
        raise UserError(f"{path} is not a vai {checkpoint.kind} (format {header.get('format')!r}): {checkpoint.fix}")
    try:
        version = int(version)
    except (TypeError, ValueError):
        pass
    if version != checkpoint.version:
        newer = isinstance(version, int) and version > checkpoint.version
        advice = ": upgrade vai" if newer else f" ({checkpoint.changes}): {checkpoint.fix}"
        reads = f"this vai reads version {checkpoint.version} only{advice}"
        raise UserError(f"{path} is a version {version} {checkpoint.kind}; {reads}")
    recorded = header.get(DIGEST_KEY)
    if tensors is None or (recorded is not None and recorded != tensors_digest(tensors)):
        raise checkpoint.error(path, "is damaged (its weights fail their checksum)")
