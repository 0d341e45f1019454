"""Agent steps per second of the `quick` training loop, per part, and side by side with another commit.

    python benchmarks/cpu_speed.py                              # the checkout's code
    python benchmarks/cpu_speed.py --against main --repeats 3   # and another commit's, taking turns
    python benchmarks/cpu_speed.py --threads 2 1                # the checkout on 2, then 1 torch thread

The loop is the real one: ``vai.rl.stages.train_stage`` on ``--task`` (default cartpole_balance) with
the ``quick`` RL preset and the ``vai`` algorithm, an untrained attention adapter in front (a trained
one costs the same), ``--init`` agent steps of random actions, then ``--steps`` timed agent steps
(acting with the frozen adapter, the environment, replay, one update each). VAI's burst of updates
after the random phase is left out, so the figure is the steady state; the final checkpoint (and with
``--evaluate`` the evaluations at the start and the end) are timed on their own, per call, outside
the steps.

Each measurement runs in a fresh process; with ``--against REV [REV ...]`` each other commit's ``src``
is checked out into a temporary ``git worktree`` and this same script measures it there, and with
``--threads N [N ...]`` each commit runs with each torch thread count (``OMP_NUM_THREADS``); all take
turns ``--repeats`` times so that a busy moment of the machine hits each alike. It prints
the medians: agent steps per second and, per part, milliseconds per agent step (a part inside
another is indented under it; ``env`` is the environment's own step, which overlaps the loop when
it runs on a thread of its own, ``env wait`` is what the loop waits for it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PARTS = [
    # (class path, method, part name); the name nests under the part that is running when it is called.
    ("vai.rl.sac.SACAgent", "act_stored", "act"),
    ("vai.rl.observe.ObservationPipeline", "store", "store (adapter)"),
    ("vai.rl.replay.ReplayBuffer", "sample", "sample"),
    ("vai.rl.replay.ReplayBuffer", "add", "replay add"),
    ("vai.rl.episodes.EpisodeRecorder", "add", "episode record"),
    ("vai.rl.sac.SACAgent", "update", "update"),
    ("vai.rl.observe.ObservationPipeline", "train_view", "crop"),
    ("vai.rl.observe.ObservationPipeline", "augment", "adapt_aug"),
    ("vai.rl.sac.SACAgent", "_update_critic", "critic"),
    ("vai.rl.sac.SACAgent", "_update_actor", "actor"),
    ("vai.rl.sac.SACAgent", "_update_aux", "heads"),
    ("vai.rl.sac.SACAgent", "soft_update_target", "target"),
    ("torch.optim.Adam", "step", "optimiser"),
    ("vai.rl.logger.RunLogger", "log", "logging"),
    ("vai.rl.logger.Progress", "update", "progress"),
]
"""Methods timed; ones a commit lacks are skipped."""


def _resolve(path: str):
    import importlib

    module, name = path.rsplit(".", 1)
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


class Timers:
    """Inclusive seconds per part, keyed by the path of parts running (``update/critic``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.stack: list[str] = []
        self.on = False

    def wrap(self, function, name: str):
        timers = self

        def timed(*args, **kwargs):
            if not timers.on or not _main_thread():
                return function(*args, **kwargs)
            timers.stack.append(name)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                timers.seconds["/".join(timers.stack)] += time.perf_counter() - start
                timers.stack.pop()

        return timed


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def measure(task: str, init: int, steps: int, seed: int, evaluations: bool) -> dict:
    """One measurement in this process: the loop's steps per second and its parts (seconds)."""
    import dataclasses

    import torch

    from vai.context import RunContext
    from vai.machine import keep_freed_memory
    from vai.presets.rl import get_rl_preset
    from vai.rl import loop, stages
    from vai.rl.loop import Trainer
    from vai.vision.adapter import AttentionAdapter, save_adapter

    keep_freed_memory()  # as the vai command does (and its OpenMP wait policy: main() sets it before torch loads)
    timers = Timers()
    for path, method, name in PARTS:
        owner = _resolve(path)
        if owner is not None and hasattr(owner, method):
            setattr(owner, method, timers.wrap(getattr(owner, method), name))

    # The environment: its own step time (on whichever thread) and the time the loop waits for it.
    env_seconds = [0.0]
    original_start = loop.start_step

    def start_step(env, action, **options):
        started = time.perf_counter()
        finish = original_start(env, action, **options)

        def wait():
            waited = time.perf_counter()
            result = finish()
            if timers.on:
                timers.seconds["env wait"] += time.perf_counter() - waited
            return result

        if timers.on:
            timers.seconds["env wait"] += time.perf_counter() - started
        return wait

    loop.start_step = start_step
    env_class = _env_class()
    original_step = env_class.step

    def env_step(self, action):
        started = time.perf_counter()
        try:
            return original_step(self, action)
        finally:
            if timers.on:
                env_seconds[0] += time.perf_counter() - started

    env_class.step = env_step

    # The timed window: from the first act after the random phase to the end of the last step.
    window = {}
    original_evaluate, original_checkpoint = Trainer._evaluate, Trainer.checkpoint
    calls = defaultdict(list)

    def evaluate(self, state):
        if evaluations:
            started = time.perf_counter()
            original_evaluate(self, state)
            calls["evaluation"].append(time.perf_counter() - started)

    def checkpoint(self, state, action_rng):
        started = time.perf_counter()
        try:
            return original_checkpoint(self, state, action_rng)
        finally:
            calls["checkpoint"].append(time.perf_counter() - started)

    Trainer._evaluate, Trainer.checkpoint = evaluate, checkpoint
    buffer_class = _resolve("vai.rl.replay.ReplayBuffer")
    original_add = buffer_class.add

    def add(self, *args, **kwargs):
        # Called once per agent step after the step's update: the window opens after the random
        # phase's last add and closes after the last timed step's.
        result = original_add(self, *args, **kwargs)
        window["adds"] = window.get("adds", 0) + 1
        if window["adds"] == init:
            timers.on, window["start"] = True, time.perf_counter()
        elif window["adds"] == init + steps:
            window["seconds"] = time.perf_counter() - window["start"]
            timers.on = False
        return result

    buffer_class.add = add

    preset = dataclasses.replace(
        get_rl_preset("quick"),
        init_steps=init,
        init_burst=False,
        train_steps=init + steps,
        eval_every=10**9,
        eval_episodes=1,
        checkpoint_every=10**9,
    )
    with tempfile.TemporaryDirectory() as folder:
        context = RunContext.create(task, folder, seed=seed, device="cpu")
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        adapter = AttentionAdapter()
        torch.random.set_rng_state(generator_state)
        save_adapter(adapter, context.run.adapter)
        began = time.perf_counter()
        stages.train_stage(context, preset, algorithm="vai", progress=False)
        total = time.perf_counter() - began
    seconds = window["seconds"]
    parts = {name: value for name, value in timers.seconds.items()}
    parts["env"] = env_seconds[0]
    return {
        "steps_per_second": steps / seconds,
        "ms_per_step": 1000 * seconds / steps,
        "parts_ms_per_step": {name: 1000 * value / steps for name, value in parts.items()},
        "per_call_ms": {name: 1000 * statistics.median(values) for name, values in calls.items()},
        "stage_seconds": total,
        "torch_threads": torch.get_num_threads(),
    }


def _env_class():
    """The class whose ``step`` one environment step is (vai's environment base)."""
    from vai.envs import base

    for value in vars(base).values():
        if isinstance(value, type) and "step" in vars(value) and "_observe" in vars(value):
            return value
    raise RuntimeError("no environment class with step() in vai.envs.base")


def run_worker(src: Path, args: argparse.Namespace, threads: int | None = None) -> dict:
    """A measurement of the code in ``src`` in a fresh process (with ``threads``: OMP_NUM_THREADS)."""
    env = dict(os.environ, PYTHONPATH=str(src), MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--task", args.task]
    command += ["--init", str(args.init), "--steps", str(args.steps), "--seed", str(args.seed)]
    command += ["--evaluate"] if args.evaluate else []
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=src.parent)
    if done.returncode != 0:
        raise SystemExit(f"measurement of {src} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def checkouts(revisions: list[str]) -> Iterator[dict[str, Path]]:
    """The ``src`` folder of each commit in ``revisions`` (checked out into temporary ``git worktree``s,
    removed after the block), then this checkout's; keyed by label (``REV (short hash)``)."""
    sources = {}
    trees = []
    with tempfile.TemporaryDirectory() as folder:
        try:
            for index, revision in enumerate(revisions):
                tree = Path(folder) / f"against-{index}"
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision],
                    check=True,
                    capture_output=True,
                )
                trees.append(tree)
                label = subprocess.run(
                    ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True
                ).stdout.strip()
                sources[revision if revision == label else f"{revision} ({label})"] = tree / "src"
            sources["this checkout"] = ROOT / "src"
            yield sources
        finally:
            for tree in trees:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True
                )


