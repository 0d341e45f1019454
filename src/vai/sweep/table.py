"""The sweep's table, from its result files alone: returns over training seeds, the IQM over tasks.

A run's score in a mode is the mean of all its final-evaluation episodes there (every evaluation seed
and episode); the training seeds are the samples: each cell is ``mean ± std`` over them, and the
aggregate is the IQM over all tasks' seed scores with its 95% stratified bootstrap interval
(:mod:`vai.rl.stats`, the definitions rliable uses). A cell shows how many seeds it has while the
sweep is unfinished. ``table.json`` holds the same numbers and every run's scores, ``bars.png`` one
panel per mode (bars: algorithms per task, whiskers: std over seeds; the IQM group: its interval).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vai.rl.stats import aggregate, number_format, seed_list, summary
from vai.sweep.plan import RunKey, SweepDir


def read_results(sweep: SweepDir, record: dict[str, Any]) -> dict[RunKey, dict[str, Any]]:
    """The result file of every finished run of the plan, by run; unreadable files count as unfinished."""
    found = {}
    for task in record["tasks"]:
        for algorithm in record["algorithms"]:
            for seed in record["seeds"]:
                key = RunKey(task, algorithm, seed)
                try:
                    found[key] = json.loads(sweep.run_result(key).read_text())
                except (OSError, ValueError):
                    continue
    return found


def read_vision(sweep: SweepDir, record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for task in record["tasks"]:
        try:
            found[task] = json.loads(sweep.vision_result(task).read_text())
        except (OSError, ValueError):
            continue
    return found


def scores(
    results: dict[RunKey, dict[str, Any]], record: dict[str, Any], measure: str = "returns"
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{algorithm: {task: {mode: (seeds,) scores}}}`` of the finished runs, seeds in the plan's order:
    the mean return of each run's evaluation episodes, or with ``measure="success"`` the share of them
    that succeeded (DrawerWorld; runs without success flags are left out)."""
    table: dict[str, dict[str, dict[str, list[float]]]] = {}
    for key in sorted(results, key=lambda k: (record["tasks"].index(k.task), k.algorithm, k.seed)):
        for mode, rows in results[key].get(measure, {}).items():
            by_mode = table.setdefault(key.algorithm, {}).setdefault(key.task, {})
            by_mode.setdefault(mode, []).append(float(np.mean(rows)))
    return {
        algorithm: {task: {mode: np.array(values) for mode, values in by_mode.items()} for task, by_mode in per.items()}
        for algorithm, per in table.items()
    }


def _cell(values: np.ndarray, seeds: int) -> dict[str, Any]:
    """A table cell: mean and std over the training seeds' scores, as ``vai.rl.stats.summary`` gives them."""
    stats = summary(values[:, None])
    return {"mean": stats["mean"], "std": stats["std"], "seeds": stats["seeds"], "of": seeds, "scores": values.tolist()}


def summarise(sweep: SweepDir, record: dict[str, Any], command: str | None = None) -> dict[str, Any]:
    """Everything ``table.json`` holds: per task, algorithm and mode the cell; per algorithm and mode
    the aggregate; the vision stages' records; each run's times and machine."""
    results = read_results(sweep, record)
    per = scores(results, record)
    seeds = len(record["seeds"])

    def table_cells(per: dict[str, dict[str, dict[str, np.ndarray]]]) -> dict[str, Any]:
        return {
            task: {
                algorithm: {mode: _cell(values, seeds) for mode, values in per[algorithm][task].items()}
                for algorithm in record["algorithms"]
                if task in per.get(algorithm, {})
            }
            for task in record["tasks"]
        }

    cells = table_cells(per)
    success = {
        task: by_algorithm
        for task, by_algorithm in table_cells(scores(results, record, "success")).items()
        if by_algorithm
    }
    rng = np.random.default_rng(0)
    overall = {}
    for algorithm in record["algorithms"]:
        if algorithm in per:
            per_task = {
                task: {mode: values[:, None] for mode, values in by_mode.items()}
                for task, by_mode in per[algorithm].items()
            }
            overall[algorithm] = aggregate(per_task, rng=rng)
    runs = [
        {
            "run": key.name,
            "frames": result["frames"],
            "train_seconds": result["train_seconds"],
            "evaluate_seconds": result["evaluate_seconds"],
            "commit": result["machine"]["commit"],
            "machine": result["machine"],
        }
        for key, result in results.items()
    ]
    not_evaluated = {
        mode: entry["reason"] for result in results.values() for mode, entry in result.get("not_evaluated", {}).items()
    }
    evaluation_seeds = {
        mode: sorted({seed for result in results.values() for seed in result["evaluation_seeds"].get(mode, [])})
        for task in record["tasks"]
        for mode in record["modes"][task]
    }
    vision = read_vision(sweep, record)
    other_adapter = [
        key.name
        for key, result in results.items()
        if result.get("adapter_sha256")
        and vision.get(key.task, {}).get("adapter_sha256") not in (None, result["adapter_sha256"])
    ]
    return {
        "command": command,
        "settings": {key: record[key] for key in ("tasks", "algorithms", "seeds", "preset", "overrides", "modes")},
        "backgrounds": record["backgrounds"],
        "test_seeds": record["rl"]["test_seeds"],
        "test_episodes": record["rl"]["test_episodes"],
        "train_steps": record["rl"]["train_steps"],
        "finished": len(results),
        "planned": len(record["tasks"]) * len(record["algorithms"]) * seeds,
        "cells": cells,
        "success": success,
        "aggregate": overall,
        "vision": vision,
        "other_adapter": other_adapter,
        "evaluation_seeds": evaluation_seeds,
        "not_evaluated": not_evaluated,
        "runs": runs,
    }


