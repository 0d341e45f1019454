"""``vai train`` and ``vai eval``: the RL stage over a run directory, as library functions and commands.

An agent trains into its own directory (:class:`vai.run_dir.AgentDir`, default ``RUN/ALGORITHM-seedSEED``
beside the vision stages' files): its settings, one CSV per metric group (TensorBoard files with
``--tensorboard``), ``checkpoints/last.pt``, from which ``--resume`` continues, and while it is
unfinished the episodes that refill its replay buffer on resume.

Examples::

    vai train cartpole_balance --algo vai --preset quick          # needs RUN/adapter.safetensors
    vai train cartpole_balance --algo sac --preset paper --device cuda --resume
    vai train cartpole_balance --algo sac --preset quick --tensorboard     # needs pip install vai[tensorboard]
    vai train cartpole_balance --algo vai --attention oracle --preset quick   # vai+oracle: true masks, no adapter
    vai eval runs/cartpole_balance-quick/vai-seed0/checkpoints/last.pt --mode train color_hard video_easy
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vai.context import RunContext
from vai.errors import UserError, WriteFailed
from vai.lock import owning, refuse_if_held
from vai.presets.rl import ALGORITHMS, RLPreset, encoder_layers, get_rl_preset, replay_transitions
from vai.presets.settings import override
from vai.rl.algorithms import ATTENTION
from vai.run_dir import AgentDir, RunDir
from vai.tasks import DMCTask, check_mode, default_modes, get_task

if TYPE_CHECKING:
    from vai.rl.loop import LoopState
    from vai.rl.replay import ReplayBuffer
    from vai.rl.sac import SACAgent


def check_algorithm(algorithm: str, attention: str = "learned") -> str:
    """The algorithm's name seeing through ``attention`` (:func:`vai.rl.algorithms.with_attention`), or a
    UserError naming the choices."""
    from vai.rl.algorithms import algorithm_spec, with_attention

    try:
        return algorithm_spec(with_attention(algorithm, attention)).name
    except ValueError as error:
        raise UserError(str(error)) from None


def check_rl_preset(task: str, preset: RLPreset) -> None:
    """UserError for settings that no agent can be built with (before anything is trained or written)."""
    from vai.rl.encoder import conv_output_side
    from vai.tasks import IMAGE_SIZE

    if preset.image_size > IMAGE_SIZE:
        raise UserError(f"cannot use image_size={preset.image_size}: frames are rendered at {IMAGE_SIZE} px")
    if preset.image_size % preset.downsample:
        raise UserError(f"cannot use downsample={preset.downsample}: it must divide image_size={preset.image_size}")
    layers, _ = encoder_layers(task, preset)
    view = preset.image_size // preset.downsample
    if conv_output_side(view, layers) < 1:
        raise UserError(f"{layers} conv layers leave nothing of a {view}-px view: set fewer (num_layers)")


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


@dataclasses.dataclass(frozen=True)
class Start:
    """What a training run starts from: a new agent, or a checkpoint's agent and loop state."""

    agent: SACAgent
    state: LoopState | None
    """The loop's counters and random states; None for a new run."""
    context: RunContext
    """The command's context with the run's own seed."""
    eval_modes: list[str]
    adapter: Path | None = None
    """The adapter file a new agent was built with."""


