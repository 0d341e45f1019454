"""What a run reports: learning curves (PNG) and ``report.md`` tying together every artifact of ``vai run``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from vai.atomic import atomic_write
from vai.run_dir import AgentDir, eval_log


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def curves(agent_dirs: dict[str, Path]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``{algorithm: {series: (frames, returns)}}``: evaluation returns per mode, and training episodes."""
    found: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for name, directory in agent_dirs.items():
        series = {}
        for mode, path in AgentDir(directory).eval_logs().items():
            rows = read_rows(path)
            if rows:
                series[mode] = (
                    np.array([float(row["frames"]) for row in rows]),
                    np.array([float(row["return"]) for row in rows]),
                )
        rows = read_rows(AgentDir(directory).train_log)
        if rows:
            series["training episodes"] = (
                np.array([float(row["frames"]) for row in rows]),
                np.array([float(row["return"]) for row in rows]),
            )
        found[name] = series
    return found


def plot_curves(agent_dirs: dict[str, Path], out: Path, title: str) -> Path:
    """One panel per algorithm: evaluation return per mode and training-episode return vs frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = curves(agent_dirs)
    figure, axes = plt.subplots(1, max(len(data), 1), figsize=(5 * max(len(data), 1), 3.6), squeeze=False)
    for axis, (name, series) in zip(axes[0], data.items()):
        for label, (frames, returns) in series.items():
            style = (
                {"color": "0.7", "linewidth": 1} if label == "training episodes" else {"marker": "o", "markersize": 3}
            )
            axis.plot(frames, returns, label=label, **style)
        axis.set_title(name)
        axis.set_xlabel("environment frames")
        axis.set_ylabel("episode return")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()

    def write(temporary: Path) -> None:
        figure.savefig(temporary, format="png", dpi=100)

    atomic_write(out, write)
    plt.close(figure)
    return out


EPISODES_COMPARED = 5
"""Training episodes averaged at each end of the run in :func:`learning_summary`."""


def learning_summary(agent_dir: Path, mode: str = "train") -> dict[str, float] | None:
    """How much the agent learned: first and last evaluation return in ``mode``, and the mean
    return of the first and of the last :data:`EPISODES_COMPARED` training episodes (the first
    ones act at random, so they are the baseline the policy has to beat); None without an
    evaluation."""
    rows = read_rows(AgentDir(agent_dir).log(eval_log(mode)))
    if not rows:
        return None
    summary = {
        "first_frames": float(rows[0]["frames"]),
        "first_return": float(rows[0]["return"]),
        "last_step": float(rows[-1]["step"]),
        "last_frames": float(rows[-1]["frames"]),
        "last_return": float(rows[-1]["return"]),
    }
    episodes = [float(row["return"]) for row in read_rows(AgentDir(agent_dir).train_log)]
    if len(episodes) >= 2 * EPISODES_COMPARED:
        summary["first_episodes"] = float(np.mean(episodes[:EPISODES_COMPARED]))
        summary["last_episodes"] = float(np.mean(episodes[-EPISODES_COMPARED:]))
    return summary