def _numbers(*values: float) -> list[str]:
    """Values in one format, chosen by the first (``vai.rl.stats.number_format``): whole numbers for
    returns, two decimals for rates."""
    pattern = number_format(values[:1])
    return [pattern.format(value) for value in values]


def markdown(summary: dict[str, Any]) -> str:
    """``table.md``: the settings line, one table per task (rows: algorithms, columns: modes), the IQM
    over tasks, the adapter's mask IoU, the evaluation seeds and each run's wall time."""
    from vai.vision.backgrounds import describe_pool

    settings = summary["settings"]
    modes = list(dict.fromkeys(mode for task_modes in settings["modes"].values() for mode in task_modes))
    commits = sorted({run["commit"] for run in summary["runs"]})
    machines = sorted(
        {
            f"{run['machine']['cpu']} ({run['machine']['cores']} cores), device {run['machine']['device']}"
            + (f" {run['machine']['gpu']}" if run["machine"].get("gpu") else "")
            for run in summary["runs"]
        }
    )
    lines = [f"# vai sweep: {', '.join(settings['tasks'])} ({settings['preset']} preset)", ""]
    if summary.get("command"):
        lines += ["```", summary["command"], "```", ""]
    lines.append(
        f"{summary['finished']} of {summary['planned']} runs finished. Preset `{settings['preset']}`"
        + (f" with {' '.join(settings['overrides'])}" if settings["overrides"] else "")
        + f": {summary['train_steps']} agent steps per run; "
        f"adapter backgrounds: {describe_pool(summary['backgrounds'])}; "
        f"final evaluation: {summary['test_seeds']} seeds x {summary['test_episodes']} episodes per mode. "
        f"Commit {', '.join(commits) or '-'}; machine: {'; '.join(machines) or '-'}."
    )
    lines += [
        "",
        "Episode return, mean ± std over training seeds (a seed's score: the mean of its evaluation episodes), "
        "the worst seed in brackets.",
    ]
    for task in settings["tasks"]:
        lines += ["", f"### {task}", ""]
        lines += _cells_table(summary["cells"].get(task, {}), settings["algorithms"], modes)
        if task in summary.get("success", {}):
            lines += [
                "",
                "Success rate, mean ± std over training seeds (a seed's rate: the share of its evaluation episodes "
                "that succeeded), the worst seed in brackets:",
                "",
            ]
            lines += _cells_table(summary["success"][task], settings["algorithms"], modes, rates=True)
    if summary["aggregate"]:
        lines += ["", "### IQM over tasks (95% stratified bootstrap interval over training seeds)", ""]
        lines += ["| algorithm | " + " | ".join(modes) + " |", "|---" * (len(modes) + 1) + "|"]
        for algorithm, by_mode in summary["aggregate"].items():
            cells = [
                "{} [{}, {}]".format(*_numbers(by_mode[m]["iqm"], by_mode[m]["low"], by_mode[m]["high"]))
                if m in by_mode
                else "—"
                for m in modes
            ]
            lines.append(f"| {algorithm} | " + " | ".join(cells) + " |")
    if summary["vision"]:
        lines += ["", "### Attention (vision stages, one per task)", ""]
        for task, vision in summary["vision"].items():
            iou = ", ".join(
                f"{mode} {scores['adapter']:.2f}" for mode, scores in vision["mask_iou"].items() if "adapter" in scores
            )
            lines.append(
                f"- {task}: {vision['keypoints']} keypoints, seed {vision['seed']}; adapter mask IoU against ground "
                f"truth: {iou}; stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in vision["seconds"].items())
            )
    if summary.get("other_adapter"):
        lines.append(
            "- These runs trained with another adapter than their task's vision record names (its vision stages "
            "ran again after they started): " + ", ".join(summary["other_adapter"])
        )
    lines += [
        "",
        "Evaluation seeds: "
        + "; ".join(f"{mode} {_seeds(ids)}" for mode, ids in summary["evaluation_seeds"].items())
        + ".",
    ]
    lines += [f"{reason}" for reason in dict.fromkeys(summary["not_evaluated"].values())]
    if summary["runs"]:
        lines += ["", "| run | frames | training (s) | evaluation (s) | commit |", "|---|---|---|---|---|"]
        for run in summary["runs"]:
            times = f"{run['train_seconds']:.0f} | {run['evaluate_seconds']:.0f}"
            lines.append(f"| {run['run']} | {run['frames']} | {times} | {run['commit']} |")
    return "\n".join(lines) + "\n"


