"""Pretrained agents: each finished run of a committed sweep as a bundle a user loads in one call.

A bundle is a folder ``NAME/`` (``TASK-ALGORITHM-seedS``) of three files:

- ``agent.safetensors``: what acting needs, the critic's conv layers (the actor reuses them), the
  actor and, for ``vai``, the frozen adapter; its metadata holds the agent's construction arguments
  (algorithm, task, RL preset, shapes, encoder layers, adapter architecture) and the weights' SHA-256.
- ``card.json``: task, algorithm, seed, budget (agent steps and frames), the returns per mode over the
  sweep's final evaluation (mean, std over evaluation seeds, the worst seed), the first episode of
  each mode (which :func:`load`'s agent replays to the same return), the resolved vision and RL
  settings, the adapter's and the weights file's SHA-256, the commit, machine and sweep command.
- ``README.md``: the card in words.

Bundles live in the checkout's ``pretrained/`` folder, or in the folder ``$VAI_PRETRAINED`` names (a
copy of that folder, for an installed vai). Example::

    import vai.pretrained
    agent = vai.pretrained.load("cartpole_balance", "vai", seed=0)
    env = agent.make_env("video_hard")          # an oracle row's environment masks by the true masks
    obs, _ = env.reset(seed=0)
    obs, reward, *_ = env.step(agent.act(obs))

    vai pretrained list
    vai pretrained show cartpole_balance-vai-seed0
    vai pretrained check cartpole_balance-vai-seed0     # replays each mode's first episode against the card
    vai pretrained export results/sweeps/ladder-cartpole_balance-quick     # every finished run with a checkpoint
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vai.checkpoints import CheckpointFormat
from vai.errors import UserError

ENV_VAR = "VAI_PRETRAINED"
"""A folder of bundles, instead of the checkout's ``pretrained/``."""

BUNDLE = CheckpointFormat(
    name="vai.pretrained",
    version=1,
    kind="pretrained agent",
    fix="fetch the bundle again (git checkout pretrained/) or export it anew (vai pretrained export SWEEP)",
    changes="the first bundle format",
)
"""``agent.safetensors``: the acting part of an agent, its construction arguments in the metadata."""

WEIGHTS, CARD, README = "agent.safetensors", "card.json", "README.md"

CHECK_TOLERANCE = 1e-3
"""``vai pretrained check``: a replayed return within this share of the card's is the same (GL drivers may
render the last bit of a pixel differently)."""


def pretrained_folder() -> Path:
    """Where the bundles are: ``$VAI_PRETRAINED``, else the checkout's ``pretrained/`` folder."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return Path(__file__).resolve().parents[2] / "pretrained"


@dataclass(frozen=True)
class Bundle:
    """One bundle folder and its card."""

    path: Path
    card: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    def agent(self, device: str = "cpu") -> PretrainedAgent:
        """The bundle's agent on ``device``."""
        return PretrainedAgent(load_agent_weights(self.path / WEIGHTS, device), self.card)

    def line(self) -> str:
        """One line for ``vai pretrained list``: name, budget and the mean return per mode."""
        returns = "  ".join(f"{mode} {cell['mean']:.0f}" for mode, cell in self.card["returns"].items())
        return f"{self.name:<36} {self.card['agent_steps']} steps  {returns}"


def bundle_name(task: str, algorithm: str, seed: int) -> str:
    return f"{task}-{algorithm}-seed{seed}"


def bundle_names(folder: Path | None = None) -> list[str]:
    """The names of the bundles in ``folder`` (default :func:`pretrained_folder`), unchecked; none where
    it is absent."""
    folder = folder or pretrained_folder()
    if not folder.is_dir():
        return []
    return sorted(path.name for path in folder.iterdir() if (path / CARD).is_file())


def bundles(folder: Path | None = None) -> list[Bundle]:
    """Every bundle in ``folder`` (default :func:`pretrained_folder`), by name, each checked (UserError
    for a damaged one)."""
    folder = folder or pretrained_folder()
    return [read_bundle(folder / name) for name in bundle_names(folder)]


