"""The benchmark scripts: those that only read records run on the records the repository keeps, the
speed scripts at toy sizes on the CPU (their figures are printed, never asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mask_table_averages_the_recorded_seeds(tmp_path: Path) -> None:
    records = sorted((ROOT / "results" / "mask_quality" / "before").glob("walker_walk-*.json"))
    assert len(records) >= 2
    folder = tmp_path / "records"
    folder.mkdir()
    for path in records:
        (folder / path.name).write_text(path.read_text())
    # A seed whose masks hold no foreground has no precision; the table marks the mean that skips it.
    empty = json.loads(records[0].read_text())
    empty["seed"] = 99
    empty["results"]["train"]["adapter"].update(iou=0.0, precision=float("nan"), recall=0.0)
    (folder / "walker_walk-quick-seed99.json").write_text(json.dumps(empty))

    script = ROOT / "benchmarks" / "mask_table.py"
    out = subprocess.run([sys.executable, str(script), str(folder)], capture_output=True, text=True, check=True).stdout
    row = next(line for line in out.splitlines() if "walker_walk" in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    loaded = [json.loads(path.read_text()) for path in records]
    seeds = ", ".join(str(r["seed"]) for r in loaded) + ", 99"
    assert cells[2] == seeds
    assert cells[3] == "-"  # these records predate the collapse checks
    ious = [r["results"]["train"]["adapter"]["iou"] for r in loaded] + [0.0]
    precisions = [r["results"]["train"]["adapter"]["precision"] for r in loaded]
    recalls = [r["results"]["train"]["adapter"]["recall"] for r in loaded] + [0.0]
    expected = (
        f"{sum(ious) / len(ious):.2f} ({min(ious):.2f}) / {sum(precisions) / len(precisions):.2f}* / "
        f"{sum(recalls) / len(recalls):.2f} ({min(recalls):.2f})"
    )
    assert cells[4] == expected
    assert cells[5] == "-"  # color_easy: not measured by these records
    assert "*" not in cells[6]  # color_hard: every seed has a precision


def test_mask_table_counts_the_healthy_transporters_and_their_restarts(tmp_path: Path) -> None:
    records = sorted((ROOT / "results" / "mask_quality" / "before").glob("walker_walk-*.json"))[:2]
    for path, kept in zip(records, ({"collapsed": False, "restarts": 0}, {"collapsed": True, "restarts": 2})):
        record = json.loads(path.read_text())
        record["transporter"] = kept
        (tmp_path / path.name).write_text(json.dumps(record))
    out = run_script("mask_table.py", str(tmp_path))
    row = next(line for line in out.splitlines() if "walker_walk" in line)
    assert [cell.strip() for cell in row.strip("|").split("|")][3] == "1/2 healthy, 2 restarts"


def run_script(name: str, *arguments: str) -> str:
    script = ROOT / "benchmarks" / name
    done = subprocess.run([sys.executable, str(script), *arguments], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_mask_quality_scores_drawerworld_in_train_and_every_test_texture(tmp_path: Path, data_dir) -> None:
    from test_pipeline import TINY_VISION

    vision = [setting for setting in TINY_VISION if not setting.startswith("mask_eval")]
    command = [sys.executable, str(ROOT / "benchmarks" / "mask_quality.py"), "--tasks", "drawer_open", "--set"]
    command += [*vision, "transporter_restarts=0", "--episodes", "1", "--steps", "3"]
    command += ["--runs", str(tmp_path / "runs"), "--record", str(tmp_path / "records"), "--device", "cpu"]
    env = {**os.environ, "VAI_DATA_DIR": str(data_dir)}
    subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    record = json.loads((tmp_path / "records" / "drawer_open-quick-seed0.json").read_text())
    assert list(record["results"]) == ["train", "black", "blanket", "fabric", "metal", "marble", "wood"]
    assert record["missed"] == []  # DrawerWorld is measured, with no targets
    table = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "mask_table.py"), str(tmp_path / "records")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "| `train` | `black` | `blanket` | `fabric` | `metal` | `marble` | `wood` |" in table


def test_ladder_table_joins_sweeps_and_names_the_settings_that_differ(tmp_path: Path) -> None:
    import shutil

    first = ROOT / "results" / "sweeps" / "cartpole_balance-quick"
    other = tmp_path / "other"
    shutil.copytree(first, other)
    table = json.loads((other / "table.json").read_text())
    table["settings"]["overrides"].append("adapt_boxes=0")
    (other / "table.json").write_text(json.dumps(table))
    script = ROOT / "benchmarks" / "ladder_table.py"
    command = [sys.executable, str(script), str(first), str(other), "--order", "sac", "vai (adapt_boxes=0)", "vai"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| row")]
    assert [row.split(" | ")[0][2:] for row in rows] == ["sac", "vai (adapt_boxes=0)", "vai"]
    cell = json.loads((first / "table.json").read_text())["cells"]["cartpole_balance"]["vai"]["train"]
    assert f"| 3 | {cell['mean']:.0f} ± {cell['std']:.0f} ({min(cell['scores']):.0f}) |" in rows[2]
    labelled = subprocess.run([*command[:4], "--label", "other=no boxes"], capture_output=True, text=True, check=True)
    assert "| svea (no boxes) |" in labelled.stdout


def test_gpu_speed_prints_every_figure_at_toy_sizes():
    out = run_script(
        "gpu_speed.py",
        "--device",
        "cpu",
        "--preset",
        "quick",
        "--task",
        "cartpole_balance",
        "--init",
        "10",
        "--steps",
        "3",
        "--updates",
        "1",
        "--repeats",
        "1",
        "--runs",
        "1",
        "--no-compile",
    )
    for figure in ("torch", "one run:", "1 runs at once:", "update alone:", "one render:", "adapter on one frame:"):
        assert figure in out


def test_cpu_speed_prints_the_loops_parts_for_each_thread_count():
    out = run_script("cpu_speed.py", "--init", "10", "--steps", "3", "--repeats", "1", "--threads", "1", "2")
    for part in ("agent steps/s", "env wait", "act", "update", "critic", "checkpoint ms per call"):
        assert part in out
    assert "this checkout, 2 threads against this checkout, 1 thread:" in out
    threads = next(line for line in out.splitlines() if line.startswith("torch threads")).split()[2:]
    assert threads == ["1", "2"]  # each measurement ran with the thread count it is labelled with


def test_compositing_scores_both_compositings_and_a_bundle_under_each(tmp_path: Path, data_dir) -> None:
    record = tmp_path / "compositing.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "compositing.py"), "--tasks", "cartpole_balance"]
    command += ["--episodes", "1", "--steps", "4", "--bundles", "cartpole_balance-vai-seed0", "--seeds", "1"]
    command += ["--record", str(record)]
    env = {**os.environ, "VAI_DATA_DIR": str(data_dir)}
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    scores = json.loads(record.read_text())
    cells = scores["tasks"]["cartpole_balance"]["scores"]
    assert scores["tasks"]["cartpole_balance"]["adapter_of"] == "cartpole_balance-vai-seed0"
    for mode in ("video_easy", "video_hard"):
        segmentation, greenscreen = cells[mode]["segmentation"], cells[mode]["greenscreen"]
        assert segmentation["agent_pixels_changed"] == 0.0 < greenscreen["agent_pixels_changed"]
        assert 0 <= greenscreen["adapter"]["iou"] <= 1 and segmentation["frames"] == 4
    assert cells["video_hard"]["segmentation"]["video_share_of_background"] == 1.0
    returns = scores["bundles"]["cartpole_balance-vai-seed0"]
    assert set(returns) == {"video_easy", "video_hard"} and set(returns["video_hard"]) == {
        "segmentation",
        "greenscreen",
    }
    assert "video_hard: segmentation" in out
