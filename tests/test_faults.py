"""Faults around a run, in real processes on real files: two owners, a file or a read-only file system
where a directory should be, a full disk, a damaged replay episode, a kill in the middle of a write."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import assert_user_error, run_vai
from test_rl_cli import TASK, TINY, rows

from vai.atomic import is_temporary
from vai.lock import LOCK_NAME

SAC = ["train", TASK, "--algo", "sac", *TINY]
BIG_CHECKPOINT = "hidden_dim=1024"
"""Wide critic and actor layers: a checkpoint of some 45 MB, beyond FILE_LIMIT, while an episode of
cartpole frames (126 x 3 x 100 x 100 bytes, under 4 MB) stays below it."""
FILE_LIMIT = 10 * 2**20


KILLED_BEFORE_RENAME = """
import os, signal, sys
def kill_before_rename(event, args):
    if event == "os.rename" and os.path.basename(args[0]).startswith(".last.pt."):
        os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(kill_before_rename)
from vai.cli import main
sys.exit(main())
"""
"""``vai`` that kills itself (SIGKILL) when its checkpoint's temporary file is written and not yet renamed."""


def vai_process(*args: str, data_dir: Path, file_limit: int | None = None, program: str | None = None):
    """``vai ARGS`` started in a fresh interpreter (``program``: Python code in place of ``vai.cli``);
    with ``file_limit`` no file it writes may grow past it (``RLIMIT_FSIZE``, which holds for root too):
    a write beyond it fails as on a full disk."""

    def limit() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing the process

    env = {**os.environ, "VAI_DATA_DIR": str(data_dir)}
    command = [sys.executable, *(["-c", program] if program else ["-m", "vai.cli"]), *args]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen(command, env=env, preexec_fn=limit, **pipes)


