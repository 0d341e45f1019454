"""``vai run``: the whole of VAI in one command and one run directory.

    collect -> keypoints (+ counterfactual masks) -> adapter -> mask measurement -> RL -> evaluation

Each stage is the library function its own command calls; a stage whose output is already in the run
directory is reused, and an interrupted RL stage resumes from its checkpoint, so a command cut short
(a time limit on a GPU machine) is simply run again; with other settings it is refused (only the
device, the baselines and the final evaluation's size may change). ``--fresh`` starts over.
Baselines (``--baseline sac``) train in the same directory with the same settings, differing only
in the algorithm. What the run directory holds is in :mod:`vai.run_dir`; besides the stages' files,
``run.json`` (every resolved setting), the learning curves, a video of what the policy sees in a test
mode and ``report.md``, which ties them together.

Example::

    vai run cartpole_balance --preset quick
    vai run walker_walk --preset paper --device cuda --baseline sac
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vai.atomic import write_json_atomic
from vai.context import RunContext
from vai.errors import UserError
from vai.lock import empty, owning
from vai.presets.rl import ALGORITHMS, OLDER_RECORDS, RL_PRESETS, aux_task_names, get_rl_preset
from vai.presets.settings import override
from vai.presets.vision import VISION_PRESETS, get_vision_preset
from vai.progress import step_lines
from vai.run_dir import AgentDir, RunDir
from vai.tasks import KEYPOINTS, check_mode, default_modes, get_task


def split_overrides(assignments: list[str] | None) -> tuple[list[str], list[str]]:
    """``KEY=VALUE`` pairs sorted into the vision preset's and the RL preset's (their keys are disjoint)."""
    vision_keys = {field.name for field in dataclasses.fields(VISION_PRESETS["paper"])}
    rl_keys = {field.name for field in dataclasses.fields(RL_PRESETS["paper"])}
    vision, rl = [], []
    for assignment in assignments or []:
        key = assignment.partition("=")[0]
        if key in vision_keys and key != "name":
            vision.append(assignment)
        elif key in rl_keys and key != "name":
            rl.append(assignment)
        else:
            valid = ", ".join(sorted((vision_keys | rl_keys) - {"name"}))
            raise UserError(f"cannot set {assignment!r}: KEY must be a field of the vision or RL preset: {valid}")
    return vision, rl


def default_backgrounds(data_dir) -> Path | None:
    """The first augmentation pool the data directory has (Places365, then the photos), else None
    (procedural images). Never the ``backgrounds`` stand-in, which is cut from the test footage."""
    from vai.data.registry import AUGMENTATION_POOLS
    from vai.data.store import local_file_count, resolve_data_dir

    for name in AUGMENTATION_POOLS:
        folder = Path(resolve_data_dir(data_dir)) / name
        if local_file_count(folder, cap=1):
            return folder
    return None


FREE_SETTINGS = {"device", "baselines", "rl.test_seeds", "rl.test_episodes"}
"""Settings a second ``vai run`` in the same directory may change: where it runs, which baselines it
adds, and the size of the final evaluation, which every call runs again."""


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{inner}": item for inner, item in value.items()})
        else:
            flat[key] = value
    if flat.get("backgrounds") not in (None, "procedural"):
        flat["backgrounds"] = Path(flat["backgrounds"]).name  # the image set, wherever its folder lies
    return flat


RESTART = "add --fresh to start over, or choose another --run"
"""How ``vai run`` goes on when its directory's record disagrees with the command."""


