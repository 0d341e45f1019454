"""Checksums of saved weights, so that a damaged checkpoint is refused instead of loaded.

safetensors checks a file's header and sizes but not its bytes: a flipped bit in a weight loads
silently and gives meaningless masks. The vision checkpoints therefore record the SHA-256 of their
tensors in the metadata (``DIGEST_KEY``), and their loaders compare it.
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
