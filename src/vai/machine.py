"""The machine: what a measurement ran on (benchmark output, run reports), its torch devices, its allocator."""

from __future__ import annotations

import platform

from vai.errors import UserError


def cpu_name() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def checkout_commit() -> str:
    """The git commit of the checkout vai runs from, with ``+`` when tracked files differ from it;
    ``unknown`` outside a git checkout. Benchmarks record it beside their figures."""
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parent

    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], capture_output=True, text=True, cwd=here, timeout=30).stdout

    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + ("+" if dirty else "")) if head else "unknown"


MMAP_THRESHOLD = 32 * 2**20
"""Blocks at least this large are mapped from the kernel (glibc's largest allowed threshold)."""
TRIM_THRESHOLD = 256 * 2**20
"""Free memory above this at the heap's top goes back to the kernel."""


def keep_freed_memory() -> bool:
    """Let glibc's allocator reuse freed blocks of up to ``MMAP_THRESHOLD`` instead of mapping and
    unmapping them (with page faults on every first touch) each time torch makes a temporary tensor
    of a few megabytes. Called by the ``vai`` command and the benchmarks, not on import: it is a
    process-wide setting; it makes the vision stages' training steps a little faster on a CPU, where
    each step allocates many such temporaries. Returns False, changing nothing, where the C library
    is not glibc."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(mallopt(m_trim_threshold, TRIM_THRESHOLD))


def resolve_device(name: str):
    """``name`` (``cpu``, ``cuda``, ``cuda:N``, ...) as a torch device that exists here; UserError otherwise."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name} asked for, but torch sees no GPU: use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: torch sees only {torch.cuda.device_count()} GPU(s); use cuda:0")
    elif device.type != "cpu":
        raise UserError(f"--device {name} is not supported: use cpu, cuda or cuda:N")
    return device
