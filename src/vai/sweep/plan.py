"""What a sweep runs: tasks x algorithms x training seeds under one preset, and where each file lies.

The plan is resolved once from the command line (presets with their ``--set`` overrides, the adapter's
image pool, the test modes) and recorded in ``SWEEP/sweep.json``; a later call on the same directory
must resolve to the same record, or it is refused before anything is written. The sweep directory::

    SWEEP/sweep.json                    every resolved setting (the record a re-run is checked against)
    SWEEP/table.md, table.json          the table over training seeds; bars.png: one panel per test mode
    SWEEP/results/TASK-vision.json      each task's vision stages: time, keypoints, mask IoU per mode
    SWEEP/results/TASK-ALGO-seedS.json  each finished run: returns per mode, times, commit, machine
    SWEEP/vision/TASK/                  the task's Transporter, adapter and their records (small files): a
                                        continued sweep restores them instead of training another adapter
    SWEEP/runs/TASK/                    the task's run directory (vision files, one ALGO-seedS/ per run)
    SWEEP/logs/NAME.log                 what each job printed

Everything but ``runs/`` and ``logs/`` is small, and the directory's ``.gitignore`` leaves those two
out: a sweep directory can be committed as it is, and a clone of it continues the sweep with each
task's committed adapter (a task whose vision files are not there runs its vision stages again).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vai.errors import UserError

SWEEPS = Path("runs")
"""The folder of the default sweep directories."""


def default_sweep(tasks: list[str], preset: str) -> Path:
    """``runs/sweep-TASK1+TASK2-PRESET``: where a sweep goes without ``--out``."""
    return SWEEPS / f"sweep-{'+'.join(tasks)}-{preset}"


def parse_seeds(text: list[str]) -> list[int]:
    """Training seeds from ``0-2``, ``0 1 2``, ``0,3-4`` (in order, each once); UserError otherwise."""
    seeds: list[int] = []
    for part in (piece for item in text for piece in item.split(",") if piece):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not match or (match[2] is not None and int(match[2]) < int(match[1])):
            raise UserError(f"--seeds {part!r}: give seeds as 0-2, '0 1 2' or 0,3-4 (non-negative, ascending ranges)")
        first, last = int(match[1]), int(match[2] if match[2] is not None else match[1])
        seeds += [seed for seed in range(first, last + 1) if seed not in seeds]
    if not seeds:
        raise UserError("--seeds: give at least one training seed, e.g. --seeds 0-2")
    return seeds


VISION_FILES = ("transporter.safetensors", "keypoints.json", "adapter.safetensors", "adapter.json")
"""What a sweep keeps of a task's vision stages beside its results (about 1 MB): the Transporter, the
adapter and their records."""


@dataclass(frozen=True)
class RunKey:
    """One RL run of the sweep."""

    task: str
    algorithm: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.task}-{self.algorithm}-seed{self.seed}"


@dataclass(frozen=True)
class SweepDir:
    """The files of one sweep directory (see the module's table)."""

    path: Path

    @property
    def record(self) -> Path:
        return self.path / "sweep.json"

    @property
    def table(self) -> Path:
        return self.path / "table.md"

    @property
    def table_json(self) -> Path:
        return self.path / "table.json"

    @property
    def bars(self) -> Path:
        return self.path / "bars.png"

    @property
    def results(self) -> Path:
        return self.path / "results"

    def vision_result(self, task: str) -> Path:
        return self.results / f"{task}-vision.json"

    def run_result(self, key: RunKey) -> Path:
        return self.results / f"{key.name}.json"

    def vision_files(self, task: str) -> Path:
        """The committed copy of the task's vision outputs (:data:`VISION_FILES`)."""
        return self.path / "vision" / task

    def task_run(self, task: str) -> Path:
        """The task's run directory (:class:`vai.run_dir.RunDir`): its vision files and its agents."""
        return self.path / "runs" / task

    def log(self, name: str) -> Path:
        return self.path / "logs" / f"{name}.log"


def copy_vision(source: Path, target: Path) -> None:
    """The :data:`VISION_FILES` of one folder into another, each file written atomically."""
    from vai.atomic import write_bytes_atomic

    target.mkdir(parents=True, exist_ok=True)
    for name in VISION_FILES:
        write_bytes_atomic((source / name).read_bytes(), target / name)


def restore_vision(sweep: SweepDir, task: str) -> bool:
    """A committed task's vision files put back into its run directory, where that holds no adapter
    (a clone of a committed sweep); True if they were. The committed adapter must be the one the task's
    vision record names: another is refused (UserError), never trained behind in silence."""
    from vai.data.store import sha256_file
    from vai.run_dir import RunDir

    kept, run = sweep.vision_files(task), RunDir(sweep.task_run(task))
    if run.adapter.is_file() or not sweep.vision_result(task).is_file():
        return False
    if not all((kept / name).is_file() for name in VISION_FILES):
        return False
    named = json.loads(sweep.vision_result(task).read_text()).get("adapter_sha256")
    found = sha256_file(kept / "adapter.safetensors")
    if found != named:
        raise UserError(
            f"{kept / 'adapter.safetensors'} is not the adapter {sweep.vision_result(task)} names (sha256 {found[:12]} "
            f"against {str(named)[:12]}): restore both from git, or delete both to train the task's vision stages again"
        )
    copy_vision(kept, run.path)
    return True


@dataclass(frozen=True)
class SweepPlan:
    """Every resolved setting of a sweep: what ``sweep.json`` records."""

    tasks: tuple[str, ...]
    algorithms: tuple[str, ...]
    seeds: tuple[int, ...]
    preset: str
    overrides: tuple[str, ...]
    vision: dict[str, Any]
    """The resolved vision preset (its fields)."""
    rl: dict[str, Any]
    """The resolved RL preset (its fields); ``test_seeds`` and ``test_episodes`` size the final evaluation."""
    modes: dict[str, tuple[str, ...]]
    """Modes of the final evaluation per task."""
    backgrounds: str
    """The adapter's augmentation pool folder, or ``procedural``."""
    vision_seed: int = 0
    """The seed of every task's vision stages: one adapter per task, shared by its training seeds (VAI)."""

    def runs(self) -> list[RunKey]:
        return [RunKey(t, a, s) for t in self.tasks for a in self.algorithms for s in self.seeds]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def presets(record: dict[str, Any]):
    """(vision preset, RL preset) of a sweep's record, resolved as :func:`resolve_plan` resolved them."""
    from vai.pipeline import split_overrides
    from vai.presets.rl import get_rl_preset
    from vai.presets.settings import override
    from vai.presets.vision import get_vision_preset

    vision_overrides, rl_overrides = split_overrides(list(record["overrides"]))
    vision = override(get_vision_preset(record["preset"]), vision_overrides)
    return vision, override(get_rl_preset(record["preset"]), rl_overrides)


RECORD_FREE = {"overrides"}
"""What may differ between two calls on one sweep: the text of ``--set`` (only what it resolves to counts)."""


def resolve_plan(
    tasks: list[str],
    algorithms: list[str],
    seeds: list[int],
    preset: str,
    overrides: list[str] | None,
    modes: list[str] | None,
    backgrounds: Path | None,
    data_dir=None,
    vision_seed: int = 0,
) -> SweepPlan:
    """The plan of a sweep from its command line, every argument checked (UserError naming the fix)."""
    from vai.pipeline import default_backgrounds, split_overrides
    from vai.presets.rl import get_rl_preset
    from vai.presets.settings import override
    from vai.presets.vision import get_vision_preset
    from vai.rl.stages import check_algorithm, check_rl_preset
    from vai.tasks import check_mode, default_modes, get_task

    if not tasks:
        raise UserError("vai sweep needs at least one task, e.g. vai sweep cartpole_balance")
    tasks = list(dict.fromkeys(tasks))
    algorithms = list(dict.fromkeys(check_algorithm(name) for name in algorithms))
    vision_overrides, rl_overrides = split_overrides(overrides)
    vision = override(get_vision_preset(preset), vision_overrides)
    rl = override(get_rl_preset(preset), rl_overrides)
    per_task_modes = {}
    for task in tasks:
        spec = get_task(task)
        check_rl_preset(task, rl)
        for mode in modes or []:
            check_mode(spec, mode)
        per_task_modes[task] = tuple(modes or default_modes(spec))
    if backgrounds is not None and not Path(backgrounds).is_dir():
        raise UserError(f"--backgrounds {backgrounds} is not a folder of images: name one, or leave it out")
    pool = backgrounds or default_backgrounds(data_dir)
    return SweepPlan(
        tuple(tasks),
        tuple(algorithms),
        tuple(seeds),
        preset,
        tuple(overrides or ()),
        dataclasses.asdict(vision),
        dataclasses.asdict(rl),
        per_task_modes,
        str(Path(pool).resolve()) if pool else "procedural",
        vision_seed,
    )
