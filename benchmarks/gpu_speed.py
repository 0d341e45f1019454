"""The speed figures of a `paper` run on one device, with the card and the versions.

    python benchmarks/gpu_speed.py                                   # on a GPU: paper, walker_walk
    python benchmarks/gpu_speed.py --device cpu --preset quick --task cartpole_balance \\
        --init 20 --steps 10 --updates 1 --repeats 3 --runs 1 2      # the same at toy sizes

It prints, for the ``vai`` algorithm on ``--task`` with ``--preset``:

- *one run*: ms per agent step of the real training loop in steady state (acting with the adapter,
  the environment on its own thread, storing, one update per step), over ``--steps`` agent steps
  after ``--init`` (200) random ones, and what 500,000 agent steps take at that pace;
- *N runs at once*: N processes (seeds 0 .. N-1) each timing the same loop, for each N of
  ``--runs``; the aggregate is the sum of their agent steps per second (each process times only its
  own steady state, so start-up is left out);
- *update alone*: ms per update from a replay of real frames, eager, then with the update
  ``torch.compile``-d (``--no-compile`` skips it; a failure to compile is printed, not raised);
- *one render*: ms per frame drawn by the environment (no physics);
- *adapter on one frame*: ms per forward pass of the attention adapter on one frame.

Every figure is a median. Targets (issue 20, on one H100): <= 3.6 ms per agent step for one paper
walker_walk run; the 11-task table (500k agent steps each) in <= 24 hours of aggregate throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_speed import filled_buffer, make_agent, sync, training_fps, update_seconds  # noqa: E402

import vai  # noqa: E402
from vai.machine import cpu_name, keep_freed_memory  # noqa: E402
from vai.presets.rl import get_rl_preset  # noqa: E402
from vai.tasks import get_task  # noqa: E402
from vai.vision.adapter import AttentionAdapter  # noqa: E402

PAPER_STEPS = 500_000
TABLE_TASKS = 11


def median_ms(function, repeats: int, device: torch.device) -> float:
    function()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        function()
        sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def one_run(args: argparse.Namespace, device: torch.device) -> float:
    """ms per agent step of the loop in steady state."""
    preset = get_rl_preset(args.preset)
    frames_per_second = training_fps("vai", args.task, preset, args.steps, device, warm=args.init)
    return 1000 * get_task(args.task).action_repeat / frames_per_second


def concurrent(args: argparse.Namespace, count: int) -> list[float]:
    """Agent steps per second of each of ``count`` processes timing the loop at once."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--device", args.device]
    command += ["--preset", args.preset, "--task", args.task, "--steps", str(args.steps), "--init", str(args.init)]
    workers = [
        subprocess.Popen(command + ["--seed", str(seed)], stdout=subprocess.PIPE, text=True) for seed in range(count)
    ]
    rates = []
    for worker in workers:
        out, _ = worker.communicate()
        if worker.returncode != 0:
            raise SystemExit(f"a concurrent run failed (exit {worker.returncode})")
        rates.append(1000 / json.loads(out.strip().splitlines()[-1])["ms_per_step"])
    return rates


def update_figures(args: argparse.Namespace, device: torch.device) -> tuple[float, str]:
    """(eager ms per update, compiled ms per update or why there is none)."""
    preset = get_rl_preset(args.preset)
    agent = make_agent("vai", args.task, preset, device)
    buffer = filled_buffer(args.task, 300, device, agent)
    eager = 1000 * update_seconds(agent, buffer, args.updates, device)
    if args.no_compile:
        return eager, "skipped"
    try:
        agent.update = torch.compile(agent.update)
        started = time.perf_counter()
        compiled = 1000 * update_seconds(agent, buffer, args.updates, device)
        return eager, f"{compiled:.2f} (compiling and warm-up {time.perf_counter() - started:.0f} s)"
    except Exception as error:  # noqa: BLE001 - a figure that cannot be had is printed, not raised
        return eager, f"n/a ({type(error).__name__}: {str(error).splitlines()[0][:120]})"


def render_ms(args: argparse.Namespace, device: torch.device) -> float:
    env = vai.make_env(args.task, "train", seed=0)
    try:
        env.reset(seed=0)
        inner = env.unwrapped
        return median_ms(inner._draw, args.repeats, torch.device("cpu"))
    finally:
        env.close()


def adapter_ms(args: argparse.Namespace, device: torch.device) -> float:
    adapter = AttentionAdapter(size=get_rl_preset(args.preset).image_size).to(device).eval()
    frame = torch.rand(1, 3, adapter.size, adapter.size, device=device)
    with torch.inference_mode():
        return median_ms(lambda: adapter(frame), args.repeats, device)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        card = torch.cuda.get_device_name(device)
        cuda = f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    else:
        card, cuda = cpu_name(), ""
    import mujoco

    return (
        f"{card}; {os.cpu_count()} CPU cores; torch {torch.__version__}{cuda}; mujoco {mujoco.__version__}; "
        f"python {platform.python_version()}; {torch.get_num_threads()} torch threads"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--task", default="walker_walk")
    parser.add_argument("--steps", type=int, default=1000, help="timed agent steps per run")
    parser.add_argument("--init", type=int, default=200, help="random agent steps before them")
    parser.add_argument("--updates", type=int, default=20, help="timed update pairs")
    parser.add_argument("--repeats", type=int, default=50, help="timed renders and adapter passes")
    parser.add_argument("--runs", type=int, nargs="*", default=[1, 2, 4, 8], help="concurrent runs to time")
    parser.add_argument("--no-compile", action="store_true", help="leave out the compiled update")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    keep_freed_memory()  # as the vai command does
    device = torch.device(args.device)
    if args.worker:
        torch.manual_seed(args.seed)
        print(json.dumps({"ms_per_step": one_run(args, device)}))
        return
    print(f"device {device}: {describe(device)}")
    print(f"vai, {args.preset} preset, {args.task}", flush=True)
    step = one_run(args, device)
    hours = PAPER_STEPS * step / 1000 / 3600
    print(
        f"one run: {step:.2f} ms per agent step ({1000 / step:.1f} agent steps/s); "
        f"{PAPER_STEPS:,} agent steps in {hours:.2f} h",
        flush=True,
    )
    for count in args.runs:
        rates = concurrent(args, count)
        total = sum(rates)
        table = TABLE_TASKS * PAPER_STEPS / total / 3600
        print(
            f"{count} runs at once: {total:.1f} agent steps/s in all ({', '.join(f'{r:.1f}' for r in rates)}); "
            f"the {TABLE_TASKS}-task table in {table:.1f} h",
            flush=True,
        )
    eager, compiled = update_figures(args, device)
    print(f"update alone: eager {eager:.2f} ms, compiled {compiled}", flush=True)
    print(f"one render: {render_ms(args, device):.2f} ms", flush=True)
    print(f"adapter on one frame: {adapter_ms(args, device):.3f} ms", flush=True)


if __name__ == "__main__":
    main()
