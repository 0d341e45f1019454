"""``vai sweep``: tasks x algorithms x training seeds, on a local pool of processes or on Ray, into one table.

    vai sweep cartpole_balance --algos vai sac svea --seeds 0-2 --preset quick --set train_steps=12500
    vai sweep walker_walk cartpole_balance --preset paper --device cuda --runs-per-gpu 4 --ray auto
    vai sweep cartpole_balance --algos vai sac --attention learned oracle   # vai, vai+oracle, sac, sac+oracle

The vision stages run once per task (VAI trains one adapter per task, shared by its seeds), then every
(task, algorithm, seed) RL run and its final evaluation; ``vai`` runs wait for their task's adapter,
the baselines and the oracle rows (``ALGORITHM+oracle``: true masks, no adapter) start at once (a sweep
without a learned adapter runs no vision stage). A finished run is
never run again, an unfinished one resumes from its checkpoint, so a sweep cut short is continued
by the same command; one with other settings is refused before anything is written. Each finished
run rewrites the table (``vai.sweep.table``); a progress line per running run (state, frames, last
return) is printed every ``--progress-every`` seconds.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vai.errors import UserError
from vai.lock import owning
from vai.presets.rl import ALGORITHMS
from vai.rl.algorithms import ATTENTION
from vai.sweep.backends import LocalPool, RayPool, default_workers
from vai.sweep.jobs import run_job, vision_job
from vai.sweep.plan import (
    RECORD_FREE,
    RunKey,
    SweepDir,
    SweepPlan,
    default_sweep,
    parse_seeds,
    resolve_plan,
    restore_vision,
)
from vai.sweep.table import write_table

KEEP_OUT = "# what a sweep directory holds besides its small result files (vai sweep)\nruns/\nlogs/\n.vai.lock\n"
"""The sweep directory's ``.gitignore``: the directory can be committed as it is, without its checkpoints."""
REFUSED = "choose another --out, or run the sweep again with the settings its sweep.json records"


def check_sweep(sweep: SweepDir, plan: SweepPlan, data_dir) -> None:
    """UserError, before anything is written, for a sweep that cannot run: another sweep's record in
    its directory, test data missing for a mode."""
    from vai.envs.datasets import check_mode_data
    from vai.pipeline import check_same_settings

    if sweep.path.exists() and not sweep.path.is_dir():
        raise UserError(f"{sweep.path} is a file, not a sweep directory: {REFUSED}")
    free = set(RECORD_FREE)
    if moved_pool(sweep, plan):
        free.add("backgrounds")
    check_same_settings(sweep.record, plan.to_json(), free=free, fix=REFUSED)
    for modes in plan.modes.values():
        for mode in modes:
            check_mode_data(mode, data_dir)


def moved_pool(sweep: SweepDir, plan: SweepPlan) -> bool:
    """Whether the sweep's record names the plan's image pool at another place: the same folder name
    (``photos``) in another data directory, as on another machine that continues a committed sweep."""
    try:
        recorded = json.loads(sweep.record.read_text()).get("backgrounds")
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, str) or recorded == plan.backgrounds or "procedural" in (recorded, plan.backgrounds):
        return False
    return Path(recorded).name == Path(plan.backgrounds).name


def _last_row(path: Path) -> dict[str, str] | None:
    from vai.report import read_rows

    rows = read_rows(path)
    return rows[-1] if rows else None