def median_report(results: list[dict]) -> dict:
    names = {name for result in results for name in result["parts_ms_per_step"]}
    calls = {name for result in results for name in result["per_call_ms"]}
    return {
        "steps_per_second": statistics.median(r["steps_per_second"] for r in results),
        "ms_per_step": statistics.median(r["ms_per_step"] for r in results),
        "parts": {n: statistics.median(r["parts_ms_per_step"].get(n, 0.0) for r in results) for n in names},
        "calls": {n: statistics.median(r["per_call_ms"].get(n, float("nan")) for r in results) for n in calls},
        "threads": results[0]["torch_threads"],
    }


def order(names: set[str]) -> list[str]:
    """Parts in the order of PARTS (nested ones under their parent), then the environment's."""
    rank = {name: index for index, (_, _, name) in enumerate(PARTS)}
    rank.update({"env wait": -2, "env": -1})

    def key(path: str) -> tuple:
        return tuple(rank.get(part, 99) for part in path.split("/"))

    return sorted(names, key=key)


def print_table(reports: dict[str, dict]) -> None:
    labels = list(reports)
    width = max(34, *(len(label) + 2 for label in labels))
    print(f"{'':<34}" + "".join(f"{label:>{width}}" for label in labels))
    print(f"{'agent steps/s':<34}" + "".join(f"{r['steps_per_second']:>{width}.1f}" for r in reports.values()))
    print(f"{'ms per agent step':<34}" + "".join(f"{r['ms_per_step']:>{width}.2f}" for r in reports.values()))
    names = order({name for r in reports.values() for name in r["parts"]})
    for name in names:
        depth = name.count("/")
        label = "  " * (depth + 1) + name.rsplit("/", 1)[-1]
        cells = "".join(f"{r['parts'].get(name, 0.0):>{width}.2f}" for r in reports.values())
        print(f"{label:<34}" + cells)
    calls = sorted({name for r in reports.values() for name in r["calls"]})
    for name in calls:
        cells = "".join(f"{r['calls'].get(name, float('nan')):>{width}.0f}" for r in reports.values())
        print(f"{name + ' ms per call':<34}" + cells)
    print(f"{'torch threads':<34}" + "".join(f"{r['threads']:>{width}}" for r in reports.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="cartpole_balance")
    parser.add_argument("--init", type=int, default=200, help="agent steps of random actions first")
    parser.add_argument("--steps", type=int, default=300, help="agent steps timed after them")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each commit, taking turns")
    parser.add_argument(
        "--against", metavar="REV", nargs="+", default=[], help="also measure these commits, side by side"
    )
    parser.add_argument(
        "--threads",
        metavar="N",
        type=int,
        nargs="+",
        default=[],
        help="measure each commit with each of these torch thread counts (OMP_NUM_THREADS), side by side",
    )
    parser.add_argument("--evaluate", action="store_true", help="also time the evaluations at the start and end")
    parser.add_argument("--json", metavar="FILE", help="write every measurement here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        with contextlib.suppress(ImportError):  # code older than vai.threads spins as it always did
            from vai.threads import wait_passively

            wait_passively()  # as the vai command does, before torch loads
        print(json.dumps(measure(args.task, args.init, args.steps, args.seed, args.evaluate)))
        return

    with checkouts(args.against) as sources:
        runs = {
            (f"{name}, {threads} thread{'s' * (threads != 1)}" if threads else name): (src, threads)
            for name, src in sources.items()
            for threads in args.threads or [None]
        }
        results: dict[str, list[dict]] = {name: [] for name in runs}
        for repeat in range(args.repeats):
            for name, (src, threads) in runs.items():
                result = run_worker(src, args, threads)
                results[name].append(result)
                print(
                    f"[{repeat + 1}/{args.repeats}] {name}: {result['steps_per_second']:.1f} agent steps/s",
                    flush=True,
                )
    import platform

    import torch

    print(
        f"\n{args.task}, quick preset, vai: {args.init} random steps, then {args.steps} timed; medians of "
        f"{args.repeats}; torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores"
    )
    reports = {name: median_report(values) for name, values in results.items()}
    print_table(reports)
    (first_name, first), *others = reports.items()
    for name, report in others:
        print(f"{name} against {first_name}: {report['steps_per_second'] / first['steps_per_second']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