def finished(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def temporaries(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if is_temporary(path.name)]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_one_process_owns_an_agent_directory(tmp_path, data_dir):
    out = tmp_path / "agent"
    command = [*SAC, "train_steps=100000", "eval_every=100000", "checkpoint_every=100000", "--out", str(out)]
    first = vai_process(*command, data_dir=data_dir)
    try:
        deadline = time.monotonic() + 120
        while not (out / "config.json").is_file() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, first.stderr.read()
        second = run_vai(*command, env={"VAI_DATA_DIR": str(data_dir)})
        assert_user_error(second, str(out), f"PID {first.pid}", "in use")
    finally:
        first.send_signal(signal.SIGKILL)  # the lock dies with its holder
        first.wait()
    third = run_vai(*SAC, "train_steps=1", "--out", str(out), env={"VAI_DATA_DIR": str(data_dir)})
    assert third.returncode == 0, third.stderr
    assert (out / LOCK_NAME).is_file() and (out / "checkpoints" / "last.pt").is_file()


def test_an_output_path_that_is_a_file_is_refused_in_one_line(tmp_path, data_dir):
    blocking = tmp_path / "a_file"
    blocking.write_text("not a directory\n")
    env = {"VAI_DATA_DIR": str(data_dir)}
    for out in (blocking, blocking / "agent"):
        assert_user_error(run_vai(*SAC, "train_steps=1", "--out", str(out), env=env), f"{blocking} is a file", "--out")
    collect = run_vai("collect", TASK, "--frames", "5", "--run", str(blocking / "run"), env=env)
    assert_user_error(collect, f"{blocking} is a file")
    evaluation = run_vai("eval", str(tmp_path / "last.pt"), "--out", str(blocking), env=env)
    assert_user_error(evaluation, "not found")  # what it reads is checked before where it writes
    assert blocking.read_text() == "not a directory\n"


@pytest.fixture
def read_only(tmp_path):
    """A read-only file system (a tmpfs mounted ``ro``), where root cannot write either; skipped where
    this process may not mount one."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_directory_is_refused_in_one_line(read_only, data_dir):
    env = {"VAI_DATA_DIR": str(data_dir)}
    train = run_vai(*SAC, "train_steps=1", "--out", str(read_only / "agent"), env=env)
    assert_user_error(train, str(read_only / "agent"), "read-only", "--out")
    collect = run_vai("collect", TASK, "--frames", "5", "--run", str(read_only), env=env)
    assert_user_error(collect, str(read_only), "read-only")


def killed_after_first_checkpoint(command: list[str], out: Path, data_dir: Path) -> None:
    """Run ``vai COMMAND`` and kill it (SIGKILL) once its first checkpoint is in ``out``."""
    process = vai_process(*command, data_dir=data_dir)
    deadline = time.monotonic() + 300
    while not (out / "checkpoints" / "last.pt").is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (out / "replay").is_dir(), "killed before the run ended"


def test_a_full_disk_keeps_the_last_checkpoint(tmp_path, data_dir):
    out = tmp_path / "agent"
    command = [*SAC, BIG_CHECKPOINT, "train_steps=375", "eval_every=100000", "checkpoint_every=125"]
    killed_after_first_checkpoint([*command, "--out", str(out)], out, data_dir)
    checkpoint = out / "checkpoints" / "last.pt"
    assert checkpoint.stat().st_size > FILE_LIMIT
    good = digest(checkpoint)
    # The next checkpoint cannot be written: torch says only "enforce fail ... unexpected pos".
    resume = ["train", TASK, "--algo", "sac", "--out", str(out), "--resume"]
    full = finished(vai_process(*resume, data_dir=data_dir, file_limit=FILE_LIMIT))
    assert_user_error(full, f"cannot write {checkpoint}", "free space", f"{checkpoint} is intact", "--resume")
    assert digest(checkpoint) == good and not temporaries(out)
    again = run_vai(*resume, env={"VAI_DATA_DIR": str(data_dir)})  # space freed: it goes on from step 125
    assert again.returncode == 0, again.stderr
    assert [row["step"] for row in rows(out / "train.csv")] == ["125", "250", "375"]


def test_a_damaged_or_missing_replay_episode_stops_the_resume_in_one_line(tmp_path, data_dir):
    from conftest import damaged_copy

    out = tmp_path / "agent"
    command = [*SAC, "train_steps=375", "eval_every=100000", "checkpoint_every=125", "--out", str(out)]
    killed_after_first_checkpoint(command, out, data_dir)
    episode = out / "replay" / "episode_000000.npz"
    size = episode.stat().st_size
    damaged_copy(episode, episode, size // 2, size // 2 + 64)
    resume = ["train", TASK, "--algo", "sac", "--out", str(out), "--resume"]
    env = {"VAI_DATA_DIR": str(data_dir)}
    assert_user_error(run_vai(*resume, env=env), str(episode), "damaged", "another --out")
    episode.unlink()
    assert_user_error(run_vai(*resume, env=env), str(episode), "missing", "another --out")


def test_a_run_killed_writing_its_first_checkpoint_starts_afresh_without_leftovers(tmp_path, data_dir):
    out = tmp_path / "agent"
    command = [*SAC, "train_steps=30", "eval_every=100000", "--out", str(out)]
    killed = finished(vai_process(*command, data_dir=data_dir, program=KILLED_BEFORE_RENAME))
    assert killed.returncode == -signal.SIGKILL
    assert [path.parent.name for path in temporaries(out)] == ["checkpoints"]
    assert not (out / "checkpoints" / "last.pt").exists()
    env = {"VAI_DATA_DIR": str(data_dir)}
    resume = run_vai(*command, "--resume", env=env)
    assert_user_error(resume, "nothing to resume", "first checkpoint", "without --resume starts it afresh")
    again = run_vai(*command, env=env)
    assert again.returncode == 0, again.stderr
    assert (out / "checkpoints" / "last.pt").is_file() and not temporaries(out)


def test_arguments_are_checked_before_the_first_byte_is_written(tmp_path, data_dir):
    env = {"VAI_DATA_DIR": str(data_dir)}
    out = tmp_path / "agent"
    assert_user_error(run_vai(*SAC, "--out", str(out), "--eval-mode", "colour", "--tensorboard", env=env), "colour")
    assert_user_error(run_vai(*SAC, "train_steps=0", "--out", str(out), env=env), "train_steps")
    empty = {"VAI_DATA_DIR": str(tmp_path / "no_data")}
    assert_user_error(run_vai(*SAC, "--out", str(out), "--eval-mode", "video_easy", env=empty), "video_easy")
    assert not out.exists()