class Progress:
    """The lines a person follows: a run's state when it changes or every ``every`` seconds."""

    def __init__(self, sweep: SweepDir, plan: SweepPlan, every: float, log: Callable[[str], None]) -> None:
        self.sweep, self.plan, self.every, self.log = sweep, plan, every, log
        self.last = time.monotonic()

    def run_line(self, key: RunKey) -> str:
        from vai.run_dir import RunDir

        agent = RunDir(self.sweep.task_run(key.task)).agent(key.algorithm, key.seed)
        row = _last_row(agent.train_log)
        if row is None:
            return f"  {key.name}: starting"
        frames = float(row["frames"])
        state = "evaluating" if frames >= self.plan.rl["train_steps"] * _repeat(key.task) else "training"
        return f"  {key.name}: {state}, {frames:,.0f} frames, last episode return {float(row['return']):.0f}"

    def running(self, jobs: list[tuple[str, Any]], queued: int) -> None:
        """A line per running job and one of counts, at most every ``every`` seconds."""
        if time.monotonic() - self.last < self.every:
            return
        self.last = time.monotonic()
        for kind, item in jobs:
            self.log(f"  {item}: vision stages" if kind == "vision" else self.run_line(item))
        finished = sum(self.sweep.run_result(key).is_file() for key in self.plan.runs())
        self.log(f"  {finished} of {len(self.plan.runs())} runs finished, {len(jobs)} running, {queued} queued")

    def finished(self, key: RunKey, result: dict[str, Any], summary: dict[str, Any]) -> None:
        returns = ", ".join(
            f"{mode} {sum(map(sum, rows)) / sum(map(len, rows)):.0f}" for mode, rows in result["returns"].items()
        )
        self.log(
            f"done {key.name}: {returns} (training {result['train_seconds']:.0f} s, evaluation "
            f"{result['evaluate_seconds']:.0f} s; {summary['finished']}/{summary['planned']} runs finished)"
        )
        cells = summary["cells"].get(key.task, {}).get(key.algorithm, {})
        row = ", ".join(f"{mode} {cell['mean']:.0f} ± {cell['std']:.0f}" for mode, cell in cells.items())
        self.log(f"  table row {key.task} {key.algorithm} ({len(next(iter(cells.values()))['scores'])} seeds): {row}")


def _repeat(task: str) -> int:
    from vai.tasks import get_task

    return get_task(task).action_repeat


