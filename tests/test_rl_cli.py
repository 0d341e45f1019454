"""vai train / vai eval through the CLI on the real cartpole at tiny sizes: artifacts, resume, errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_cli import assert_user_error, run_vai

TASK = "cartpole_balance"  # 125 agent steps per episode (action repeat 8)
TINY_AGENT = [
    "init_steps=20",
    "batch_size=8",
    "num_filters=4",
    "feature_dim=8",
    "hidden_dim=16",
    "num_layers=1",
    "num_shared_layers=1",
    "eval_episodes=1",
]
"""A tiny network and schedule, so a real cartpole run takes seconds (also used by test_pipeline)."""
TINY = ["--preset", "quick", "--set", *TINY_AGENT]


def rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def tensorboard_steps(folder, tag: str) -> list[int]:
    """The steps TensorBoard shows for ``tag`` from a folder of event files."""
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    return [event.step for event in accumulator.Scalars(tag)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """One tiny sac run of two episodes with evaluation in two modes, then `vai eval` on it."""
    out = tmp_path_factory.mktemp("agent")
    env = {"VAI_DATA_DIR": str(data_dir)}
    result = run_vai(
        "train",
        TASK,
        "--algo",
        "sac",
        *TINY,
        "train_steps=250",
        "eval_every=250",
        "checkpoint_every=125",
        "--out",
        str(out),
        "--eval-mode",
        "train",
        "color_hard",
        "--tensorboard",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    evaluation = run_vai(
        "eval",
        str(out / "checkpoints" / "last.pt"),
        "--mode",
        "train",
        "video_hard",
        "--seeds",
        "2",
        "--episodes",
        "1",
        env=env,
    )
    assert evaluation.returncode == 0, evaluation.stderr
    return out, evaluation


def test_training_writes_config_logs_and_checkpoint(trained):
    out, _ = trained
    config = json.loads((out / "config.json").read_text())
    assert config["algorithm"] == "sac" and config["encoder_layers"] == [1, 1]
    # Lengths count agent steps (VAI's train_steps), whatever the action repeat; the replay buffer
    # keeps train_steps // 2 transitions (VAI's rule).
    assert config["preset"]["train_steps"] == 250 and config["replay_transitions"] == 125
    train = rows(out / "train.csv")
    assert [row["episode"] for row in train] == ["1", "2"]
    assert [row["step"] for row in train] == ["125", "250"]
    assert [row["frames"] for row in train] == ["1000", "2000"]  # simulator frames, for plots: 8 per step
    assert train[1]["critic_loss"] and float(train[1]["critic_loss"]) >= 0
    assert [row["step"] for row in rows(out / "eval_color_hard.csv")] == ["0", "250"]  # untrained, then end
    assert tensorboard_steps(out / "tensorboard", "eval_train/return") == [0, 250]
    assert tensorboard_steps(out / "tensorboard", "train/episode") == [125, 250]
    assert (out / "checkpoints" / "last.pt").is_file()
    assert not (out / "replay").exists()  # only kept while a resume may need it


def test_eval_writes_a_table_over_seeds(trained):
    out, evaluation = trained
    results = json.loads((out / "results.json").read_text())
    returns = results["returns"]["sac"][TASK]
    assert set(returns) == {"train", "video_hard"}
    assert all(len(per_seed) == 2 and len(per_seed[0]) == 1 for per_seed in returns.values())
    # VAI's protocol: seed i plays video i.
    assert len(set(results["videos"][TASK]["video_hard"])) == 2
    summary = results["summary"]["sac"]  # the table's numbers, for programs
    for mode, per_seed in returns.items():
        seed_means = np.mean(per_seed, axis=1)
        assert summary["tasks"][TASK][mode]["mean"] == pytest.approx(seed_means.mean())
        assert summary["tasks"][TASK][mode]["std"] == pytest.approx(seed_means.std(ddof=1))
        assert summary["aggregate"][mode]["tasks"] == 1
        assert (
            summary["aggregate"][mode]["low"] <= summary["aggregate"][mode]["iqm"] <= summary["aggregate"][mode]["high"]
        )
    table = (out / "results.md").read_text()
    assert f"| {TASK} |" in table and "IQM" in table and "±" in evaluation.stdout


def test_eval_names_missing_data_before_playing_any_mode(trained, tmp_path):
    out, _ = trained
    checkpoint = str(out / "checkpoints" / "last.pt")
    args = ("eval", checkpoint, "--mode", "train", "video_easy", "--seeds", "1", "--out", str(tmp_path / "eval"))
    result = run_vai(*args, env={"VAI_DATA_DIR": str(tmp_path / "empty")})
    assert_user_error(result, "video_easy", "vai data fetch")
    assert not (tmp_path / "eval").exists()


def test_a_killed_run_resumes_where_its_checkpoint_left_off(tmp_path, data_dir):
    out = tmp_path / "agent"
    args = [
        "train",
        TASK,
        "--algo",
        "drq",
        *TINY,
        "train_steps=375",
        "eval_every=12500",
        "checkpoint_every=125",
        "--out",
        str(out),
        "--tensorboard",
    ]
    env = {**os.environ, "VAI_DATA_DIR": str(data_dir)}
    process = subprocess.Popen([sys.executable, "-m", "vai.cli", *args], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoints" / "last.pt").is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    episodes_before = len(rows(out / "train.csv"))
    assert episodes_before in (1, 2), "killed after the first checkpoint, before the run ended"
    resume = ["train", TASK, "--algo", "drq", "--out", str(out), "--resume"]
    env = {"VAI_DATA_DIR": str(data_dir)}
    other = run_vai(*resume, "--set", "batch_size=16", env=env)  # not a setting a resumed run may change
    assert_user_error(other, "batch_size 8 -> 16", "--out")
    assert len(rows(out / "train.csv")) == episodes_before
    again = run_vai(*resume, "--set", "train_steps=500", env=env)  # and train on to 500 agent steps
    assert again.returncode == 0, again.stderr
    train = rows(out / "train.csv")
    assert [row["step"] for row in train] == ["125", "250", "375", "500"]
    assert [row["episode"] for row in train] == ["1", "2", "3", "4"]
    # The resume (without --tensorboard) goes on writing TensorBoard files, and TensorBoard shows each step
    # once: an episode the killed run logged after its checkpoint is hidden, as in train.csv.
    assert tensorboard_steps(out / "tensorboard", "train/episode") == [125, 250, 375, 500]
    assert json.loads((out / "config.json").read_text())["preset"]["train_steps"] == 500
    assert_user_error(run_vai(*resume, "--set", "train_steps=625", env=env), "finished its 500 agent steps")
    done = run_vai("train", TASK, "--algo", "drq", *TINY, "--out", str(out))
    assert_user_error(done, "--resume")


def test_a_diverging_run_stops_with_a_saved_state(tmp_path, data_dir):
    out = tmp_path / "agent"
    result = run_vai(
        "train",
        TASK,
        "--algo",
        "sac",
        *TINY,
        "train_steps=125",
        "init_temperature=inf",
        "--out",
        str(out),
        env={"VAI_DATA_DIR": str(data_dir)},
    )
    assert result.returncode == 1
    assert "diverged" in result.stderr and "Traceback" not in result.stderr
    assert (out / "checkpoints" / "diverged.pt").is_file()


def test_user_errors_name_the_fix(tmp_path, data_dir):
    env = {"VAI_DATA_DIR": str(data_dir)}
    assert_user_error(run_vai("train", TASK, "--algo", "ppo", env=env), "unknown algorithm", "svea")
    assert_user_error(run_vai("train", TASK, "--run", str(tmp_path), env=env), "adapter", "vai adapter")
    assert_user_error(
        run_vai("train", TASK, "--algo", "sac", "--out", str(tmp_path), "--resume", env=env), "nothing to resume"
    )
    assert_user_error(run_vai("train", TASK, "--algo", "sac", "--device", "cuda:7", env=env), "GPU")
    agent = ("train", TASK, "--algo", "sac", "--out", str(tmp_path / "agent"))
    assert_user_error(run_vai(*agent, "--set", "downsample=5", env=env), "downsample=5", "image_size=84")
    assert_user_error(run_vai(*agent, "--set", "num_layers=40", env=env), "40 conv layers", "num_layers")
    assert_user_error(run_vai(*agent, "--set", "aux_tasks=inverse,colour", env=env), "colour", "rotation")
    assert not (tmp_path / "agent").exists()  # refused before anything was written
    hidden = tmp_path / "no_tensorboard" / "tensorboard"  # a package that fails to import, as a missing one does
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('no tensorboard here')\n")
    without = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(hidden.parent), os.environ.get("PYTHONPATH")]))}
    assert_user_error(run_vai(*agent, "--tensorboard", env=without), "pip install vai[tensorboard]")
    run = ("run", TASK, "--run", str(tmp_path / "run"), "--tensorboard")
    assert_user_error(run_vai(*run, env=without), "pip install vai[tensorboard]")
    assert not (tmp_path / "agent").exists() and not (tmp_path / "run").exists()
    (tmp_path / "bad.pt").write_text("no")
    assert_user_error(run_vai("eval", str(tmp_path / "bad.pt"), env=env), "unreadable")
