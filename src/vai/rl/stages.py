"""``vai train`` and ``vai eval``: the RL stage over a run directory, as library functions and commands.

An agent's directory (default ``RUN/ALGORITHM-seedSEED`` beside the vision stages' files)::

    config.json                 resolved settings of the run
    train.csv, eval_MODE.csv    one row per episode / per evaluation
    tensorboard/                the same scalars as TensorBoard event files (with --tensorboard)
    checkpoints/last.pt         latest checkpoint (atomic); --resume continues from it
    replay/                     finished episodes, to refill the replay buffer on --resume (removed at the end)

Examples::

    vai train cartpole_balance --algo vai --preset quick          # needs RUN/adapter.safetensors
    vai train cartpole_balance --algo sac --preset paper --device cuda --resume
    vai train cartpole_balance --algo sac --preset quick --tensorboard     # needs pip install vai[tensorboard]
    vai eval runs/cartpole_balance/vai-seed0/checkpoints/last.pt --mode train color_hard video_easy
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from vai.config import (
    ALGORITHMS,
    DMCTask,
    RLPreset,
    default_modes,
    encoder_layers,
    get_rl_preset,
    get_task,
    override,
    replay_transitions,
)
from vai.errors import UserError
from vai.machine import resolve_device

CHECKPOINT = Path("checkpoints") / "last.pt"


def agent_directory(task: str, algorithm: str, seed: int, run: str | Path | None, out: str | Path | None) -> Path:
    if out:
        return Path(out)
    return (Path(run) if run else Path("runs") / task) / f"{algorithm}-seed{seed}"


def check_algorithm(algorithm: str) -> str:
    if algorithm not in ALGORITHMS:
        raise UserError(f"unknown algorithm {algorithm!r}; choose one of: {', '.join(ALGORITHMS)}")
    return algorithm


def check_rl_preset(task: str, preset: RLPreset) -> None:
    """UserError for settings that no agent can be built with (before anything is trained or written)."""
    from vai.config import IMAGE_SIZE, aux_tasks
    from vai.rl.encoder import conv_output_side

    if preset.image_size > IMAGE_SIZE:
        raise UserError(f"cannot use image_size={preset.image_size}: frames are rendered at {IMAGE_SIZE} px")
    if preset.image_size % preset.downsample:
        raise UserError(f"cannot use downsample={preset.downsample}: it must divide image_size={preset.image_size}")
    layers, _ = encoder_layers(task, preset)
    view = preset.image_size // preset.downsample
    if conv_output_side(view, layers) < 1:
        raise UserError(f"{layers} conv layers leave nothing of a {view}-px view: set fewer (num_layers)")
    aux_tasks(preset)


RESUME_SETTINGS = ("train_steps", "eval_every", "eval_episodes", "checkpoint_every")
"""Preset fields a resumed run may change (``vai train --resume --set train_steps=...`` trains on to
more agent steps); every other setting is the checkpoint's."""


def resumed_preset(recorded: RLPreset, changes: dict[str, Any] | None, checkpoint: Path, step: int) -> RLPreset:
    """The checkpoint's preset with ``changes`` applied, where :data:`RESUME_SETTINGS` allows them.

    ``step``: the agent steps the checkpoint has trained. A change of another field, fewer agent
    steps than it has trained, or more for a run that has finished (its replay buffer is not kept)
    is a :class:`UserError` naming what to do instead.
    """
    changes = {key: value for key, value in (changes or {}).items() if getattr(recorded, key) != value}
    fixed = [key for key in changes if key not in RESUME_SETTINGS]
    if fixed:
        shown = ", ".join(f"{key} {getattr(recorded, key)!r} -> {changes[key]!r}" for key in fixed)
        raise UserError(
            f"{checkpoint} was trained with other settings ({shown}); a resumed run may change only "
            f"{', '.join(RESUME_SETTINGS)}: start another --out for the rest"
        )
    train_steps = changes.get("train_steps", recorded.train_steps)
    if train_steps < step:
        raise UserError(f"{checkpoint} has trained {step} agent steps already: set train_steps to at least that")
    if step >= recorded.train_steps and train_steps > step:
        raise UserError(
            f"{checkpoint} finished its {recorded.train_steps} agent steps and kept no replay buffer, so it cannot "
            "train on: start another --out with the train_steps you want"
        )
    return dataclasses.replace(recorded, **changes)