def check_same_settings(path: Path, config: dict[str, Any], free: set[str] = FREE_SETTINGS, fix: str = RESTART) -> None:
    """Refuse to continue a run directory whose ``run.json`` records other settings.

    Finished stages are reused and an unfinished agent resumes with its own settings, so going on
    under other settings would mix two configurations and make ``run.json`` describe neither.
    Settings in ``free`` may change; an RL field that a record made before it existed lacks counts
    as the value such runs had (:data:`vai.presets.rl.OLDER_RECORDS`); any other setting only one
    side knows (a field added in a later version) is not compared. ``fix`` ends each refusal: how the
    user goes on.
    """
    if not path.is_file():
        return
    try:
        recorded = _flat(json.loads(path.read_text()))
    except (OSError, ValueError):
        raise UserError(f"{path} is unreadable: {fix}") from None
    if "rl.frames" in recorded:  # run.json of a vai that counted RL training in simulator frames
        raise UserError(
            f"{path.parent} was made by an older vai whose RL settings counted frames (rl.frames), not agent "
            f"steps (rl.train_steps): {fix}"
        )
    if isinstance(recorded.get("rl.aux_tasks"), str):  # an older record's comma-separated heads
        recorded["rl.aux_tasks"] = list(aux_task_names(recorded["rl.aux_tasks"]))
    if any(key.startswith("rl.") for key in recorded):
        recorded = {**{f"rl.{key}": value for key, value in OLDER_RECORDS.items()}, **recorded}
    wanted = _flat(json.loads(json.dumps(config)))  # as it would be recorded: tuples become lists
    changed = [
        f"{key} {recorded[key]!r} -> {wanted[key]!r}"
        for key in wanted
        if key in recorded and key not in free and recorded[key] != wanted[key]
    ]
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise UserError(f"{path.parent} was made with other settings ({shown}): {fix}")


