"""The `vai` command as a user runs it: help, the gallery, and one-line errors with exit code 2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest


def run_vai(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed CLI module in a fresh interpreter, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vai.cli", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=600
    )


def assert_user_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("vai: error:")]
    assert len(error_lines) == 1, result.stderr
    for needle in needles:
        assert needle in error_lines[0]


def test_help_lists_every_command():
    result = run_vai("--help")
    assert result.returncode == 0
    for command in ("env", "data"):
        assert command in result.stdout
    env_help = run_vai("env", "--help").stdout
    assert "list" in env_help and "show" in env_help
    data_help = run_vai("data", "--help").stdout
    for command in ("list", "verify", "fetch"):
        assert command in data_help


def test_env_list_names_every_task_and_its_foreground():
    from vai.tasks import TASKS

    result = run_vai("env", "list")
    assert result.returncode == 0
    for task in TASKS:
        assert task in result.stdout
    assert result.stdout.count("foreground:") == len(TASKS)


def test_env_show_writes_a_grid_with_a_row_per_mode(tmp_path, data_dir):
    out = tmp_path / "gallery" / "cartpole.png"
    result = run_vai(
        "env",
        "show",
        "cartpole_balance",
        "--mode",
        "train",
        "video_hard",
        "--frames",
        "2",
        "--every",
        "3",
        "--out",
        str(out),
        "--data-dir",
        str(data_dir),
    )
    assert result.returncode == 0, result.stderr
    image = cv2.imread(str(out))
    assert image is not None
    from vai.envs.gallery import LABEL_WIDTH, SCALE

    # Two rows of 200 px, plus the header; label, 2 frames and the mask per row.
    assert image.shape[0] == 36 + 2 * 100 * SCALE
    assert image.shape[1] == LABEL_WIDTH + 3 * 100 * SCALE
    assert not list(out.parent.glob(".*.tmp")), "a temporary file was left behind"
    assert out.stat().st_mode & 0o044, "the PNG should be readable by others, like any file the user writes"


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("env", "show", "walker_run"), ("unknown task", "walker_walk")),
        (("env", "show", "walker_walk", "--mode", "sepia"), ("unknown mode", "color_hard", "videoN")),
        (("env", "show", "drawer_open", "--mode", "plaid"), ("unknown mode", "blanket")),
        (("env", "show", "walker_walk", "--mode", "video5"), ("video5", "video0.mp4, video1.mp4")),
    ],
)
def test_bad_choices_are_one_line_errors(args, needles, data_dir, tmp_path):
    result = run_vai(*args, "--data-dir", str(data_dir), "--out", str(tmp_path / "x.png"))
    assert_user_error(result, *needles)
    assert not (tmp_path / "x.png").exists()


def test_missing_data_names_the_data_set_and_the_fetch_command(tmp_path):
    result = run_vai("env", "show", "walker_walk", "--mode", "video_hard", "--data-dir", str(tmp_path / "empty"))
    assert_user_error(result, "video_hard", "vai data fetch video_hard")


def test_corrupted_video_is_a_user_error(tmp_path, data_dir):
    folder = tmp_path / "video_easy"
    folder.mkdir()
    for name in ("video0.mp4", "video1.mp4"):
        shutil.copy(data_dir / "video_easy" / name, folder / name)
    (folder / "video0.mp4").write_bytes(b"\x00not a video" * 100)
    result = run_vai("env", "show", "walker_walk", "--mode", "video0", "--data-dir", str(tmp_path))
    assert_user_error(result, "video0.mp4", "vai data verify")


def test_no_gl_backend_is_a_user_error(tmp_path):
    result = run_vai(
        "env", "show", "walker_walk", "--out", str(tmp_path / "x.png"), env={"MUJOCO_GL": "no-such-backend"}
    )
    assert_user_error(result, "MUJOCO_GL")
