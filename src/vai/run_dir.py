"""The run directory: where each stage's file lies, named here only, and the one default directory.

Every stage command and ``vai run`` work in ``runs/TASK-PRESET`` unless given ``--run``, so the
stages of one preset meet in one directory and a ``quick`` run never meets a ``paper`` one::

    RUN/run.json                        every resolved setting of ``vai run``
    RUN/frames.npz, frames.masks.npz    step 0 (the masks: ground truth, measurement only)
    RUN/transporter.safetensors         step 1; keypoints.json: its training record
    RUN/transporter-seedS.partial.pt    step 1 while it trains: where a killed stage resumes
    RUN/counterfactual.npz              step 1: the adapter's targets
    RUN/adapter.safetensors             step 2; adapter.json: its training record and image pool
    RUN/masks_eval.json, masks_eval.md  the masks against ground truth; masks.png: their picture
    RUN/ALGO-seedS/                     an agent (:class:`AgentDir`)
    RUN/curves.png, adapted.mp4         learning curves; what the policy sees in a test mode
    RUN/results.json, results.md        the final evaluation; report.md: everything tied together

Example::

    run = RunDir.at(None, "cartpole_balance", "quick")     # runs/cartpole_balance-quick
    adapter = load_adapter(run.adapter)
    agent, _ = load_agent(run.agent("vai", 0).checkpoint)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

RUNS = Path("runs")
"""The folder that holds the default run directories."""


def default_run(task: str, preset: str) -> Path:
    """``runs/TASK-PRESET``: the run directory of every command not given ``--run``."""
    return RUNS / f"{task}-{preset}"


TRAIN_LOG = "train"
"""The logger's group of training episodes (``train.csv``)."""


def eval_log(mode: str) -> str:
    """The logger's group of the evaluations in ``mode`` during training (``eval_MODE.csv``)."""
    return f"eval_{mode}"


@dataclass(frozen=True)
class AgentDir:
    """One agent's directory: its settings, logs and checkpoints (``RUN/ALGO-seedS`` or ``--out``)."""

    path: Path

    @classmethod
    def holding(cls, checkpoint: str | os.PathLike) -> AgentDir:
        """The agent directory a checkpoint (``AGENT/checkpoints/last.pt``) lies in."""
        return cls(Path(checkpoint).parent.parent)

    @property
    def config(self) -> Path:
        """The agent's resolved settings (``config.json``)."""
        return self.path / "config.json"

    def log(self, group: str) -> Path:
        """The CSV of one group of logged metrics, e.g. ``train.csv``."""
        return self.path / f"{group}.csv"

    @property
    def train_log(self) -> Path:
        return self.log(TRAIN_LOG)

    def eval_logs(self) -> dict[str, Path]:
        """``{mode: CSV}`` of the evaluations logged during training, by mode name."""
        prefix = eval_log("")
        return {path.stem.removeprefix(prefix): path for path in sorted(self.path.glob(f"{prefix}*.csv"))}

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files of the same metrics (``--tensorboard``)."""
        return self.path / "tensorboard"

    @property
    def checkpoint(self) -> Path:
        """The latest checkpoint, written between episodes; ``--resume`` continues from it."""
        return self.path / "checkpoints" / "last.pt"

    @property
    def diverged(self) -> Path:
        """The state of a run stopped because a loss or an action was not finite."""
        return self.path / "checkpoints" / "diverged.pt"

    @property
    def replay(self) -> Path:
        """Finished episodes while the run is unfinished, to refill the replay buffer on resume."""
        return self.path / "replay"


@dataclass(frozen=True)
class RunDir:
    """One run directory: the files the stages exchange, each a property (see the module's table)."""

    path: Path

    @classmethod
    def at(cls, path: str | os.PathLike | None, task: str, preset: str) -> RunDir:
        """``path``, or the default run directory of ``task`` and ``preset`` when it is None."""
        return cls(Path(path) if path else default_run(task, preset))

    @property
    def config(self) -> Path:
        """Every resolved setting of ``vai run`` (``run.json``)."""
        return self.path / "run.json"

    @property
    def frames(self) -> Path:
        return self.path / "frames.npz"

    @property
    def frame_masks(self) -> Path:
        """The ground-truth masks of the frames, for measurement only (beside the frames file)."""
        from vai.data.frames import masks_path

        return masks_path(self.frames)

    @property
    def transporter(self) -> Path:
        return self.path / "transporter.safetensors"

    @property
    def keypoints_record(self) -> Path:
        """The Transporter's training record and loss curve."""
        return self.path / "keypoints.json"

    def partial_transporter(self, seed: int) -> Path:
        """The training state of the keypoints stage's Transporter of ``seed``, while it trains."""
        return self.path / f"transporter-seed{seed}.partial.pt"

    @property
    def counterfactual(self) -> Path:
        """The counterfactual masks of the frames: the adapter's targets."""
        return self.path / "counterfactual.npz"

    @property
    def adapter(self) -> Path:
        return self.path / "adapter.safetensors"

    @property
    def adapter_record(self) -> Path:
        """The adapter's training record and the image pool it trained on."""
        return self.path / "adapter.json"

    @property
    def masks_eval(self) -> Path:
        return self.path / "masks_eval.json"

    @property
    def masks_table(self) -> Path:
        return self.path / "masks_eval.md"

    @property
    def masks_picture(self) -> Path:
        return self.path / "masks.png"

    def agent(self, algorithm: str, seed: int) -> AgentDir:
        return AgentDir(self.path / f"{algorithm}-seed{seed}")

    @property
    def curves(self) -> Path:
        return self.path / "curves.png"

    @property
    def showcase(self) -> Path:
        """Observation | adapter mask | adapted input, as the agent plays a test mode."""
        return self.path / "adapted.mp4"

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    @property
    def results_table(self) -> Path:
        return self.path / "results.md"

    @property
    def report(self) -> Path:
        return self.path / "report.md"