def read_bundle(path: Path) -> Bundle:
    """The bundle in ``path``, its card read and its weights file's checksum checked; UserError otherwise."""
    from vai.data.store import sha256_file

    if not (path / CARD).is_file() or not (path / WEIGHTS).is_file():
        raise UserError(f"{path} is not a pretrained bundle (no {CARD} and {WEIGHTS}): {BUNDLE.fix}")
    try:
        card = json.loads((path / CARD).read_text())
        expected = card["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path / CARD} is damaged ({type(error).__name__}): {BUNDLE.fix}") from None
    if sha256_file(path / WEIGHTS) != expected:
        raise UserError(f"{path / WEIGHTS} does not match its card's checksum (damaged or replaced): {BUNDLE.fix}")
    return Bundle(path, card)


def find_bundle(name: str, folder: Path | None = None) -> Bundle:
    """The bundle called ``name``; UserError naming the bundles there are."""
    folder = folder or pretrained_folder()
    if not (folder / name).is_dir():
        there = ", ".join(bundle_names(folder)) or f"none in {folder}"
        raise UserError(f"no pretrained bundle {name!r} (there are: {there}); set {ENV_VAR} to a folder of bundles")
    return read_bundle(folder / name)


class PretrainedAgent:
    """A bundle's agent: ``act(obs)`` on the observations of :meth:`make_env`'s environments (the adapter
    inside, for ``vai``), with the bundle's card."""

    def __init__(self, agent, card: dict[str, Any]):
        self.agent, self.card = agent, card

    @property
    def task(self) -> str:
        return self.card["task"]

    def act(self, observation: np.ndarray) -> np.ndarray:
        """The policy's mean action for one observation (3F, H, W) uint8, or (N, A) for a batch."""
        return self.agent.act(observation)

    def make_env(self, mode: str = "train", **kwargs):
        """The task's environment in ``mode``, as the agent was trained and evaluated on it (an oracle
        row's on true mask x frame; video modes composited as its preset's ``video_compositing``)."""
        from vai.envs import make_env

        kwargs.setdefault("compositing", self.agent.preset.video_compositing)
        return make_env(self.task, mode, oracle=self.agent.spec.oracle, **kwargs)

    def first_episode(self, mode: str = "train", data_dir=None) -> float:
        """The return of the first episode of evaluation seed 0 in ``mode``, played as the sweep's final
        evaluation played it (:mod:`vai.rl.evaluate`): the card's ``first_episode`` on a machine that
        renders as the one that trained it."""
        from vai.rl.evaluate import evaluate

        results = evaluate(self.agent, self.task, [mode], seeds=1, episodes=1, data_dir=data_dir)
        return float(results[mode].returns[0, 0])


def load(
    task: str, algorithm: str, seed: int = 0, *, device: str = "cpu", folder: Path | None = None
) -> PretrainedAgent:
    """The pretrained agent of ``task``, ``algorithm`` and training ``seed``; a UserError in one line for
    a missing or damaged bundle."""
    bundle = find_bundle(bundle_name(task, algorithm, seed), folder)
    return bundle.agent(device)


def load_agent_weights(path: Path, device: str = "cpu"):
    """A :class:`vai.rl.sac.SACAgent` that acts as the bundle's: its actor and adapter loaded."""
    from vai.checkpoints import load_tensors
    from vai.presets.rl import preset_from_record
    from vai.rl.sac import SACAgent
    from vai.vision.adapter import AttentionAdapter

    tensors, metadata = load_tensors(BUNDLE, path)
    try:
        built = json.loads(metadata["agent"])
        adapter = AttentionAdapter(**built["adapter_config"]) if built["adapter_config"] else None
        agent = SACAgent(
            built["algorithm"],
            tuple(built["obs_shape"]),
            built["action_dim"],
            preset_from_record(built["preset"]),
            tuple(built["layers"]),
            adapter=adapter,
            device=device,
        )
        for part, module in acting_parts(agent).items():
            prefix = f"{part}."
            module.load_state_dict(
                {name[len(prefix) :]: value for name, value in tensors.items() if name.startswith(prefix)}
            )
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise BUNDLE.mismatch(path, error) from None
    return agent.eval()


