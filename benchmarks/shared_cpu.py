"""vai's speed on a CPU it shares: one `vai` process alone, then two side by side, per configuration.

    python benchmarks/shared_cpu.py                          # this checkout: training and the Transporter
    python benchmarks/shared_cpu.py --against 02d33d6        # and a commit from before vai.threads
    python benchmarks/shared_cpu.py --variant OMP_NUM_THREADS=2 --variant OMP_NUM_THREADS=1 OMP_WAIT_POLICY=ACTIVE

Each measurement is a real ``vai`` command in a fresh process (``python -m vai.cli``, with the code of
``src`` or of each ``--against`` commit, checked out into a temporary ``git worktree``), in an
environment without ``OMP_NUM_THREADS`` and ``OMP_WAIT_POLICY`` unless a ``--variant`` sets them, so
that vai's own choice is what runs. Workloads (``--workloads``):

- ``train``: ``vai train cartpole_balance --algo vai --preset quick`` behind an untrained adapter, one
  episode (125 agent steps) of random actions, then ``--episodes`` episodes with an update per agent
  step (no burst of updates, no evaluation but the one at the start); the figure is the median of the
  training episodes' agent steps per second (``train.csv``'s fps over the action repeat).
- ``keypoints``: ``vai keypoints cartpole_balance --preset quick`` with ``--transporter-steps`` steps,
  on frames collected once beforehand; the figure is Transporter steps per second (its record's
  ``seconds_per_step``).

Per code, variant and workload: one process alone, then two started together on the same work, each
in its own run directory; ``--repeats`` rounds, taking turns, so that a busy moment of the machine hits
each alike. It prints the medians: alone, each of the pair, and the pair's speed as a share of alone
(of the same configuration, and of the first configuration alone).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from cpu_speed import checkouts

TASK = "cartpole_balance"
EPISODE_STEPS = 125
"""Agent steps of one cartpole episode (1000 frames, action repeat 8)."""
ACTION_REPEAT = 8
CLEARED = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")
"""Variables each measurement starts without (the test suite sets OMP_NUM_THREADS), unless a variant sets them."""


def environment(src: Path, variant: dict[str, str]) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in CLEARED}
    env.update(PYTHONPATH=str(src), MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"), **variant)
    return env


def vai_command(src: Path, variant: dict[str, str], arguments: list[str], folder: Path) -> subprocess.Popen:
    """``vai ARGUMENTS`` started in a fresh process with the code of ``src``; its output in ``folder``."""
    log = open(folder / "vai.log", "w")  # noqa: SIM115  (closed by finish())
    command = [sys.executable, "-m", "vai.cli", *arguments]
    return subprocess.Popen(command, env=environment(src, variant), stdout=log, stderr=subprocess.STDOUT, cwd=folder)


def finish(process: subprocess.Popen, folder: Path) -> None:
    process.wait()
    process.stdout and process.stdout.close()
    if process.returncode != 0:
        tail = (folder / "vai.log").read_text()[-3000:]
        raise SystemExit(f"{' '.join(map(str, process.args))} failed in {folder}:\n{tail}")


def start_train(src: Path, variant: dict[str, str], folder: Path, adapter: Path, episodes: int) -> subprocess.Popen:
    settings = [
        f"init_steps={EPISODE_STEPS}",
        "init_burst=false",
        f"train_steps={EPISODE_STEPS * (1 + episodes)}",
        "eval_every=1000000",
        "eval_episodes=1",
        "checkpoint_every=1000000",
    ]
    arguments = ["train", TASK, "--algo", "vai", "--preset", "quick", "--adapter", str(adapter)]
    return vai_command(src, variant, [*arguments, "--out", str(folder / "agent"), "--set", *settings], folder)


def train_figure(folder: Path) -> float:
    """Median agent steps per second of the training episodes (after the random one)."""
    with open(folder / "agent" / "train.csv") as handle:
        rows = list(csv.DictReader(handle))
    return statistics.median(float(row["fps"]) / ACTION_REPEAT for row in rows[1:])


def start_keypoints(src: Path, variant: dict[str, str], folder: Path, frames: Path, steps: int) -> subprocess.Popen:
    run = folder / "run"
    run.mkdir()
    for path in frames.parent.glob("frames*.npz"):
        shutil.copy(path, run / path.name)
    arguments = ["keypoints", TASK, "--preset", "quick", "--run", str(run), "--set", f"transporter_steps={steps}"]
    return vai_command(src, variant, arguments, folder)


def keypoints_figure(folder: Path) -> float:
    record = json.loads((folder / "run" / "keypoints.json").read_text())
    return 1 / record["seconds_per_step"]


def prepare(folder: Path) -> tuple[Path, Path]:
    """An untrained adapter (seed 0) and a few random-policy episodes of frames, made with this checkout."""
    import torch

    from vai.vision.adapter import AttentionAdapter, save_adapter

    torch.manual_seed(0)
    adapter = folder / "adapter.safetensors"
    save_adapter(AttentionAdapter(), adapter)
    run = folder / "collected"
    arguments = ["collect", TASK, "--preset", "quick", "--run", str(run), "--frames", "400"]
    done = subprocess.run([sys.executable, "-m", "vai.cli", *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"vai collect failed:\n{done.stderr[-3000:]}")
    return adapter, run / "frames.npz"


def measure(workload: str, src: Path, variant: dict[str, str], processes: int, args, inputs, scratch: Path) -> list:
    """``processes`` copies of the workload started together; the figure of each."""
    adapter, frames = inputs
    folders = [Path(tempfile.mkdtemp(prefix=f"{workload}-", dir=scratch)) for _ in range(processes)]
    if workload == "train":
        started = [start_train(src, variant, folder, adapter, args.episodes) for folder in folders]
    else:
        started = [start_keypoints(src, variant, folder, frames, args.transporter_steps) for folder in folders]
    for process, folder in zip(started, folders, strict=True):
        finish(process, folder)
    figures = [train_figure(folder) if workload == "train" else keypoints_figure(folder) for folder in folders]
    for folder in folders:
        shutil.rmtree(folder)
    return figures


def parse_variant(words: list[str]) -> dict[str, str]:
    variant = {}
    for word in words:
        name, equals, value = word.partition("=")
        if not equals or not name:
            raise SystemExit(f"--variant takes NAME=VALUE words, not {word!r}")
        variant[name] = value
    return variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=["train", "keypoints"], choices=["train", "keypoints"])
    parser.add_argument("--against", metavar="REV", nargs="+", default=[], help="also measure these commits")
    parser.add_argument(
        "--variant",
        metavar="NAME=VALUE",
        nargs="+",
        action="append",
        default=[],
        help="also measure this checkout with these environment variables (repeatable)",
    )
    parser.add_argument("--episodes", type=int, default=2, help="training episodes of 125 agent steps timed")
    parser.add_argument("--transporter-steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", metavar="FILE", help="write every measurement here")
    args = parser.parse_args()

    from vai.threads import usable_cores

    results: dict[tuple[str, str], dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as scratch, checkouts(args.against) as sources:
        inputs = prepare(Path(scratch))
        configurations = {name: (src, {}) for name, src in sources.items()}
        for words in args.variant:
            configurations[f"this checkout, {' '.join(words)}"] = (sources["this checkout"], parse_variant(words))
        for repeat in range(args.repeats):
            for workload in args.workloads:
                for name, (src, variant) in configurations.items():
                    figures = results.setdefault((workload, name), {"alone": [], "pair": []})
                    alone = measure(workload, src, variant, 1, args, inputs, Path(scratch))
                    pair = measure(workload, src, variant, 2, args, inputs, Path(scratch))
                    figures["alone"] += alone
                    figures["pair"] += pair
                    shown = " and ".join(f"{figure:.2f}" for figure in pair)
                    print(f"[{repeat + 1}/{args.repeats}] {workload}, {name}: alone {alone[0]:.2f}, two: {shown}")

    import torch

    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores ({usable_cores()} usable), "
        f"torch {torch.__version__}; medians of {args.repeats} rounds"
    )
    units = {"train": "agent steps/s", "keypoints": "Transporter steps/s"}
    for workload in args.workloads:
        rows = [(name, figures) for (kind, name), figures in results.items() if kind == workload]
        first_alone = statistics.median(rows[0][1]["alone"])
        print(f"\n{workload} ({units[workload]})")
        print(f"| configuration | alone | each of two at once | share of its alone | share of {rows[0][0]} alone |")
        print("|---|---|---|---|---|")
        for name, figures in rows:
            alone, pair = statistics.median(figures["alone"]), statistics.median(figures["pair"])
            print(
                f"| {name} | {alone:.2f} | {pair:.2f} (worst {min(figures['pair']):.2f}) | {pair / alone:.0%} "
                f"| {pair / first_alone:.0%} |"
            )
    if args.json:
        flat = {f"{workload} | {name}": figures for (workload, name), figures in results.items()}
        Path(args.json).write_text(json.dumps(flat, indent=1))


if __name__ == "__main__":
    main()