def train_stage(
    context: RunContext,
    preset: RLPreset,
    *,
    algorithm: str = "vai",
    out: AgentDir | None = None,
    adapter: Path | None = None,
    resume: bool = False,
    eval_modes: list[str] | None = None,
    changes: dict[str, Any] | None = None,
    progress: bool | None = None,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Train an agent (VAI step 3 or a baseline) into ``out`` (default: the run's directory of
    ``algorithm`` and the seed); returns a summary of the run.

    ``adapter``: the adapter a ``vai`` agent sees through (default: the run's). On ``resume`` the
    checkpoint's settings hold; ``changes`` (field -> value, e.g. the command's ``--set``) may alter
    those of :data:`RESUME_SETTINGS`, and any other change is refused. ``eval_modes``: the modes
    evaluated during training (default: ``train``). ``tensorboard`` also writes the logged scalars as
    TensorBoard event files (``vai[tensorboard]``), as does a resumed run that has them.
    """
    from vai.rl.envthread import EnvThread, overlap_pays
    from vai.threads import torch_threads

    spec = get_task(context.task)
    out = out or context.run.agent(algorithm, context.seed)
    adapter = adapter or context.run.adapter
    eval_modes = eval_modes or default_modes(spec, "training")
    # A resumed run goes on writing the TensorBoard files it has, so TensorBoard hides the steps it drops.
    tensorboard = tensorboard or (resume and out.tensorboard.is_dir())
    check_training(context, preset, algorithm, out, adapter, resume, tensorboard, eval_modes)
    # Loaded before the directory is made and locked: a damaged adapter leaves nothing behind.
    frozen = frozen_adapter(context, algorithm, adapter) if not resume else None

    def make_training_env():
        return training_env(context, algorithm)

    with owning(out.path), resumable_on_failed_write(out), torch_threads(training_threads(out, resume)):
        check_agent_dir(out, resume)  # again, now that no other process can write into it
        start = resume_agent(context, algorithm, out, changes, eval_modes) if resume else None
        # On its own thread the environment steps while the agent updates, where a core is free for it.
        env = EnvThread(make_training_env) if overlap_pays(context.device) else make_training_env()
        try:
            if start is None:  # a new agent takes its shapes from the environment
                start = new_agent(context, preset, algorithm, frozen, adapter, env, eval_modes)
            first_step = start.state.step if start.state else 0  # read now: training moves the state on
            buffer = replay_buffer(start, env, out)
            write_agent_config(start, buffer, out, environment_thread=isinstance(env, EnvThread))
            state, seconds = train_agent(start, env, buffer, out, progress, tensorboard)
        finally:
            env.close()
    steps = state.step - first_step
    return {
        "steps": state.step,
        "frames": state.step * spec.action_repeat,
        "episodes": state.episode,
        "seconds": seconds,
        "steps_per_second": steps / seconds if seconds > 0 else float("nan"),
        "checkpoint": str(out.checkpoint),
        "suite": "dmc" if isinstance(spec, DMCTask) else "drawerworld",
    }


def training_env(context: RunContext, algorithm: str):
    """The environment ``algorithm`` trains on: the task in ``train`` mode; for an oracle row
    (``ALGORITHM+oracle``) its observations are true mask x frame."""
    from vai.envs import make_env
    from vai.rl.algorithms import algorithm_spec

    return make_env(context.task, "train", data_dir=context.data_dir, oracle=algorithm_spec(algorithm).oracle)


def check_training(
    context: RunContext,
    preset: RLPreset,
    algorithm: str,
    out: AgentDir,
    adapter: Path,
    resume: bool,
    tensorboard: bool,
    eval_modes: list[str],
) -> None:
    """UserError for a training that cannot start, before anything is built or written."""
    from vai.envs.datasets import check_mode_data
    from vai.rl.algorithms import algorithm_spec
    from vai.rl.logger import check_tensorboard

    check_algorithm(algorithm)
    check_rl_preset(context.task, preset)
    if tensorboard:
        check_tensorboard()
    if not resume:  # a resumed run evaluates in the modes it recorded
        for mode in eval_modes:
            check_mode(get_task(context.task), mode)
            check_mode_data(mode, context.data_dir)
    check_agent_dir(out, resume)
    if not resume and algorithm_spec(algorithm).adapter and not Path(adapter).is_file():
        raise UserError(
            f"the {algorithm} agent needs an attention adapter, not found at {adapter}: "
            f"run 'vai adapter {context.task}' first or pass --adapter"
        )


def check_agent_dir(out: AgentDir, resume: bool) -> None:
    """UserError unless ``out`` holds a checkpoint exactly when the run resumes one; a run that another
    process is training (before its first checkpoint too) is named as such."""
    if out.checkpoint.is_file() and not resume:
        raise UserError(f"{out.path} already holds a run: pass --resume to continue it or choose another --out")
    if resume and not out.checkpoint.is_file():
        refuse_if_held(out.path)
        if out.config.is_file():  # started, and stopped before its first checkpoint
            raise UserError(
                f"nothing to resume: the run in {out.path} stopped before its first checkpoint "
                f"({out.checkpoint}): the same command without --resume starts it afresh"
            )
        raise UserError(f"nothing to resume: {out.checkpoint} does not exist (drop --resume to start the run)")


@contextlib.contextmanager
def resumable_on_failed_write(out: AgentDir) -> Iterator[None]:
    """A block whose failed write (a full disk...) says also how to go on from the last good checkpoint."""
    try:
        yield
    except WriteFailed as error:
        if not out.checkpoint.is_file():
            raise
        raise WriteFailed(
            f"{error}; the last checkpoint {out.checkpoint} is intact: --resume goes on from it"
        ) from None


def resume_agent(
    context: RunContext, algorithm: str, out: AgentDir, changes: dict[str, Any] | None, eval_modes: list[str]
) -> Start:
    """The agent, loop state and settings of the checkpoint in ``out``: the run's own seed and
    evaluation modes win over the command line's, and its preset takes only ``changes`` that
    :func:`resumed_preset` allows."""
    from vai.rl.checkpoint import load_agent
    from vai.rl.loop import LoopState

    recorded = recorded_config(out)
    context = dataclasses.replace(context, seed=recorded.get("seed", context.seed))
    eval_modes = recorded.get("eval_modes", eval_modes)
    agent, payload = load_agent(out.checkpoint, context.device, with_optimizers=True)
    if payload["task"] != context.task or payload["algorithm"] != algorithm:
        raise UserError(
            f"{out.checkpoint} is a {payload['algorithm']} run on {payload['task']}, not {algorithm} on {context.task}"
        )
    state = LoopState(**payload["loop"])
    agent.preset = resumed_preset(agent.preset, changes, out.checkpoint, state.step)
    return Start(agent, state, context, eval_modes)


def frozen_adapter(context: RunContext, algorithm: str, adapter: Path):
    """The adapter file ``adapter`` loaded where ``algorithm`` sees through one (None otherwise); a
    UserError for a damaged or foreign file."""
    from vai.rl.algorithms import algorithm_spec
    from vai.vision.adapter import load_adapter

    return load_adapter(adapter, context.device) if algorithm_spec(algorithm).adapter else None


def new_agent(
    context: RunContext, preset: RLPreset, algorithm: str, frozen, adapter: Path, env, eval_modes: list[str]
) -> Start:
    """An untrained agent for ``env``'s observations and actions, seeing through the ``frozen`` adapter
    (loaded from ``adapter``) where the algorithm uses one (:func:`frozen_adapter`)."""
    from vai.rl.sac import SACAgent

    obs_shape, action_dim = env.observation_space.shape, env.action_space.shape[0]
    layers = encoder_layers(context.task, preset)
    agent = SACAgent(algorithm, obs_shape, action_dim, preset, layers, frozen, context.device, context.seed)
    return Start(agent, None, context, eval_modes, Path(adapter) if frozen is not None else None)


def training_threads(out: AgentDir, resume: bool) -> int:
    """torch's CPU threads for a training (:mod:`vai.threads`): a resumed run's recorded count, so that it
    computes the sums an uninterrupted run would; else the usable cores less one for the environment's
    thread; ``OMP_NUM_THREADS`` where set."""
    from vai.threads import explicit_threads, stage_threads

    recorded = recorded_config(out).get("torch_threads") if resume and explicit_threads() is None else None
    return recorded if isinstance(recorded, int) and recorded > 0 else stage_threads(reserved=1)


def replay_buffer(start: Start, env, out: AgentDir) -> ReplayBuffer:
    """The agent's replay buffer, sized by its preset; a resumed unfinished run's refilled from ``out``."""
    from vai.rl.episodes import refill
    from vai.rl.replay import ReplayBuffer

    agent, preset, device = start.agent, start.agent.preset, start.context.device
    obs_shape = env.observation_space.shape
    transitions, stack = replay_transitions(preset), obs_shape[0] // 3
    # The ring also holds the reset frame of every episode and the oldest transition's stack.
    ring = transitions + transitions // env.unwrapped.max_episode_steps + stack + 2
    replay_device = device if (preset.replay_on_device and device.type == "cuda") else "cpu"
    frame_shape = agent.observe.stored_shape((3, *obs_shape[1:]))
    buffer = ReplayBuffer(ring, frame_shape, agent.action_dim, stack, replay_device, start.context.seed, transitions)
    if start.state is not None and start.state.step < preset.train_steps:
        refill(buffer, out.replay, start.state.episode)
    return buffer


def recorded_config(out: AgentDir) -> dict[str, Any]:
    """The settings ``out``'s config.json records (none where it is absent), or a UserError naming the
    damaged file and the fix."""
    if not out.config.is_file():
        return {}
    try:
        recorded = json.loads(out.config.read_text())
    except (OSError, ValueError) as error:
        recorded, why = None, " ".join(f"{type(error).__name__}: {error}".split())
    else:
        why = "not a JSON object"
    if not isinstance(recorded, dict):
        raise UserError(
            f"{out.config} is damaged ({why}): delete it to resume with this command's --seed and --eval-mode, "
            "or choose another --out to start afresh"
        )
    return recorded


def write_agent_config(start: Start, buffer: ReplayBuffer, out: AgentDir, *, environment_thread: bool) -> None:
    """``out``'s config.json: the resolved settings and the CPU threads the run computes on; a resumed
    run keeps its first call's record, with the settings it may change."""
    import torch

    from vai.atomic import write_json_atomic

    agent, context = start.agent, start.context
    sizes = {
        "replay_transitions": buffer.max_transitions,
        "replay_frames": buffer.capacity,
        "torch_threads": torch.get_num_threads(),
        "environment_thread": environment_thread,
    }
    if start.state is not None and out.config.is_file():
        config = {**recorded_config(out), "preset": dataclasses.asdict(agent.preset), **sizes}
    else:
        config = {
            "task": context.task,
            "algorithm": agent.algorithm,
            "seed": context.seed,
            "device": str(context.device),
            "adapter": str(start.adapter) if start.adapter is not None else None,
            "encoder_layers": list(agent.layers),
            "eval_modes": start.eval_modes,
            "preset": dataclasses.asdict(agent.preset),
            "action_repeat": get_task(context.task).action_repeat,
            **sizes,
            "torch": torch.__version__,
            "python": platform.python_version(),
        }
    out.path.mkdir(parents=True, exist_ok=True)
    write_json_atomic(config, out.config)


def train_agent(
    start: Start, env, buffer: ReplayBuffer, out: AgentDir, progress: bool | None, tensorboard: bool
) -> tuple[LoopState, float]:
    """Run the training loop from ``start`` to the preset's ``train_steps``; the final loop state and
    the seconds it took."""
    from vai.rl.evaluate import training_evaluator
    from vai.rl.logger import RunLogger
    from vai.rl.loop import Trainer

    agent, context, preset = start.agent, start.context, start.agent.preset
    action_repeat = get_task(context.task).action_repeat
    evaluate = training_evaluator(context.task, start.eval_modes, preset.eval_episodes, context.data_dir)
    resume_step = start.state.step if start.state else None
    with RunLogger(out.path, tensorboard=tensorboard, resume_step=resume_step) as logger:
        trainer = Trainer(
            env=env,
            agent=agent,
            buffer=buffer,
            logger=logger,
            preset=preset,
            action_repeat=action_repeat,
            directory=out.path,
            task=context.task,
            seed=context.seed,
            evaluate=evaluate,
            progress=progress,
        )
        began = time.perf_counter()
        state = trainer.train(start.state)
        return state, time.perf_counter() - began


def adapter_pool(checkpoint: Path) -> str | None:
    """The augmentation pool of the adapter a checkpoint's agent uses, as tables name it, from the
    agent's config.json and the adapter's training record; None for agents without an adapter or records."""
    from vai.vision.stages import adapter_backgrounds

    try:
        adapter = json.loads(AgentDir.holding(checkpoint).config.read_text()).get("adapter")
    except (OSError, ValueError):
        return None
    return adapter_backgrounds(RunDir(Path(adapter).parent)) if adapter else None


def eval_stage(
    context: RunContext,
    checkpoints: list[Path],
    *,
    modes: list[str] | None = None,
    seeds: int = 10,
    episodes: int = 10,
    test_time_adaptation: bool = False,
) -> dict[str, Any]:
    """Evaluate checkpoints over seeds x modes (default: all of each one's task); write the results
    into the context's run directory (results.json and results.md). Each checkpoint names its task.

    ``video_easy`` seeds whose clip is missing are not evaluated (:mod:`vai.rl.evaluate`): results.md
    says which and why under the tables, and names the seeds behind every column; results.json has the
    seed of every row (``evaluation_seeds``) and ``not_evaluated``."""
    from vai.envs.datasets import check_mode_data
    from vai.rl.checkpoint import load_agent

    loaded = [(path, *load_agent(path, context.device)) for path in checkpoints]
    for _path, _agent, payload in loaded:  # every mode and its data checked before the first episode
        for mode in modes or default_modes(get_task(payload["task"])):
            check_mode(get_task(payload["task"]), mode)
            check_mode_data(mode, context.data_dir)
    with owning(context.run.path):
        return _evaluate_checkpoints(context, loaded, modes, seeds, episodes, test_time_adaptation)


def _evaluate_checkpoints(
    context: RunContext, loaded: list, modes: list[str] | None, seeds: int, episodes: int, test_time_adaptation: bool
) -> dict[str, Any]:
    """:func:`eval_stage`'s evaluation of its ``loaded`` (path, agent, contents) checkpoints, and its files."""
    from vai.atomic import write_json_atomic, write_text_atomic
    from vai.data.video import VideoCache
    from vai.rl.evaluate import evaluate
    from vai.rl.stats import markdown_table, returns_to_json, summary_to_json

    data_dir = context.data_dir
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
        "checkpoints": [str(path) for path, _agent, _payload in loaded],
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
    write_json_atomic(record, context.run.results)
    write_text_atomic("\n".join(tables), context.run.results_table)
    return record


def _stack(per_mode: dict, mode: str, array) -> None:
    import numpy as np

    per_mode[mode] = np.concatenate([per_mode[mode], array]) if mode in per_mode else array


# -- command line -----------------------------------------------------------------------------------
def add_rl_commands(subparsers: Any) -> None:
    train = subparsers.add_parser("train", help="train an agent: vai (adapter + SAC + PAD) or a baseline")
    train.add_argument("task", help="task name (see 'vai env list')")
    train.add_argument("--algo", default="vai", help=f"one of {', '.join(ALGORITHMS)}")
    train.add_argument(
        "--attention",
        choices=ATTENTION,
        default="learned",
        help="oracle: the agent sees true mask x observation (MuJoCo's segmentation), trains as ALGO+oracle",
    )
    train.add_argument("--preset", default="paper", help="RL preset: quick (CPU) or paper (PAD / VAI, GPU)")
    train.add_argument(
        "--set",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="override preset fields; lengths count agent steps (e.g. train_steps=100000 eval_every=10000)",
    )
    train.add_argument("--run", default=None, help="run directory of the vision stages (default: runs/TASK-PRESET)")
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
    run = RunDir.at(args.run, args.task, args.preset)
    context = RunContext.create(args.task, run, seed=args.seed, device=args.device, data_dir=args.data_dir)
    algorithm = check_algorithm(args.algo, args.attention)
    preset = override(get_rl_preset(args.preset), args.set)
    changes = {key: getattr(preset, key) for key in (item.partition("=")[0] for item in args.set or [])}
    summary = train_stage(
        context,
        preset,
        algorithm=algorithm,
        out=AgentDir(Path(args.out)) if args.out else None,
        adapter=args.adapter,
        resume=args.resume,
        eval_modes=args.eval_mode,
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
    out = RunDir(args.out) if args.out else RunDir(AgentDir.holding(args.checkpoints[0]).path)
    context = RunContext.create(None, out, device=args.device, data_dir=args.data_dir)
    modes, seeds, episodes = args.mode, args.seeds, args.episodes
    eval_stage(context, args.checkpoints, modes=modes, seeds=seeds, episodes=episodes, test_time_adaptation=args.tta)
    print(out.results_table.read_text(), end="")
    print(f"wrote {out.results}")
    return 0