def _cells_table(
    by_algorithm: dict[str, Any], algorithms: list[str], modes: list[str], rates: bool = False
) -> list[str]:
    """The markdown rows of one task's table: an algorithm per row, ``mean ± std (worst)`` per mode."""
    lines = ["| algorithm | " + " | ".join(modes) + " |", "|---" * (len(modes) + 1) + "|"]
    for algorithm in algorithms:
        by_mode = by_algorithm.get(algorithm, {})
        cells = []
        for mode in modes:
            cell = by_mode.get(mode)
            if cell is None:
                cells.append("—")
                continue
            values = (cell["mean"], cell["std"], min(cell["scores"]))
            text = "{:.2f} ± {:.2f} ({:.2f})".format(*values) if rates else "{} ± {} ({})".format(*_numbers(*values))
            cells.append(text if cell["seeds"] == cell["of"] else f"{text} ({cell['seeds']}/{cell['of']} seeds)")
        lines.append(f"| {algorithm} | " + " | ".join(cells) + " |")
    return lines


def _seeds(ids: list[int]) -> str:
    return seed_list(ids) if ids else "none"


def plot(summary: dict[str, Any], out: Path) -> Path:
    """``bars.png``: one panel per mode; per task a group of bars, one per algorithm (height: mean over
    seeds, whisker: std); with several tasks, an IQM group (whisker: its interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vai.atomic import atomic_write

    settings = summary["settings"]
    modes = list(dict.fromkeys(mode for task_modes in settings["modes"].values() for mode in task_modes))
    algorithms, tasks = settings["algorithms"], list(settings["tasks"])
    groups = tasks + (["IQM"] if len(tasks) > 1 else [])
    width = 0.8 / max(len(algorithms), 1)
    figure, axes = plt.subplots(1, len(modes), figsize=(3.2 * len(modes) + 1, 3.4), squeeze=False, sharey=True)
    for axis, mode in zip(axes[0], modes):
        for index, algorithm in enumerate(algorithms):
            heights, low, high = [], [], []
            for group in groups:
                if group == "IQM":
                    entry = summary["aggregate"].get(algorithm, {}).get(mode)
                    value = (entry["iqm"], entry["iqm"] - entry["low"], entry["high"] - entry["iqm"]) if entry else None
                else:
                    cell = summary["cells"].get(group, {}).get(algorithm, {}).get(mode)
                    value = (cell["mean"], cell["std"], cell["std"]) if cell else None
                value = value or (np.nan, 0.0, 0.0)
                heights.append(value[0])
                low.append(value[1])
                high.append(value[2])
            positions = np.arange(len(groups)) + (index - (len(algorithms) - 1) / 2) * width
            axis.bar(positions, heights, width, yerr=[low, high], capsize=3, label=algorithm)
        axis.set_xticks(np.arange(len(groups)), groups, rotation=20, fontsize=8)
        axis.set_title(mode)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("episode return")
    axes[0][-1].legend(fontsize=8)
    figure.suptitle(f"vai sweep ({settings['preset']} preset): mean ± std over training seeds")
    figure.tight_layout()
    atomic_write(out, lambda temporary: figure.savefig(temporary, format="png", dpi=100))
    plt.close(figure)
    return out


def write_table(sweep: SweepDir, record: dict[str, Any], command: str | None = None) -> dict[str, Any]:
    """``table.md``, ``table.json`` and ``bars.png`` of the runs finished so far; returns the summary."""
    from vai.atomic import write_json_atomic, write_text_atomic

    summary = summarise(sweep, record, command)
    write_json_atomic(summary, sweep.table_json)
    write_text_atomic(markdown(summary), sweep.table)
    if summary["finished"]:
        plot(summary, sweep.bars)
    return summary
