"""The context of one command: task, seed, device, data directory and run directory, worked out once.

A command builds it from its arguments, and its stages take it first, then their preset and their own
keyword-only settings, so the task, where to run and where the files lie are not passed along one by one.

Example::

    context = RunContext.create("cartpole_balance", RunDir.at(None, "cartpole_balance", "quick"), device="cuda")
    keypoints_stage(context, get_vision_preset("quick"))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vai.run_dir import RunDir

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class RunContext:
    task: str | None
    """The task; None for a command over checkpoints (``vai eval``), each of which names its own."""
    run: RunDir
    """Where the stages read and write their files."""
    seed: int
    """The seed of what the stage draws: training for the learning stages, episodes for the measuring ones."""
    device: torch.device
    """Where the networks run, checked to exist on this machine."""
    data_dir: str | os.PathLike | None = None
    """The data directory; None: ``$VAI_DATA_DIR``, else vai's cache (``vai.data.store``)."""

    @classmethod
    def create(
        cls,
        task: str | None,
        run: RunDir | str | os.PathLike,
        *,
        seed: int = 0,
        device: str = "cpu",
        data_dir: str | os.PathLike | None = None,
    ) -> RunContext:
        """The context of a command; a UserError for an unknown task or a device this machine lacks."""
        from vai.machine import resolve_device
        from vai.tasks import get_task

        if task is not None:
            get_task(task)
        run = run if isinstance(run, RunDir) else RunDir(Path(run))
        return cls(task, run, seed, resolve_device(device), data_dir)
