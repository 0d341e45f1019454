"""Where a sweep's jobs run: a local pool of worker processes, or Ray tasks.

Both take ``submit(function, *args, cpus=, gpus=)`` and give back a ``concurrent.futures.Future``, so
the sweep's scheduler waits on either alike. The local pool starts its workers with ``spawn`` (a fresh
interpreter: no GL context or torch thread pool inherited) and runs as many jobs at once as it has
workers; Ray schedules each task on a node with the CPUs and (fractional) GPUs it asks for, so on a
cluster the runs spread over its machines, which must all see the sweep directory (a shared file system).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from typing import Any

from vai.errors import UserError


def default_workers(device: str, threads: int, runs_per_gpu: int) -> int:
    """Jobs at once on this machine: on a CPU its cores over the threads of one run, on GPUs the GPUs
    torch sees times ``runs_per_gpu``."""
    if device.startswith("cuda"):
        import torch

        return max(1, torch.cuda.device_count() * runs_per_gpu)
    from vai.threads import usable_cores

    return max(1, usable_cores() // threads)


class LocalPool:
    """Worker processes of this machine; ``workers`` jobs at once, the rest queue in submission order."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, function, *args: Any, cpus: float = 1, gpus: float = 0) -> concurrent.futures.Future:
        return self._pool.submit(function, *args)

    def close(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


class RayPool:
    """Ray tasks on a local instance (``address`` None) or an existing cluster (``address``, e.g.
    ``auto`` or ``ray://HOST:10001``). A local instance gets ``cpus`` CPUs, so it runs as many jobs at
    once as the local pool would. Needs ``pip install vai[ray]``."""

    name = "ray"

    def __init__(self, address: str | None, cpus: int | None = None) -> None:
        ray = import_ray()
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            forwarded = ("MUJOCO_GL", "VAI_DATA_DIR", "OMP_WAIT_POLICY")
            environment = {"env_vars": {name: os.environ[name] for name in forwarded if name in os.environ}}
            options = {"address": address} if address else {"num_cpus": cpus}
            try:
                ray.init(**options, runtime_env=environment, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as error:
                raise UserError(f"cannot start or reach Ray at {address or 'a local instance'}: {error}") from None
        self._remote: dict[Any, Any] = {}

    def submit(self, function, *args: Any, cpus: float = 1, gpus: float = 0) -> concurrent.futures.Future:
        remote = self._remote.get(function)
        if remote is None:
            remote = self._remote[function] = self._ray.remote(max_retries=1)(function)
        return remote.options(num_cpus=cpus, num_gpus=gpus).remote(*args).future()

    def close(self, cancel: bool = False) -> None:
        if self._started:
            self._ray.shutdown()


def import_ray():
    """The ``ray`` module, or a UserError naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray: pip install 'vai[ray]' (or pip install ray)") from None
    return ray