def run_pipeline(
    context: RunContext,
    preset_name: str,
    *,
    overrides: list[str] | None = None,
    baselines: list[str] | None = None,
    backgrounds: Path | None = None,
    modes: list[str] | None = None,
    log=print,
    fresh: bool = False,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Every stage of VAI for the context's task into its run directory; returns the contents of
    results.json. ``modes``: the final evaluation's (default: all of the task's). ``fresh`` deletes the
    run directory first, once the arguments are known to be valid. ``tensorboard``: the agents also
    log TensorBoard event files."""
    from vai.rl.stages import check_algorithm, check_rl_preset, eval_stage, train_stage

    task, run = context.task, context.run
    if tensorboard:
        from vai.rl.logger import check_tensorboard

        check_tensorboard()
    vision_overrides, rl_overrides = split_overrides(overrides)
    vision = override(get_vision_preset(preset_name), vision_overrides)
    rl = override(get_rl_preset(preset_name), rl_overrides)
    check_rl_preset(task, rl)
    baselines = [check_algorithm(name) for name in baselines or []]
    if "vai" in baselines:
        raise UserError("--baseline takes the algorithms compared with vai: " + ", ".join(ALGORITHMS[1:]))
    backgrounds = backgrounds or default_backgrounds(context.data_dir)
    for mode in modes or []:
        check_mode(get_task(task), mode)
    config = {
        "task": task,
        "preset": preset_name,
        "seed": context.seed,
        "device": str(context.device),
        "keypoints": KEYPOINTS[task],
        "backgrounds": str(backgrounds) if backgrounds else "procedural",
        "baselines": baselines,
        "vision": dataclasses.asdict(vision),
        "rl": dataclasses.asdict(rl),
    }
    if not fresh:
        check_same_settings(run.config, config)
    with owning(run.path):  # no other vai process writes into the run meanwhile
        if fresh:
            empty(run.path)
        else:  # again, now that no other process can write run.json
            check_same_settings(run.config, config)
        write_json_atomic(config, run.config)
        seconds: dict[str, float] = {}
        stage = timed_stages(run.path, seconds, log)
        vision_stages(context, vision, backgrounds, stage, log)

        agents = {}
        for algorithm in ["vai", *baselines]:
            out = run.agent(algorithm, context.seed)
            resume = out.checkpoint.is_file()
            stage(
                f"train {algorithm}",
                False,
                train_stage,
                context,
                rl,
                algorithm=algorithm,
                resume=resume,
                tensorboard=tensorboard,
            )
            agents[algorithm] = out
        checkpoints = [out.checkpoint for out in agents.values()]
        modes = modes or default_modes(get_task(task))
        seeds, episodes = rl.test_seeds, rl.test_episodes
        record = stage("evaluate", False, eval_stage, context, checkpoints, modes=modes, seeds=seeds, episodes=episodes)
        _finish(context, agents, config, seconds, log)
        return record


Stage = Callable[..., Any]
"""``stage(name, done, function, *args, **kwargs)``: runs ``function`` unless ``done``; the caller
logs and times it."""


def timed_stages(where: Path, seconds: dict[str, float], log=print) -> Stage:
    """A :data:`Stage` that logs each stage's start and end, or its reuse of what ``where`` holds, and
    records the seconds each one ran in ``seconds``."""

    def stage(name: str, done: bool, function: Callable[..., Any], *args, **kwargs) -> Any:
        if done:
            log(f"[{name}] reusing what {where} holds")
            return None
        log(f"[{name}] ...")
        start = time.perf_counter()
        result = function(*args, **kwargs)
        seconds[name] = round(time.perf_counter() - start, 1)
        log(f"[{name}] done in {seconds[name]:.0f} s")
        return result

    return stage


def vision_stages(context: RunContext, vision, backgrounds: Path | None, stage: Stage, log=print) -> None:
    """VAI's vision steps into the context's run directory, each skipped where its file exists: collect
    -> keypoints (+ counterfactual masks) -> adapter -> masks against ground truth (and their picture),
    the masks measured on episodes of their own seed whatever the context's."""
    from vai.vision import stages
    from vai.vision.collect import collect

    task, run = context.task, context.run
    stage(
        "collect",
        run.frames.is_file(),
        collect,
        task,
        frames=vision.collect_frames,
        out=run.frames,
        seed=context.seed,
        data_dir=context.data_dir,
        log=lambda message: log(f"  {message}"),
    )
    keypoints_log = step_lines("keypoints", vision.transporter_steps, log)
    stage(
        "keypoints", run.counterfactual.is_file(), stages.keypoints_stage, context, vision, log=keypoints_log, say=log
    )
    adapter_log = step_lines("adapter", vision.adapter_steps, log)
    adapter_done = run.adapter.is_file()
    stage("adapter", adapter_done, stages.adapter_stage, context, vision, backgrounds=backgrounds, log=adapter_log)
    measuring = dataclasses.replace(context, seed=stages.MEASUREMENT_SEED)
    mask_modes = default_modes(get_task(task), "masks")
    stage(
        "masks",
        run.masks_eval.is_file(),
        stages.masks_eval_stage,
        measuring,
        vision,
        modes=mask_modes,
        episodes=vision.mask_eval_episodes,
        steps=vision.mask_eval_steps,
    )
    if not run.masks_picture.is_file():
        stages.masks_show_stage(measuring, modes=mask_modes)


def _finish(context: RunContext, agents: dict[str, AgentDir], config, seconds, log) -> None:
    from vai.report import learning_summary, plot_curves
    from vai.rl.checkpoint import load_agent
    from vai.rl.showcase import record_showcase
    from vai.tasks import DMCTask

    task, run = context.task, context.run
    directories = {name: out.path for name, out in agents.items()}
    plot_curves(directories, run.curves, f"{task} ({config['preset']} preset)")
    agent, _ = load_agent(agents["vai"].checkpoint, context.device)
    mode = "video_hard" if isinstance(get_task(task), DMCTask) else "marble"
    record_showcase(agent, task, mode, run.showcase, steps=100, data_dir=context.data_dir)
    learned = {name: learning_summary(path) for name, path in directories.items()}
    write_report(run, task, config, seconds, learned, mode)
    log(f"wrote {run.report}")


