"""The ``vai`` command: parses arguments and calls the library's stage functions.

Examples::

    vai env list
    vai env show walker_walk --mode train color_hard video_easy video_hard --out walker.png
    vai data verify
    vai data fetch video_easy
    vai collect cartpole_balance --preset quick
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from vai.errors import TrainingDiverged, UserError
from vai.machine import keep_freed_memory
from vai.threads import wait_passively


def _add_env_commands(subparsers) -> None:
    env = subparsers.add_parser("env", help="list the environments, render what the agent sees")
    actions = env.add_subparsers(dest="env_command", required=True, metavar="{list,show}")

    listing = actions.add_parser("list", help="tasks, their modes and per-task settings")
    listing.set_defaults(func=_run_env_list)

    show = actions.add_parser(
        "show",
        help="write a PNG grid of frames per mode and the ground-truth mask",
        description="Render one task in several modes (same seed and actions) to a PNG grid.",
    )
    show.add_argument("task", help="task name (see 'vai env list')")
    show.add_argument("--mode", nargs="+", default=None, help="modes to show (default: every named mode)")
    show.add_argument("--out", type=Path, default=None, help="PNG to write (default: gallery/TASK.png)")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--frames", type=int, default=4, help="frames per mode")
    show.add_argument("--every", type=int, default=10, help="environment steps between frames")
    show.add_argument("--data-dir", default=None, help="data directory (default: $VAI_DATA_DIR or the cache)")
    show.set_defaults(func=_run_env_show)


def _run_env_list(args: argparse.Namespace) -> int:
    from vai.tasks import TASKS, DMCTask, modes_for

    for name, preset in TASKS.items():
        modes = ", ".join(modes_for(preset)) + (", videoN" if isinstance(preset, DMCTask) else "")
        print(f"{name:<18} action repeat {preset.action_repeat}  modes: {modes}")
        print(f"{'':<18} foreground: {preset.foreground}")
    return 0


def _run_env_show(args: argparse.Namespace) -> int:
    from vai.envs.gallery import show
    from vai.tasks import default_modes, get_task

    preset = get_task(args.task)
    if args.frames < 1 or args.every < 1:
        raise UserError("--frames and --every must be at least 1")
    modes = args.mode or default_modes(preset)
    out = args.out or Path("gallery") / f"{args.task}.png"
    path = show(args.task, modes, out, seed=args.seed, frames=args.frames, every=args.every, data_dir=args.data_dir)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from vai import __version__
    from vai.data.commands import add_data_commands
    from vai.pipeline import add_run_command
    from vai.pretrained import add_pretrained_commands
    from vai.rl.stages import add_rl_commands
    from vai.sweep.command import add_sweep_command
    from vai.vision.collect import add_collect_command
    from vai.vision.stages import add_vision_commands

    parser = argparse.ArgumentParser(
        prog="vai",
        description="Visual attention and invariance for reinforcement learning (VAI, CVPR 2021).",
        epilog="The stage commands and 'vai run' work in the run directory runs/TASK-PRESET unless given --run.",
    )
    parser.add_argument("--version", action="version", version=f"vai {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_env_commands(subparsers)
    add_data_commands(subparsers)
    add_collect_command(subparsers)
    add_vision_commands(subparsers)
    add_rl_commands(subparsers)
    add_run_command(subparsers)
    add_sweep_command(subparsers)
    add_pretrained_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vai`` console script; returns the exit code."""
    # Behave like other Unix tools when piped into `head`: stop quietly, no BrokenPipeError.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    keep_freed_memory()
    wait_passively()  # before torch loads OpenMP: a CPU shared with other processes does not stall vai
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as error:
        print(f"vai: error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"vai: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vai: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