# -- export ------------------------------------------------------------------------------------------
def export_run(sweep_path: Path, result: dict[str, Any], out: Path) -> Path:
    """The bundle of one finished sweep run (its result file's contents ``result``) into ``out/NAME``."""
    from vai.atomic import write_json_atomic, write_text_atomic
    from vai.checkpoints import save_tensors
    from vai.data.store import sha256_file
    from vai.rl.checkpoint import load_agent
    from vai.run_dir import RunDir
    from vai.sweep.plan import SweepDir
    from vai.vision.backgrounds import describe_pool

    sweep = SweepDir(Path(sweep_path))
    record = json.loads(sweep.record.read_text())
    task, algorithm, seed = result["task"], result["algorithm"], result["seed"]
    checkpoint = RunDir(sweep.task_run(task)).agent(algorithm, seed).checkpoint
    agent, payload = load_agent(checkpoint)
    folder = out / bundle_name(task, algorithm, seed)
    built = {key: payload[key] for key in ("task", "algorithm", "obs_shape", "action_dim", "layers", "adapter_config")}
    built["preset"] = asdict(agent.preset)
    tensors = {
        f"{part}.{name}": value
        for part, module in acting_parts(agent).items()
        for name, value in module.state_dict().items()
    }
    save_tensors(BUNDLE, tensors, {"agent": json.dumps(built)}, folder / WEIGHTS)
    card = {
        "name": folder.name,
        "task": task,
        "algorithm": algorithm,
        "seed": seed,
        "preset": record["preset"],
        "agent_steps": result["agent_steps"],
        "frames": result["frames"],
        "returns": {mode: _cell(np.asarray(values)) for mode, values in result["returns"].items()},
        "success": {mode: _cell(np.asarray(values)) for mode, values in result.get("success", {}).items()},
        "first_episode": {mode: float(values[0][0]) for mode, values in result["returns"].items()},
        "evaluation": {"seeds": result["test_seeds"], "episodes": result["test_episodes"]},
        "settings": {"overrides": record["overrides"], "vision": record["vision"], "rl": record["rl"]},
        "adapter_backgrounds": describe_pool(record["backgrounds"]) if payload["adapter_config"] else None,
        "adapter_sha256": result.get("adapter_sha256"),
        "weights_sha256": sha256_file(folder / WEIGHTS),
        "commit": result["machine"]["commit"],
        "machine": result["machine"],
        "sweep": str(sweep_path),
    }
    write_json_atomic(card, folder / CARD)
    write_text_atomic(card_text(card), folder / README)
    return folder


def acting_parts(agent) -> dict[str, Any]:
    """What acting needs of an agent, by the prefix its weights take in the bundle: the critic's conv
    layers (the actor reuses them, tied, without owning them), the actor, and the observation pipeline
    (the frozen adapter, for ``vai``)."""
    return {"convs": agent.critic.encoder.own, "actor": agent.actor, "observe": agent.observe}


def _cell(values: np.ndarray) -> dict[str, Any]:
    """Mean, std over evaluation seeds and the worst seed of (seeds, episodes) values."""
    per_seed = values.mean(axis=1)
    return {
        "mean": float(per_seed.mean()),
        "std": float(per_seed.std()),
        "worst_seed": float(per_seed.min()),
        "per_seed": [round(float(value), 3) for value in per_seed],
    }


def card_text(card: dict[str, Any]) -> str:
    """The card in words (``README.md`` of the bundle)."""
    from vai.presets.rl import OLDER_RECORDS

    compositing = card["settings"]["rl"].get("video_compositing", OLDER_RECORDS["video_compositing"])
    oracle = (
        " (oracle row: the agent sees true mask x frame, not a learned adapter)"
        if "+oracle" in card["algorithm"]
        else ""
    )
    lines = [
        f"# {card['name']}",
        "",
        f"{card['algorithm']}{oracle} on {card['task']}, training seed {card['seed']}, `{card['preset']}` preset "
        f"({', '.join(card['settings']['overrides']) or 'no overrides'}): {card['agent_steps']} agent steps "
        f"({card['frames']} frames), commit {card['commit']}.",
        "",
        f"Returns over {card['evaluation']['seeds']} evaluation seeds x {card['evaluation']['episodes']} episodes "
        "(mean ± std over seeds, worst seed; `video_easy` plays the seeds whose clip the data holds; video modes "
        f"composited by {compositing}):",
        "",
        "| mode | return | worst seed | seeds evaluated |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {mode} | {cell['mean']:.0f} ± {cell['std']:.0f} | {cell['worst_seed']:.0f} | {len(cell['per_seed'])} |"
        for mode, cell in card["returns"].items()
    ]
    lines += [
        "",
        "```python",
        "import vai.pretrained",
        f"agent = vai.pretrained.load({card['task']!r}, {card['algorithm']!r}, seed={card['seed']})",
        "```",
        "",
    ]
    return "\n".join(lines)


