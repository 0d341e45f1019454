"""How many CPU threads vai's stages compute on, so that vai runs well on a CPU it shares.

Two rules, measured by ``benchmarks/shared_cpu.py`` (``docs/benchmarks.md`` has the figures):

- OpenMP threads wait passively: a thread that waits for the rest of its team sleeps instead of
  spinning (``OMP_WAIT_POLICY=PASSIVE``). With spinning, two processes whose teams share the cores
  spend them waiting on each other: two trainings side by side on 2 cores ran at a tenth of one's
  speed each. The ``vai`` command and a sweep's workers set it before torch loads OpenMP
  (:func:`wait_passively`); a value already in the environment is kept.
- torch's thread count comes from the cores this process may use (:func:`usable_cores`: its CPU
  affinity and its cgroup's CPU quota), never from the load, so what else runs beside a run does not
  change its result: training leaves one core to the environment's thread (``vai.rl.envthread``),
  an evaluation shares the cores among the threads that play its seeds, the other stages use them
  all. ``OMP_NUM_THREADS``, where set, is the count of every stage instead.

A convolution's sums depend on the thread count, so the same run on another number of cores differs
in the last bits and then in everything after them; a training run records its count in its
``config.json``, and a resumed run computes on the count it started with.

Example::

    with torch_threads(stage_threads(reserved=1)):   # a training, the environment on its own thread
        ...
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

THREADS_VARIABLE = "OMP_NUM_THREADS"
"""The user's thread count for every stage, where set (OpenMP's own variable, which torch reads too)."""
WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by its cgroup's CPU quota (a
    container's ``--cpus``), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPUs' worth of time this process's cgroup may use (cgroup v2 ``cpu.max``, else v1's CFS
    quota over its period); None without a quota or outside Linux."""
    candidates = [(root / "cpu.max", None), (root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us")]
    for quota_file, period_file in candidates:
        try:
            fields = quota_file.read_text().split()
            if period_file is not None:
                fields.append(period_file.read_text().strip())
        except OSError:
            continue
        if len(fields) != 2 or fields[0] in ("max", "-1"):
            return None
        try:
            quota, period = float(fields[0]), float(fields[1])
        except ValueError:
            return None
        return quota / period if quota > 0 and period > 0 else None
    return None


def stage_threads(reserved: int = 0, sharing: int = 1) -> int:
    """torch's thread count for a stage: ``OMP_NUM_THREADS`` where set, else the usable cores less
    ``reserved`` (cores busy with other work of the stage, e.g. the environment's thread), shared by
    ``sharing`` threads that each run torch at once; at least 1."""
    explicit = explicit_threads()
    if explicit is not None:
        return explicit
    return max(1, (usable_cores() - reserved) // max(1, sharing))


def explicit_threads() -> int | None:
    """``OMP_NUM_THREADS`` as a count (its first level where it lists several), None where unset or not a
    positive number."""
    value = os.environ.get(THREADS_VARIABLE, "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


@contextmanager
def torch_threads(count: int) -> Iterator[int]:
    """torch computes on ``count`` CPU threads for the block; the caller's count is restored after."""
    import torch

    previous = torch.get_num_threads()
    if count != previous:
        torch.set_num_threads(count)
    try:
        yield count
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def wait_passively() -> bool:
    """Make OpenMP's waiting threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``) unless the
    environment names a policy already. OpenMP reads the variable when torch first loads it, so this
    acts only before ``import torch``; returns whether it set the variable."""
    import sys

    if "torch" in sys.modules or WAIT_POLICY_VARIABLE in os.environ:
        return False
    os.environ[WAIT_POLICY_VARIABLE] = "PASSIVE"
    return True