def transporter_line(run: RunDir) -> str:
    """One sentence on the kept Transporter: its seed, its masks' health without labels, the restarts."""
    import json

    try:
        record = json.loads(run.keypoints_record.read_text())
        verdict = record["health"]["summary"]
    except (OSError, ValueError, KeyError, TypeError):
        return "Transporter: no health record (keypoints.json predates it)."
    restarts = record.get("restarts", 0)
    tried = f", after {restarts} restart{'s' * (restarts != 1)}" if restarts else ""
    return f"Transporter of seed {record.get('seed')}{tried}: {verdict} (no labels used)."


def write_report(run: RunDir, task: str, config: dict, seconds: dict, learned: dict, showcase_mode: str) -> Path:
    from vai.atomic import write_text_atomic
    from vai.report import EPISODES_COMPARED
    from vai.vision.backgrounds import describe_pool

    settings, masks, curves, video = run.config.name, run.masks_picture.name, run.curves.name, run.showcase.name
    lines = [f"# vai run: {task}", ""]
    lines.append(
        f"Preset `{config['preset']}`, seed {config['seed']}, device `{config['device']}`, "
        f"{config['keypoints']} keypoints, adapter backgrounds: {describe_pool(config['backgrounds'])}. "
        f"Every setting: [{settings}]({settings})."
    )
    lines += ["", "Stage times (this invocation): " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()), ""]
    lines += ["## Attention", "", transporter_line(run), "", run.masks_table.read_text(), "", f"![masks]({masks})", ""]
    lines += [
        f"What the policy sees in `{showcase_mode}`: [{video}]({video}) (observation | adapter mask | adapted input).",
        "",
    ]
    lines += ["## Learning", "", f"![learning curves]({curves})", ""]
    for name, summary in learned.items():
        if summary:
            line = (
                f"- {name}: evaluation return in `train` {summary['first_return']:.0f} before training -> "
                f"{summary['last_return']:.0f} after {summary['last_step']:.0f} agent steps "
                f"({summary['last_frames']:.0f} frames)"
            )
            if "first_episodes" in summary:
                line += (
                    f"; training episodes {summary['first_episodes']:.0f} (mean of the first "
                    f"{EPISODES_COMPARED}) -> {summary['last_episodes']:.0f} (mean of the last {EPISODES_COMPARED})"
                )
            lines.append(line)
    lines += ["", "## Generalisation", "", run.results_table.read_text(), ""]
    return write_text_atomic("\n".join(lines), run.report)


# -- command line -----------------------------------------------------------------------------------
def add_run_command(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="the whole pipeline: collect -> keypoints -> adapter -> RL -> eval")
    parser.add_argument("task", help="task name (see 'vai env list')")
    parser.add_argument("--preset", default="quick", help="quick (2-core CPU, minutes) or paper (VAI's, GPU)")
    parser.add_argument(
        "--set",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="override vision or RL preset fields; RL lengths count agent steps (train_steps, eval_every, ...)",
    )
    parser.add_argument("--run", type=Path, default=None, help="run directory (default: runs/TASK-PRESET)")
    parser.add_argument("--baseline", nargs="+", default=None, help="also train these for comparison: sac drq svea")
    parser.add_argument(
        "--backgrounds",
        type=Path,
        default=None,
        help="natural images (default: DATA/places365, else DATA/photos, else procedural)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", nargs="+", default=None, help="modes of the final evaluation (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--fresh", action="store_true", help="delete the run directory first")
    parser.add_argument(
        "--tensorboard", action="store_true", help="agents also log TensorBoard files (pip install vai[tensorboard])"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    get_task(args.task)
    get_vision_preset(args.preset)
    run = RunDir.at(args.run, args.task, args.preset)
    context = RunContext.create(args.task, run, seed=args.seed, device=args.device, data_dir=args.data_dir)
    run_pipeline(
        context,
        args.preset,
        overrides=args.set,
        baselines=args.baseline,
        backgrounds=args.backgrounds,
        modes=args.mode,
        fresh=args.fresh,
        tensorboard=args.tensorboard,
    )
    print(run.results_table.read_text(), end="")
    return 0