def export_sweep(sweep_path: Path, out: Path, log=print) -> list[Path]:
    """A bundle for every finished run of the sweep whose checkpoint is on this machine and that has no
    bundle yet; says which runs it skips and why."""
    from vai.run_dir import RunDir
    from vai.sweep.plan import SweepDir

    sweep = SweepDir(Path(sweep_path))
    if not sweep.record.is_file():
        raise UserError(f"{sweep_path} is not a sweep directory (no sweep.json): name one, e.g. results/sweeps/NAME")
    written = []
    for path in sorted(sweep.results.glob("*-seed*.json")):
        result = json.loads(path.read_text())
        name = bundle_name(result["task"], result["algorithm"], result["seed"])
        checkpoint = RunDir(sweep.task_run(result["task"])).agent(result["algorithm"], result["seed"]).checkpoint
        if (out / name / CARD).is_file():
            log(f"{name}: bundle exists, kept")
        elif not checkpoint.is_file():
            log(f"{name}: no checkpoint at {checkpoint} (the run trained on another machine): skipped")
        else:
            written.append(export_run(sweep.path, result, out))
            log(f"{name}: wrote {written[-1]}")
    return written


# -- command line -------------------------------------------------------------------------------------
def add_pretrained_commands(subparsers: Any) -> None:
    pretrained = subparsers.add_parser("pretrained", help="list, show, load and export pretrained agents")
    actions = pretrained.add_subparsers(dest="pretrained_command", required=True, metavar="{list,show,export}")
    folder = f"folder of bundles (default: ${ENV_VAR} or pretrained/)"
    listing = actions.add_parser("list", help="the bundles there are, with their returns per mode")
    listing.add_argument("--dir", type=Path, default=None, help=folder)
    listing.set_defaults(func=_run_list)
    show = actions.add_parser("show", help="one bundle's card")
    show.add_argument("name", help="TASK-ALGORITHM-seedS (see 'vai pretrained list')")
    show.add_argument("--dir", type=Path, default=None, help=folder)
    show.set_defaults(func=_run_show)
    check = actions.add_parser("check", help="replay each mode's first evaluation episode against the card")
    check.add_argument("name", help="TASK-ALGORITHM-seedS (see 'vai pretrained list')")
    check.add_argument("--dir", type=Path, default=None, help=folder)
    check.add_argument("--data-dir", default=None)
    check.set_defaults(func=_run_check)
    export = actions.add_parser("export", help="a bundle for every finished run of a sweep")
    export.add_argument("sweep", type=Path, help="sweep directory (its runs/ on this machine)")
    export.add_argument("--out", type=Path, default=None, help=folder)
    export.set_defaults(func=_run_export)


def _run_list(args: argparse.Namespace) -> int:
    folder = args.dir or pretrained_folder()
    names = bundle_names(folder)
    if not names:
        print(f"no pretrained bundles in {folder} (set {ENV_VAR} to a folder of bundles)")
    damaged = 0
    for name in names:
        try:
            print(read_bundle(folder / name).line())
        except UserError as error:
            damaged += 1
            print(f"{name:<36} damaged: {error}")
    return 1 if damaged else 0


def _run_show(args: argparse.Namespace) -> int:
    bundle = find_bundle(args.name, args.dir)
    print((bundle.path / README).read_text(), end="")
    print(f"files: {bundle.path}")
    return 0


def _run_check(args: argparse.Namespace) -> int:
    bundle = find_bundle(args.name, args.dir)
    agent = bundle.agent()
    differ = 0
    for mode, expected in bundle.card["first_episode"].items():
        played = agent.first_episode(mode, args.data_dir)
        same = abs(played - expected) <= CHECK_TOLERANCE * max(1.0, abs(expected))
        differ += not same
        print(f"{mode:<12} card {expected:9.2f}  replayed {played:9.2f}  {'same' if same else 'DIFFERENT'}")
    return 1 if differ else 0


def _run_export(args: argparse.Namespace) -> int:
    written = export_sweep(args.sweep, args.out or pretrained_folder())
    print(f"{len(written)} bundle(s) written")
    return 0