def run_sweep(
    out: Path,
    plan: SweepPlan,
    *,
    device: str = "cpu",
    threads: int = 1,
    workers: int | None = None,
    runs_per_gpu: int = 1,
    ray: str | None = None,
    data_dir=None,
    progress_every: float = 60.0,
    command: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every job of ``plan`` not yet finished in the sweep directory ``out``; returns the table's summary
    with ``failed`` (run name -> one line) added. ``ray``: None for the local pool, ``local`` for a
    local Ray instance, else a Ray cluster address."""
    from vai.atomic import write_json_atomic, write_text_atomic
    from vai.machine import resolve_device
    from vai.rl.algorithms import algorithm_spec

    resolve_device(device)
    if threads < 1 or (workers is not None and workers < 1) or runs_per_gpu < 1:
        raise UserError("--threads, --workers and --runs-per-gpu take numbers >= 1")
    sweep = SweepDir(Path(out))
    check_sweep(sweep, plan, data_dir)
    record = json.loads(json.dumps(plan.to_json()))  # as the file holds it: lists, not tuples
    workers = workers or default_workers(device, threads, runs_per_gpu)
    gpus = 1.0 / runs_per_gpu if device.startswith("cuda") else 0.0
    with owning(sweep.path):
        check_sweep(sweep, plan, data_dir)  # again, now that no other process can write the record
        write_json_atomic(record, sweep.record)
        write_text_atomic(KEEP_OUT, sweep.path / ".gitignore")
        summary = write_table(sweep, record, command)
        todo = [key for key in plan.runs() if not sweep.run_result(key).is_file()]
        # Only an algorithm that sees through an adapter needs the vision stages.
        needed = any(algorithm_spec(algorithm).adapter for algorithm in plan.algorithms)
        for task in plan.tasks if needed else ():
            if restore_vision(sweep, task):
                log(f"{task}: the committed Transporter and adapter restored from {sweep.vision_files(task)}")
        vision = [task for task in plan.tasks if needed and not _vision_done(sweep, task)]
        log(
            f"sweep {sweep.path}: {summary['finished']} of {summary['planned']} runs finished, {len(todo)} to run; "
            f"vision stages to run for {len(vision) or 'no'} task(s); {workers} at once on "
            f"{'Ray' if ray else 'local worker processes'} ({threads} thread(s) each, device {device})"
        )
        backend = RayPool(None if ray == "local" else ray, cpus=workers * threads) if ray else LocalPool(workers)
        progress = Progress(sweep, plan, progress_every, log)
        failed: dict[str, str] = {}
        slots = _slots(device, workers, ray is not None)
        running: dict[concurrent.futures.Future, tuple[str, Any, str]] = {}
        order = sorted(
            todo, key=lambda key: (key.seed, plan.tasks.index(key.task), plan.algorithms.index(key.algorithm))
        )
        waiting_vision = set(vision)

        def ready(key: RunKey) -> bool:
            """Whether ``key`` can start: its algorithm needs no adapter, or its task's is made."""
            return not algorithm_spec(key.algorithm).adapter or key.task not in waiting_vision

        def submit(kind: str, item: Any) -> None:
            slot = slots.pop(0)
            if kind == "vision":
                future = backend.submit(
                    vision_job, str(sweep.path), record, item, slot, threads, data_dir, cpus=threads, gpus=gpus
                )
            else:
                future = backend.submit(
                    run_job, str(sweep.path), record, item, slot, threads, data_dir, cpus=threads, gpus=gpus
                )
            running[future] = (kind, item, slot)
            log(f"start {item if kind == 'vision' else item.name}" + (" (vision stages)" if kind == "vision" else ""))

        try:
            queue_vision = list(vision)
            while queue_vision or order or running:
                while slots and queue_vision:
                    submit("vision", queue_vision.pop(0))
                for key in [key for key in order if ready(key)][: len(slots)]:
                    order.remove(key)
                    submit("run", key)
                done, _ = concurrent.futures.wait(
                    running, timeout=min(progress_every, 30), return_when="FIRST_COMPLETED"
                )
                progress.running(
                    [(kind, item) for kind, item, _slot in running.values()], len(queue_vision) + len(order)
                )
                for future in done:
                    kind, item, slot = running.pop(future)
                    slots.append(slot)
                    outcome = _outcome(future)
                    name = item if kind == "vision" else item.name
                    if kind == "vision" and "failed" not in outcome:
                        waiting_vision.discard(item)
                    if "failed" in outcome:
                        failed[name] = outcome["failed"]
                        log(
                            f"failed {name}: {outcome['failed']}"
                            + (f" (log: {outcome['log']})" if outcome.get("log") else "")
                        )
                        if kind == "vision":  # its vai runs have no adapter to see through
                            for key in [key for key in order if key.task == item and not ready(key)]:
                                order.remove(key)
                                failed[key.name] = f"not run: the vision stages of {item} failed"
                        continue
                    summary = write_table(sweep, record, command)
                    if kind == "vision":
                        times = ", ".join(f"{k} {v:.0f} s" for k, v in outcome["ok"]["seconds"].items())
                        log(f"done {item}: vision stages ({times or 'all reused'})")
                    else:
                        progress.finished(item, outcome["ok"], summary)
        except BaseException:
            backend.close(cancel=True)
            raise
        backend.close()
        summary = write_table(sweep, record, command)
        summary["failed"] = failed
        return summary


def _vision_done(sweep: SweepDir, task: str) -> bool:
    """The task's vision stages are done: their result file, and the adapter the vai runs load (a
    sweep directory restored from its committed files alone has the one, not the other)."""
    from vai.run_dir import RunDir

    return sweep.vision_result(task).is_file() and RunDir(sweep.task_run(task)).adapter.is_file()


def _slots(device: str, workers: int, ray: bool) -> list[str]:
    """The device of each place a job can run: ``workers`` of them; on local GPUs spread round-robin
    (``cuda:0``, ``cuda:1``, ...). Ray gives each task its own GPUs, seen as ``cuda``."""
    if device.startswith("cuda") and not ray and ":" not in device:
        import torch

        count = max(1, torch.cuda.device_count())
        return [f"cuda:{index % count}" for index in range(workers)]
    return [device] * workers


def _outcome(future: concurrent.futures.Future) -> dict[str, Any]:
    """A job's returned dict, or ``{"failed": ...}`` when its worker died or Ray could not run it."""
    try:
        return future.result()
    except concurrent.futures.process.BrokenProcessPool:
        return {"failed": "its worker process died (out of memory, or killed): run the sweep again to resume"}
    except Exception as error:  # noqa: BLE001 - Ray's task and worker errors
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return {"failed": f"{type(error).__name__}: {first}"}


# -- command line -----------------------------------------------------------------------------------
def add_sweep_command(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sweep", help="tasks x algorithms x seeds on a local pool or Ray, into one table over seeds"
    )
    parser.add_argument("tasks", nargs="+", metavar="TASK", help="task names (see 'vai env list')")
    parser.add_argument(
        "--algos", nargs="+", default=list(ALGORITHMS), help=f"algorithms (default: {' '.join(ALGORITHMS)})"
    )
    parser.add_argument(
        "--attention",
        nargs="+",
        choices=ATTENTION,
        default=["learned"],
        help="learned: each algorithm as it is; oracle: its ALGO+oracle row on true masks (both: one row each)",
    )
    parser.add_argument("--seeds", nargs="+", default=["0-2"], help="training seeds: 0-2, '0 1 2' or 0,3-4")
    parser.add_argument("--preset", default="quick", help="quick (2-core CPU) or paper (VAI's, GPU)")
    parser.add_argument(
        "--set",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="override preset fields for every run, e.g. train_steps=12500 test_seeds=10 test_episodes=2",
    )
    parser.add_argument("--mode", nargs="+", default=None, help="modes of the final evaluation (default: all)")
    parser.add_argument("--backgrounds", type=Path, default=None, help="the adapter's image pool folder")
    parser.add_argument("--out", type=Path, default=None, help="sweep directory (default: runs/sweep-TASKS-PRESET)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument(
        "--workers", type=int, default=None, help="runs at once (default: cores / threads, or GPUs x --runs-per-gpu)"
    )
    parser.add_argument("--runs-per-gpu", type=int, default=1, help="runs sharing one GPU (default 1)")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run the jobs as Ray tasks: a local instance, or the cluster at ADDRESS (pip install vai[ray])",
    )
    parser.add_argument("--vision-seed", type=int, default=0, help="seed of each task's vision stages (default 0)")
    parser.add_argument("--progress-every", type=float, default=60.0, help="seconds between progress lines")
    parser.add_argument("--data-dir", default=None)
    parser.set_defaults(func=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> int:
    from vai.rl.stages import check_algorithm

    seeds = parse_seeds(args.seeds)
    plan = resolve_plan(
        args.tasks,
        [check_algorithm(algorithm, attention) for algorithm in args.algos for attention in args.attention],
        seeds,
        args.preset,
        args.set,
        args.mode,
        args.backgrounds,
        args.data_dir,
        args.vision_seed,
    )
    out = args.out or default_sweep(list(plan.tasks), args.preset)
    command = "vai sweep " + " ".join(shlex.quote(arg) for arg in sys.argv[2:]) if sys.argv[1:2] == ["sweep"] else None
    summary = run_sweep(
        out,
        plan,
        device=args.device,
        threads=args.threads,
        workers=args.workers,
        runs_per_gpu=args.runs_per_gpu,
        ray=args.ray,
        data_dir=args.data_dir,
        progress_every=args.progress_every,
        command=command,
    )
    print(SweepDir(Path(out)).table.read_text(), end="")
    if summary["failed"]:
        for name, reason in summary["failed"].items():
            print(f"vai: {name} failed: {reason}", file=sys.stderr)
        return 1
    return 0
