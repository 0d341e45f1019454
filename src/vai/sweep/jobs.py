"""The two jobs of a sweep, as they run in a worker process (a local pool's or a Ray task's).

``vision_job``: a task's vision stages (collect, keypoints, adapter, mask measurement), once per task.
``run_job``: one RL run (train, resuming from its checkpoint where it has one) and its final
evaluation. Each takes plain arguments (paths, the plan's record), writes its result file atomically
as its last act, sends what it prints to its log file, and returns a small dict: ``{"ok": ...}`` or
``{"failed": one line, "log": path}``. A job cut short leaves no result file, so running it again
resumes it: the vision stages skip what their directory holds, training resumes from its checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
import traceback
from pathlib import Path
from typing import Any

from vai.sweep.plan import RunKey, SweepDir, copy_vision, presets


def worker_setup(threads: int) -> None:
    """A worker process's torch threads (``threads`` for every stage, waiting passively: :mod:`vai.threads`),
    and (Linux) its death with the process that started it, so a sweep killed with ``kill -9`` leaves no
    worker training on, holding its run's lock."""
    import ctypes
    import signal

    from vai.threads import THREADS_VARIABLE, wait_passively

    os.environ[THREADS_VARIABLE] = str(threads)
    wait_passively()
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(AttributeError, OSError):
        pr_set_pdeathsig = 1  # <sys/prctl.h>
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() == 1:  # the parent ended before the line above
            os._exit(1)


def machine(device: str, threads: int) -> dict[str, Any]:
    """What a run ran on, as its result file records it."""
    import torch

    from vai.machine import checkout_commit, cpu_name

    card = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None
    return {
        "commit": checkout_commit(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "device": device,
        "gpu": card,
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
    }


@contextlib.contextmanager
def _logged(log: Path):
    """Everything the block prints, to ``log`` (appended: a resumed job adds to its first call's)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", buffering=1) as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        yield handle


def _guarded(log: Path, work) -> dict[str, Any]:
    """``work()`` with its output in ``log``; a failure becomes ``{"failed": one line}`` with its
    traceback in the log, so one failed run never stops the others."""
    from vai.errors import UserError

    try:
        with _logged(log) as handle:
            try:
                return {"ok": work()}
            except UserError as error:
                print(f"vai: error: {error}", file=handle)
                return {"failed": str(error), "log": str(log)}
            except Exception as error:  # noqa: BLE001 - reported to the sweep with its log
                traceback.print_exc(file=handle)
                return {"failed": f"{type(error).__name__}: {error}", "log": str(log)}
    except OSError as error:  # the log itself cannot be written
        return {"failed": f"cannot write {log}: {error.strerror or error}", "log": str(log)}


def _context(sweep: SweepDir, task: str, seed: int, device: str, data_dir):
    from vai.context import RunContext
    from vai.run_dir import RunDir

    return RunContext.create(task, RunDir(sweep.task_run(task)), seed=seed, device=device, data_dir=data_dir)


def vision_job(
    sweep_path: str, record: dict[str, Any], task: str, device: str, threads: int, data_dir=None
) -> dict[str, Any]:
    """The task's vision stages into ``SWEEP/runs/TASK``; writes ``results/TASK-vision.json``."""
    worker_setup(threads)
    sweep = SweepDir(Path(sweep_path))

    def work() -> dict[str, Any]:
        from vai.atomic import write_json_atomic
        from vai.data.store import sha256_file
        from vai.pipeline import timed_stages, vision_stages
        from vai.tasks import KEYPOINTS
        from vai.vision.stages import adapter_backgrounds

        context = _context(sweep, task, record["vision_seed"], device, data_dir)
        vision, _ = presets(record)
        backgrounds = None if record["backgrounds"] == "procedural" else Path(record["backgrounds"])
        seconds: dict[str, float] = {}
        vision_stages(context, vision, backgrounds, timed_stages(context.run.path, seconds))
        copy_vision(context.run.path, sweep.vision_files(task))  # committed with the results
        masks = json.loads(context.run.masks_eval.read_text())["results"]
        summary = {
            "task": task,
            "preset": record["preset"],
            "seed": context.seed,
            "keypoints": KEYPOINTS[task],
            "adapter_backgrounds": adapter_backgrounds(context.run),
            "adapter_sha256": sha256_file(context.run.adapter),
            "seconds": seconds,
            "mask_iou": {
                mode: {source: round(scores["iou"], 4) for source, scores in by_source.items()}
                for mode, by_source in masks.items()
            },
            "machine": machine(device, threads),
        }
        write_json_atomic(summary, sweep.vision_result(task))
        return summary

    return _guarded(sweep.log(f"{task}-vision"), work)


class WallClock:
    """A run's wall time over every job call that worked on it, in ``AGENT/sweep_seconds.json``.

    Each part (``train``, ``evaluate``) is started and stopped; a call killed in between (a sweep cut
    short) leaves its start in the file, and the next call adds the time from that start to the
    agent directory's last write, so the work the kill cut off counts too.
    """

    def __init__(self, folder: Path) -> None:
        self.folder, self.path = folder, folder / "sweep_seconds.json"
        self.totals: dict[str, float] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def start(self, part: str) -> None:
        cut = self.totals.pop(f"{part}_started", None)
        if cut is not None:
            last_write = max(
                (entry.stat().st_mtime for entry in self.folder.rglob("*") if entry.is_file()), default=cut
            )
            self._add(part, max(0.0, last_write - cut))
        self.totals[f"{part}_started"] = time.time()
        self._save()

    def stop(self, part: str) -> float:
        """Ends ``part``; its total seconds."""
        self._add(part, time.time() - self.totals.pop(f"{part}_started"))
        self._save()
        return self.totals[part]

    def _add(self, part: str, seconds: float) -> None:
        self.totals[part] = round(self.totals.get(part, 0.0) + seconds, 1)

    def _save(self) -> None:
        from vai.atomic import write_json_atomic

        self.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.totals, self.path)


