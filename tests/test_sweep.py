"""`vai sweep` through the CLI with tiny real runs: the table over seeds, resuming, refusals, Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_cli import assert_user_error, run_vai
from test_pipeline import TINY_VISION
from test_rl_cli import TINY_AGENT

from vai.errors import UserError
from vai.rl.stats import number_format
from vai.sweep.plan import VISION_FILES, parse_seeds

TASK = "cartpole_balance"
TINY = [
    *TINY_VISION,
    *TINY_AGENT,
    "train_steps=30",
    "checkpoint_every=10",
    "eval_every=1000",
    "test_seeds=1",
    "test_episodes=1",
]
"""Seconds per run: a 30-step cartpole agent, one evaluation episode per mode."""


def sweep_args(
    out: Path, *extra: str, algos: tuple[str, ...] = ("vai", "sac"), seeds: str = "0-1", settings: list[str] = TINY
) -> list[str]:
    return [
        "sweep",
        TASK,
        "--algos",
        *algos,
        "--seeds",
        seeds,
        "--mode",
        "train",
        "color_hard",
        "--out",
        str(out),
        "--workers",
        "2",
        "--progress-every",
        "1",
        *extra,
        "--set",
        *settings,
    ]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    result = run_vai(*sweep_args(out), env={"VAI_DATA_DIR": str(data_dir)})
    assert result.returncode == 0, result.stderr + result.stdout
    return out


def cells(out: Path) -> dict:
    table = json.loads((out / "table.json").read_text())
    return {"cells": table["cells"], "aggregate": table["aggregate"]}


def test_the_table_has_every_run_over_training_seeds(sweep_dir):
    table = json.loads((sweep_dir / "table.json").read_text())
    markdown = (sweep_dir / "table.md").read_text().splitlines()
    assert table["finished"] == table["planned"] == 4
    for algorithm in ("vai", "sac"):
        for mode in ("train", "color_hard"):
            cell = table["cells"][TASK][algorithm][mode]
            run_scores = []
            for seed in (0, 1):
                result = json.loads((sweep_dir / "results" / f"{TASK}-{algorithm}-seed{seed}.json").read_text())
                assert result["frames"] == 30 * 8 and result["train_seconds"] > 0
                run_scores.append(float(np.mean(result["returns"][mode])))
            # The training seeds are the samples: mean and sample std of each run's mean return.
            assert cell["scores"] == pytest.approx(run_scores)
            assert cell["mean"] == pytest.approx(np.mean(run_scores))
            assert cell["std"] == pytest.approx(np.std(run_scores, ddof=1))
            worst = number_format([cell["mean"]]).format(min(run_scores))
            row = next(line for line in markdown if line.startswith(f"| {algorithm} |"))
            assert f"({worst})" in row  # the worst training seed beside the mean
            interval = table["aggregate"][algorithm][mode]
            assert min(run_scores) <= interval["low"] <= interval["iqm"] <= interval["high"] <= max(run_scores)
    text = (sweep_dir / "table.md").read_text()
    assert "vai sweep cartpole_balance --algos vai sac" in text  # the exact command
    assert "adapter backgrounds:" in text and "Commit " in text and "machine:" in text
    assert "| cartpole_balance-sac-seed1 | 240 |" in text  # each run's frames and wall time
    assert table["vision"][TASK]["keypoints"] == 12 and "adapter" in table["vision"][TASK]["mask_iou"]["train"]
    assert (sweep_dir / "bars.png").stat().st_size > 0
    assert (sweep_dir / ".gitignore").read_text().splitlines()[1:] == ["runs/", "logs/", ".vai.lock"]
    # vai runs see through the task's one adapter, and their results name it; the baselines none.
    config = json.loads((sweep_dir / "runs" / TASK / "vai-seed1" / "config.json").read_text())
    assert Path(config["adapter"]) == sweep_dir / "runs" / TASK / "adapter.safetensors"
    adapter = table["vision"][TASK]["adapter_sha256"]
    for seed in (0, 1):
        for algorithm, seen in (("vai", adapter), ("sac", None)):
            result = json.loads((sweep_dir / "results" / f"{TASK}-{algorithm}-seed{seed}.json").read_text())
            assert result["adapter_sha256"] == seen
    assert table["other_adapter"] == [] and "another adapter" not in text


def test_a_finished_sweep_is_reused_and_other_settings_are_refused(sweep_dir, data_dir):
    env = {"VAI_DATA_DIR": str(data_dir)}
    before = {path: path.stat().st_mtime_ns for path in (sweep_dir / "results").iterdir()}
    again = run_vai(*sweep_args(sweep_dir), env=env)
    assert again.returncode == 0, again.stderr
    assert "4 of 4 runs finished, 0 to run" in again.stdout
    assert {path: path.stat().st_mtime_ns for path in (sweep_dir / "results").iterdir()} == before
    record = (sweep_dir / "sweep.json").read_text()
    other = run_vai(*sweep_args(sweep_dir, settings=[*TINY, "train_steps=31"]), env=env)
    assert_user_error(other, str(sweep_dir), "train_steps 30 -> 31", "--out")
    assert (sweep_dir / "sweep.json").read_text() == record


def test_a_killed_sweep_resumes_to_the_same_table(sweep_dir, data_dir, tmp_path):
    """kill -9 of the sweep while a run trains: its workers die with it (the run directories' locks
    free), and the same command finishes the sweep with the table of one never interrupted. (The
    baselines alone: they need no vision stage, and give the uninterrupted sweep's cells.)"""
    out = tmp_path / "sweep"
    args = sweep_args(out, "--workers", "1", algos=("sac",))  # one at a time: the kill lands while seed 1 is left
    env = {**os.environ, "VAI_DATA_DIR": str(data_dir)}
    process = subprocess.Popen(
        [sys.executable, "-m", "vai.cli", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while not list((out / "results").glob(f"{TASK}-*-seed*.json")) and process.poll() is None:
        assert time.monotonic() < deadline, "no run finished"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(list((out / "results").glob(f"{TASK}-*-seed*.json"))) == 1, "the kill must land while a run is left"
    assert not (out / "runs" / TASK / "transporter.safetensors").exists()  # no vision stage for baselines
    resumed = run_vai(*args, env={"VAI_DATA_DIR": str(data_dir)})
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "1 of 2 runs finished" in resumed.stdout
    assert cells(out)["cells"][TASK]["sac"] == cells(sweep_dir)["cells"][TASK]["sac"]


def test_ray_runs_the_same_sweep_to_the_same_table(sweep_dir, data_dir, tmp_path):
    """The same run as a Ray task on a local instance: the same scores (vai's seed 1, seeing through the
    adapter the local sweep made)."""
    pytest.importorskip("ray", reason="the Ray backend is an optional extra: pip install -e .[ray]")
    out = tmp_path / "sweep"
    (out / "results").mkdir(parents=True)
    shutil.copy(sweep_dir / "results" / f"{TASK}-vision.json", out / "results")
    shutil.copytree(
        sweep_dir / "runs" / TASK, out / "runs" / TASK, ignore=shutil.ignore_patterns("*-seed*", ".vai.lock")
    )
    env = {"VAI_DATA_DIR": str(data_dir), "RAY_USAGE_STATS_ENABLED": "0"}
    result = run_vai(*sweep_args(out, "--ray", algos=("vai",), seeds="1"), env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "on Ray" in result.stdout
    local, remote = cells(sweep_dir)["cells"][TASK], cells(out)["cells"][TASK]
    for mode in ("train", "color_hard"):
        assert remote["vai"][mode]["scores"] == [local["vai"][mode]["scores"][1]]


def test_a_committed_sweep_continues_with_its_committed_adapter(sweep_dir, data_dir, tmp_path):
    """A clone holds what git keeps of a sweep (no runs/, no logs/): a run left to do trains behind the
    task's committed adapter, restored, not behind a new one; a committed adapter that is not the one
    the vision record names is refused."""
    clone = tmp_path / "clone"
    shutil.copytree(sweep_dir, clone, ignore=shutil.ignore_patterns("runs", "logs", ".vai.lock"))
    assert sorted(path.name for path in (clone / "vision" / TASK).iterdir()) == sorted(VISION_FILES)
    (clone / "results" / f"{TASK}-vai-seed1.json").unlink()
    record = json.loads((clone / "sweep.json").read_text())  # made where the data lay elsewhere
    record["backgrounds"] = "/elsewhere/data/" + Path(record["backgrounds"]).name
    (clone / "sweep.json").write_text(json.dumps(record))
    tampered = tmp_path / "tampered"
    shutil.copytree(clone, tampered)
    env = {"VAI_DATA_DIR": str(data_dir)}
    result = run_vai(*sweep_args(clone), env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "committed Transporter and adapter restored" in result.stdout
    assert "vision stages to run for no task(s)" in result.stdout
    assert cells(clone)["cells"][TASK]["vai"] == cells(sweep_dir)["cells"][TASK]["vai"]
    adapter = (tampered / "vision" / TASK / "adapter.safetensors").read_bytes()
    (tampered / "vision" / TASK / "adapter.safetensors").write_bytes(adapter[:-4] + b"\0\0\0\0")
    assert_user_error(run_vai(*sweep_args(tampered), env=env), "is not the adapter", "restore both from git")
    assert not (tampered / "runs" / TASK / "adapter.safetensors").exists()


def test_every_finished_run_exports_as_a_bundle_that_replays_its_card(sweep_dir, data_dir, tmp_path):
    from vai.pretrained import bundles, load

    out = tmp_path / "pretrained"
    env = {"VAI_DATA_DIR": str(data_dir), "VAI_PRETRAINED": str(out)}
    exported = run_vai("pretrained", "export", str(sweep_dir), env=env)
    assert exported.returncode == 0, exported.stderr
    assert "4 bundle(s) written" in exported.stdout
    names = [bundle.name for bundle in bundles(out)]
    assert names == [f"{TASK}-{algorithm}-seed{seed}" for algorithm in ("sac", "vai") for seed in (0, 1)]
    again = run_vai("pretrained", "export", str(sweep_dir), env=env)
    assert "0 bundle(s) written" in again.stdout and again.stdout.count("bundle exists, kept") == 4
    agent = load(TASK, "vai", seed=1, folder=out)
    result = json.loads((sweep_dir / "results" / f"{TASK}-vai-seed1.json").read_text())
    assert agent.card["returns"]["color_hard"]["mean"] == pytest.approx(np.mean(result["returns"]["color_hard"]))
    assert agent.card["adapter_sha256"] == result["adapter_sha256"]
    card = (out / f"{TASK}-vai-seed1" / "README.md").read_text()
    assert "video modes composited by greenscreen" in card  # the quick preset's, recorded with the sweep
    assert agent.make_env("train").unwrapped.compositing == "greenscreen"
    for mode in ("train", "color_hard"):
        assert agent.first_episode(mode, data_dir) == pytest.approx(result["returns"][mode][0][0], rel=1e-6)
    obs, _ = agent.make_env("train").reset(seed=0)
    assert agent.act(obs).shape == (1,)
    listed = run_vai("pretrained", "list", env=env)
    assert listed.returncode == 0 and f"{TASK}-vai-seed1" in listed.stdout
    checked = run_vai("pretrained", "check", f"{TASK}-sac-seed0", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("same") == 2
    weights = out / f"{TASK}-sac-seed1" / "agent.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    assert_user_error(run_vai("pretrained", "show", f"{TASK}-sac-seed1", env=env), "checksum", "export it anew")
    assert_user_error(run_vai("pretrained", "show", "walker_walk-vai-seed0", env=env), "no pretrained bundle")


def test_an_oracle_drawerworld_sweep_runs_no_vision_stage_and_tables_success(tmp_path, data_dir, sweep_dir):
    out = tmp_path / "oracle"
    args = sweep_args(out, "--attention", "oracle", "learned", algos=("sac",), seeds="0")
    args[1] = "drawer_open"
    args[args.index("color_hard")] = "black"
    result = run_vai(*args, env={"VAI_DATA_DIR": str(data_dir)})
    assert result.returncode == 0, result.stderr + result.stdout
    assert json.loads((out / "sweep.json").read_text())["algorithms"] == ["sac+oracle", "sac"]
    assert sorted(path.name for path in (out / "results").iterdir()) == [
        "drawer_open-sac+oracle-seed0.json",
        "drawer_open-sac-seed0.json",
    ]  # no TASK-vision.json: neither row sees through a learned adapter
    text = (out / "table.md").read_text()
    assert "| sac+oracle |" in text
    # DrawerWorld's table gives each texture's success rate beside its return; DeepMind Control's has none.
    run = json.loads((out / "results" / "drawer_open-sac+oracle-seed0.json").read_text())
    table = json.loads((out / "table.json").read_text())
    for mode in ("train", "black"):
        flags = run["success"][mode]  # evaluation seeds x episodes, 1 for an episode that succeeded
        cell = table["success"]["drawer_open"]["sac+oracle"][mode]
        assert cell["scores"] == [float(np.mean(flags))] and 0 <= cell["mean"] <= 1
    rate = table["success"]["drawer_open"]["sac+oracle"]["black"]["mean"]
    assert "Success rate, mean ± std over training seeds" in text and f"| sac+oracle | {rate:.2f} ± 0.00" in text
    assert "Success rate" not in (sweep_dir / "table.md").read_text()


def test_seeds_parse_as_ranges_and_lists():
    assert parse_seeds(["0-2"]) == [0, 1, 2]
    assert parse_seeds(["0", "1", "2"]) == [0, 1, 2]
    assert parse_seeds(["0,3-4", "3"]) == [0, 3, 4]
    for bad in (["2-0"], ["a"], ["-1"], [""]):
        with pytest.raises(UserError, match="--seeds"):
            parse_seeds(bad)


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--algos", "ppo"], "ppo"),
        (["--mode", "video_medium"], "video_medium"),
        (["--seeds", "3-1"], "--seeds"),
        (["--workers", "0"], "--workers"),
        (["--set", "warp=9"], "warp=9"),
    ],
)
def test_bad_sweeps_are_one_line_and_write_nothing(tmp_path, extra, needle):
    out = tmp_path / "sweep"
    args = ["sweep", TASK, "--out", str(out), *extra]
    assert_user_error(run_vai(*args), needle)
    assert not out.exists()


def test_a_sweep_into_a_file_is_refused(tmp_path):
    out = tmp_path / "taken"
    out.write_text("not a sweep")
    assert_user_error(run_vai("sweep", TASK, "--out", str(out)), str(out), "--out")
    assert out.read_text() == "not a sweep"


def test_a_killed_call_still_counts_in_the_run_wall_time(tmp_path):
    """The part a kill cut off counts up to the agent directory's last write before it."""
    from vai.sweep.jobs import WallClock

    clock = WallClock(tmp_path)
    clock.start("train")
    started = json.loads((tmp_path / "sweep_seconds.json").read_text())["train_started"]
    checkpoint = tmp_path / "checkpoints" / "last.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"the last write before the kill")
    os.utime(checkpoint, (started + 50, started + 50))
    os.utime(tmp_path / "sweep_seconds.json", (started, started))
    resumed = WallClock(tmp_path)  # the next call, after the kill
    resumed.start("train")
    assert resumed.totals["train"] == pytest.approx(50, abs=0.1)
    assert resumed.stop("train") >= 50