def train_stage(
    task: str,
    algorithm: str,
    preset: RLPreset,
    out: Path,
    adapter_path: Path | None = None,
    seed: int = 0,
    device: str = "cpu",
    resume: bool = False,
    data_dir=None,
    eval_modes: list[str] | None = None,
    progress: bool | None = None,
    changes: dict[str, Any] | None = None,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Train an agent (VAI step 3 or a baseline) into ``out``; returns a summary of the run.

    On ``resume`` the checkpoint's settings hold; ``changes`` (field -> value, e.g. the command's
    ``--set``) may alter those of :data:`RESUME_SETTINGS`, and any other change is refused.
    ``tensorboard`` also writes the logged scalars as TensorBoard event files (``vai[tensorboard]``), as
    does a resumed run that has them.
    """
    from vai.envs import make_env
    from vai.rl.algorithms import algorithm_spec
    from vai.rl.checkpoint import load_agent
    from vai.rl.envthread import EnvThread, overlap_pays
    from vai.rl.episodes import refill
    from vai.rl.evaluate import training_evaluator
    from vai.rl.logger import RunLogger, check_tensorboard
    from vai.rl.loop import LoopState, Trainer
    from vai.rl.replay import ReplayBuffer
    from vai.rl.sac import SACAgent
    from vai.vision.adapter import load_adapter

    spec = get_task(task)
    check_algorithm(algorithm)
    check_rl_preset(task, preset)
    # A resumed run goes on writing the TensorBoard files it has, so TensorBoard hides the steps it drops.
    tensorboard = tensorboard or (resume and (out / "tensorboard").is_dir())
    if tensorboard:
        check_tensorboard()
    torch_device = resolve_device(device)
    checkpoint = out / CHECKPOINT
    if checkpoint.is_file() and not resume:
        raise UserError(f"{out} already holds a run: pass --resume to continue it or choose another --out")
    if resume and not checkpoint.is_file():
        raise UserError(f"nothing to resume: {checkpoint} does not exist (drop --resume to start the run)")
    adapter = None
    if resume:
        # The run's own settings win over the command line's: the checkpoint holds the adapter.
        recorded = json.loads((out / "config.json").read_text()) if (out / "config.json").is_file() else {}
        seed, eval_modes = recorded.get("seed", seed), recorded.get("eval_modes", eval_modes)
    elif algorithm_spec(algorithm).adapter:
        if adapter_path is None or not Path(adapter_path).is_file():
            raise UserError(
                f"the {algorithm} agent needs an attention adapter, not found at {adapter_path}: "
                f"run 'vai adapter {task}' first or pass --adapter"
            )
        adapter = load_adapter(adapter_path, torch_device)
    eval_modes = eval_modes or default_modes(spec, "training")

    def make_training_env():
        return make_env(task, "train", data_dir=data_dir)

    # On its own thread the environment steps while the agent updates, where a core is free for it.
    env = EnvThread(make_training_env) if overlap_pays(torch_device) else make_training_env()
    try:
        obs_shape = env.observation_space.shape
        action_dim = env.action_space.shape[0]
        layers = encoder_layers(task, preset)
        if resume:
            agent, payload = load_agent(checkpoint, torch_device, with_optimizers=True)
            if payload["task"] != task or payload["algorithm"] != algorithm:
                raise UserError(
                    f"{checkpoint} is a {payload['algorithm']} run on {payload['task']}, not {algorithm} on {task}"
                )
            state = LoopState(**payload["loop"])
            preset = resumed_preset(agent.preset, changes, checkpoint, state.step)
            agent.preset = preset
        else:
            agent = SACAgent(algorithm, obs_shape, action_dim, preset, layers, adapter, torch_device, seed)
            state = None
        transitions, stack = replay_transitions(preset), obs_shape[0] // 3
        # The ring also holds the reset frame of every episode and the oldest transition's stack.
        ring = transitions + transitions // env.unwrapped.max_episode_steps + stack + 2
        replay_device = torch_device if (preset.replay_on_device and torch_device.type == "cuda") else "cpu"
        frame_shape = agent.observe.stored_shape((3, *obs_shape[1:]))
        buffer = ReplayBuffer(ring, frame_shape, action_dim, stack, replay_device, seed, transitions)
        if state is not None and state.step < preset.train_steps:
            refill(buffer, out / "replay", state.episode)
        out.mkdir(parents=True, exist_ok=True)
        config = {
            "task": task,
            "algorithm": algorithm,
            "seed": seed,
            "device": str(torch_device),
            "adapter": str(adapter_path) if adapter is not None else None,
            "encoder_layers": list(layers),
            "eval_modes": eval_modes,
            "preset": dataclasses.asdict(preset),
            "action_repeat": spec.action_repeat,
            "replay_transitions": transitions,
            "replay_frames": ring,
            "torch": torch.__version__,
            "python": platform.python_version(),
        }
        if resume and (out / "config.json").is_file():  # the first call's record, with the changed settings
            config = {**json.loads((out / "config.json").read_text()), "preset": config["preset"]}
            config.update(replay_transitions=transitions, replay_frames=ring)
        from vai.atomic import write_json_atomic

        write_json_atomic(config, out / "config.json")
        evaluate = training_evaluator(task, eval_modes, preset.eval_episodes, data_dir)
        with RunLogger(out, tensorboard=tensorboard, resume_step=state.step if state else None) as logger:
            trainer = Trainer(
                env, agent, buffer, logger, preset, spec.action_repeat, out, task, seed, evaluate, progress
            )
            start = time.perf_counter()
            first_step = state.step if state else 0
            state = trainer.train(state)
            seconds = time.perf_counter() - start
    finally:
        env.close()
    steps = state.step - first_step
    return {
        "steps": state.step,
        "frames": state.step * spec.action_repeat,
        "episodes": state.episode,
        "seconds": seconds,
        "steps_per_second": steps / seconds if seconds > 0 else float("nan"),
        "checkpoint": str(checkpoint),
        "suite": "dmc" if isinstance(spec, DMCTask) else "drawerworld",
    }


def adapter_pool(checkpoint: Path) -> str | None:
    """The augmentation pool of the adapter a checkpoint's agent uses, as tables name it, from the
    agent's config.json and the adapter's adapter.json; None for agents without an adapter or records."""
    from vai.vision.backgrounds import describe_pool

    try:
        config = json.loads((Path(checkpoint).parent.parent / "config.json").read_text())
        adapter = config.get("adapter")
        if not adapter:
            return None
        record = json.loads((Path(adapter).parent / "adapter.json").read_text())
    except (OSError, ValueError):
        return None
    return describe_pool(record.get("backgrounds"))


def eval_stage(
    checkpoints: list[Path],
    modes: list[str] | None,
    seeds: int,
    episodes: int,
    out: Path,
    data_dir=None,
    device: str = "cpu",
    test_time_adaptation: bool = False,
) -> dict[str, Any]:
    """Evaluate checkpoints over seeds x modes; write ``out``/results.json and results.md.

    ``video_easy`` seeds whose clip is missing are not evaluated (:mod:`vai.rl.evaluate`): results.md
    says which and why under the tables, and names the seeds behind every column; results.json has the
    seed of every row (``evaluation_seeds``) and ``not_evaluated``."""
    from vai.atomic import write_json_atomic, write_text_atomic
    from vai.config import check_mode
    from vai.data.video import VideoCache
    from vai.envs.datasets import check_mode_data
    from vai.rl.checkpoint import load_agent
    from vai.rl.evaluate import evaluate
    from vai.rl.stats import markdown_table, returns_to_json, summary_to_json

    torch_device = resolve_device(device)
    loaded = [(path, *load_agent(path, torch_device)) for path in checkpoints]
    for _path, _agent, payload in loaded:  # every mode and its data checked before the first episode
        for mode in modes or default_modes(get_task(payload["task"])):
            check_mode(get_task(payload["task"]), mode)
            check_mode_data(mode, data_dir)
    cache = VideoCache()
    returns: dict[str, dict[str, dict[str, Any]]] = {}
    success: dict[str, dict[str, dict[str, Any]]] = {}
    videos: dict[str, dict[str, list[str]]] = {}
    row_seeds: dict[str, dict[str, dict[str, list[int]]]] = {}  # the evaluation seed of every row
    not_evaluated: dict[str, dict[str, dict[str, Any]]] = {}
    pools: dict[str, str] = {}
    for _path, agent, payload in loaded:
        task = payload["task"]
        chosen = modes or default_modes(get_task(task))
        results = evaluate(agent, task, chosen, seeds, episodes, data_dir, test_time_adaptation, cache)
        group = payload["algorithm"] + (" + PAD" if test_time_adaptation else "")
        pool = adapter_pool(_path)
        if pool:  # every table of a vai agent names what its adapter trained on
            pools[group] = pool
        for mode, result in results.items():
            if result.skipped:
                not_evaluated.setdefault(task, {})[mode] = {"seeds": result.skipped, "reason": result.skip_reason}
            if not result.seeds:  # no seed of the mode could be played: no row, never a zero
                continue
            _stack(returns.setdefault(group, {}).setdefault(task, {}), mode, result.returns)
            row_seeds.setdefault(group, {}).setdefault(task, {}).setdefault(mode, []).extend(result.seeds)
            if result.success is not None:
                _stack(success.setdefault(group, {}).setdefault(task, {}), mode, result.success.astype(float))
            videos.setdefault(task, {})[mode] = result.videos

    def named(group: str) -> str:
        return f"{group} (adapter backgrounds: {pools[group]})" if group in pools else group

    tables = [
        markdown_table(per_task, f"{named(group)}: episode return, mean ± std over seeds", seeds=row_seeds[group])
        for group, per_task in returns.items()
    ]
    tables += [
        markdown_table(per_task, f"{named(group)}: success rate", seeds=row_seeds[group])
        for group, per_task in success.items()
    ]
    reasons = dict.fromkeys(entry["reason"] for per_mode in not_evaluated.values() for entry in per_mode.values())
    tables += [f"{reason}\n" for reason in reasons]
    record = {
        "checkpoints": [str(path) for path in checkpoints],
        "seeds": seeds,
        "episodes": episodes,
        "test_time_adaptation": test_time_adaptation,
        "returns": {group: returns_to_json(per_task) for group, per_task in returns.items()},
        "success": {group: returns_to_json(per_task) for group, per_task in success.items()},
        "summary": {group: summary_to_json(per_task, seeds=row_seeds[group]) for group, per_task in returns.items()},
        "success_summary": {
            group: summary_to_json(per_task, seeds=row_seeds[group]) for group, per_task in success.items()
        },
        "videos": videos,
        "evaluation_seeds": row_seeds,
        "not_evaluated": not_evaluated,
        "adapter_backgrounds": pools,
    }
    write_json_atomic(record, out / "results.json")
    write_text_atomic("\n".join(tables), out / "results.md")
    return record


def _stack(per_mode: dict, mode: str, array) -> None:
    import numpy as np

    per_mode[mode] = np.concatenate([per_mode[mode], array]) if mode in per_mode else array


# -- command line -----------------------------------------------------------------------------------
def add_rl_commands(subparsers: Any) -> None:
    train = subparsers.add_parser("train", help="train an agent: vai (adapter + SAC + PAD) or a baseline")
    train.add_argument("task", help="task name (see 'vai env list')")
    train.add_argument("--algo", default="vai", help=f"one of {', '.join(ALGORITHMS)}")
    train.add_argument("--preset", default="paper", help="RL preset: quick (CPU) or paper (PAD / VAI, GPU)")
    train.add_argument(
        "--set",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="override preset fields; lengths count agent steps (e.g. train_steps=100000 eval_every=10000)",
    )
    train.add_argument("--run", default=None, help="run directory of the vision stages (default: runs/TASK)")
    train.add_argument(
        "--adapter", type=Path, default=None, help="adapter checkpoint (default: RUN/adapter.safetensors)"
    )
    train.add_argument("--out", default=None, help="agent directory (default: RUN/ALGO-seedSEED)")
    train.add_argument("--eval-mode", nargs="+", default=None, help="modes evaluated during training (default: train)")
    train.add_argument("--device", default="cpu")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--data-dir", default=None)
    train.add_argument(
        "--tensorboard", action="store_true", help="also log TensorBoard event files (pip install vai[tensorboard])"
    )
    train.set_defaults(func=_run_train)

    evaluate = subparsers.add_parser("eval", help="evaluate checkpoints over seeds x modes (VAI's protocol)")
    evaluate.add_argument("checkpoints", nargs="+", type=Path, help="checkpoints (RUN/ALGO-seedN/checkpoints/last.pt)")
    evaluate.add_argument("--mode", nargs="+", default=None, help="modes (default: all of the task's)")
    evaluate.add_argument("--seeds", type=int, default=10)
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument("--tta", action="store_true", help="PAD's test-time adaptation of the shared encoder")
    evaluate.add_argument(
        "--out", type=Path, default=None, help="folder for results.json/.md (default: beside the first checkpoint)"
    )
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--data-dir", default=None)
    evaluate.set_defaults(func=_run_eval)


def _run_train(args: argparse.Namespace) -> int:
    get_task(args.task)
    algorithm = check_algorithm(args.algo)
    preset = override(get_rl_preset(args.preset), args.set)
    out = agent_directory(args.task, algorithm, args.seed, args.run, args.out)
    adapter = args.adapter or (Path(args.run) if args.run else Path("runs") / args.task) / "adapter.safetensors"
    changes = {key: getattr(preset, key) for key in (item.partition("=")[0] for item in args.set or [])}
    summary = train_stage(
        args.task,
        algorithm,
        preset,
        out,
        adapter,
        args.seed,
        args.device,
        args.resume,
        args.data_dir,
        args.eval_mode,
        changes=changes,
        tensorboard=args.tensorboard,
    )
    print(
        f"trained {summary['steps']} agent steps ({summary['frames']} frames) in {summary['seconds']:.0f} s "
        f"({summary['steps_per_second']:.1f} steps/s); checkpoint {summary['checkpoint']}"
    )
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    if args.seeds < 1 or args.episodes < 1:
        raise UserError("--seeds and --episodes must be at least 1")
    out = args.out or args.checkpoints[0].parent.parent
    eval_stage(args.checkpoints, args.mode, args.seeds, args.episodes, out, args.data_dir, args.device, args.tta)
    print((out / "results.md").read_text(), end="")
    print(f"wrote {out / 'results.json'}")
    return 0
