"""Checksums of saved weights, so that a damaged checkpoint is refused instead of loaded.

safetensors checks a file's header and sizes but not its bytes, and torch's loader does not check
its archive's either: a flipped bit in a weight loads silently and gives meaningless masks or
actions. The Transporter's and the adapter's safetensors files therefore record the SHA-256 of their
tensors in their metadata, an agent's checkpoint that of its weights beside them (``DIGEST_KEY``),
and the loaders compare it; files written before this carry none and load as before.
"""

from __future__ import annotations

import hashlib

import torch

DIGEST_KEY = "sha256"


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def digest_mismatch(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bool:
    """Whether ``metadata`` records a digest that ``tensors`` do not have (files without one pass)."""
    recorded = metadata.get(DIGEST_KEY)
    return recorded is not None and recorded != tensors_digest(tensors)