def _adapter_seen(out, adapter: Path | None) -> str | None:
    """The sha256 of the adapter the run in ``out`` sees, recorded when it starts (``adapter.sha256``
    in its directory), so that its result names the adapter it trained with, even after the task's
    vision stages ran again (a sweep continued on another machine); None for algorithms without one."""
    from vai.data.store import sha256_file

    if adapter is None:
        return None
    record = out.path / "adapter.sha256"
    if not out.checkpoint.is_file() or not record.is_file():  # a new run sees the adapter there is now
        from vai.atomic import write_text_atomic

        out.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(sha256_file(adapter) + "\n", record)
    return record.read_text().strip()


def run_job(
    sweep_path: str, record: dict[str, Any], key: RunKey, device: str, threads: int, data_dir=None
) -> dict[str, Any]:
    """One RL run: train into ``SWEEP/runs/TASK/ALGO-seedS`` (resuming its checkpoint), then its final
    evaluation over ``test_seeds`` x ``test_episodes`` per mode; writes ``results/NAME.json``."""
    worker_setup(threads)
    sweep = SweepDir(Path(sweep_path))

    def work() -> dict[str, Any]:
        from vai.atomic import write_json_atomic
        from vai.rl.algorithms import algorithm_spec
        from vai.rl.checkpoint import load_agent
        from vai.rl.evaluate import evaluate
        from vai.rl.stages import train_stage
        from vai.tasks import get_task

        context = _context(sweep, key.task, key.seed, device, data_dir)
        _, preset = presets(record)
        out = context.run.agent(key.algorithm, key.seed)
        seen = _adapter_seen(out, context.run.adapter if algorithm_spec(key.algorithm).adapter else None)
        clock = WallClock(out.path)
        clock.start("train")
        trained = train_stage(context, preset, algorithm=key.algorithm, resume=out.checkpoint.is_file(), progress=False)
        train_seconds = clock.stop("train")
        print(f"trained to {trained['steps']} agent steps ({trained['frames']} frames), {train_seconds:.0f} s in all")
        clock.start("evaluate")
        agent, _ = load_agent(out.checkpoint, context.device)
        modes = list(record["modes"][key.task])
        results = evaluate(agent, key.task, modes, preset.test_seeds, preset.test_episodes, data_dir, workers=threads)
        evaluate_seconds = clock.stop("evaluate")
        for mode, result in results.items():
            print(f"{mode}: returns {result.returns.mean(axis=1).round(1).tolist()} of seeds {result.seeds}")
        summary = {
            "task": key.task,
            "algorithm": key.algorithm,
            "seed": key.seed,
            "preset": record["preset"],
            "agent_steps": trained["steps"],
            "frames": trained["frames"],
            "train_seconds": train_seconds,
            "evaluate_seconds": evaluate_seconds,
            "test_seeds": preset.test_seeds,
            "test_episodes": preset.test_episodes,
            "returns": {mode: result.returns.tolist() for mode, result in results.items() if result.seeds},
            "success": {
                mode: result.success.astype(float).tolist()
                for mode, result in results.items()
                if result.seeds and result.success is not None
            },
            "evaluation_seeds": {mode: result.seeds for mode, result in results.items()},
            "not_evaluated": {
                mode: {"seeds": result.skipped, "reason": result.skip_reason}
                for mode, result in results.items()
                if result.skipped
            },
            "action_repeat": get_task(key.task).action_repeat,
            "adapter_sha256": seen,
            "machine": machine(device, threads),
        }
        write_json_atomic(summary, sweep.run_result(key))
        return summary

    return _guarded(sweep.log(key.name), work)
