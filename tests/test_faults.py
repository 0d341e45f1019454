"""Faults around a run, in real processes on real files: two owners, a file or a read-only file system
where a directory should be, a full disk, a damaged replay episode, a kill in the middle of a write."""

from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
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
        # Before the first checkpoint there is nothing to resume, but the run is not over: say who has it.
        resumed = run_vai(*command, "--resume", env={"VAI_DATA_DIR": str(data_dir)})
        assert_user_error(resumed, str(out), f"PID {first.pid}", "in use")
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


PAGE = os.sysconf("SC_PAGE_SIZE")
"""What a tmpfs counts its space in."""


@pytest.fixture
def mount():
    """``mount(folder, options)`` mounts a tmpfs at ``folder`` for the test and unmounts it after; the test
    is skipped where this process may not mount one."""
    folders = []

    def mount_tmpfs(folder: Path, options: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
        folders.append(folder)
        return folder

    yield mount_tmpfs
    for folder in reversed(folders):
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def read_only(tmp_path, mount):
    """A read-only file system (a tmpfs mounted ``ro``), where root cannot write either."""
    return mount(tmp_path / "read_only", "ro,size=1m")


def nearly_full(mount, folder: Path, room: int) -> Path:
    """A tmpfs at ``folder`` with ``room`` bytes (whole pages) left; a filler file takes the rest."""
    mount(folder, f"size={room + PAGE}")
    (folder / "filler").write_bytes(bytes(PAGE))
    return folder / "filler"


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
    speed = re.search(r"\(([0-9.]+) steps/s\)", again.stdout)
    assert speed and float(speed[1]) > 0, again.stdout  # the steps of this call over its time
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


def test_a_tensorboard_folder_that_cannot_be_written_is_refused_in_one_line(tmp_path, mount, data_dir):
    pytest.importorskip("tensorboard")
    env = {"VAI_DATA_DIR": str(data_dir)}
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "tensorboard").write_text("a file\n")
    read_only = mount(tmp_path / "read_only" / "tensorboard", "ro,size=1m")
    for out, why in ((blocked, f"{blocked / 'tensorboard'} is a file"), (read_only.parent, "read-only")):
        train = run_vai(*SAC, "train_steps=1", "--tensorboard", "--out", str(out), env=env)
        assert_user_error(train, str(out / "tensorboard"), why, "--out")
    assert (blocked / "tensorboard").read_text() == "a file\n" and not any(read_only.iterdir())


def test_a_full_disk_under_tensorboard_stops_the_run_at_the_refused_row(tmp_path, mount, data_dir):
    pytest.importorskip("tensorboard")
    from test_rl_cli import tensorboard_steps

    out = tmp_path / "agent"
    filler = nearly_full(mount, out / "tensorboard", PAGE)  # a page holds some 60 scalars: full mid-run
    command = [*SAC, "train_steps=750", "eval_every=125", "checkpoint_every=125", "--tensorboard", "--out", str(out)]
    env = {"VAI_DATA_DIR": str(data_dir)}
    full = run_vai(*command, env=env)
    assert_user_error(full, str(out / "tensorboard"), "no space left", "is intact", "--resume")
    filler.unlink()  # space freed: the run goes on from its last checkpoint
    again = run_vai("train", TASK, "--algo", "sac", "--out", str(out), "--resume", env=env)
    assert again.returncode == 0, again.stderr
    steps = [125, 250, 375, 500, 625, 750]
    assert [int(row["step"]) for row in rows(out / "train.csv")] == steps
    assert tensorboard_steps(out / "tensorboard", "train/return") == steps
    assert tensorboard_steps(out / "tensorboard", "eval_train/return") == [0, *steps]


def fetch_drawerworld(root: Path, mirror: Path) -> subprocess.CompletedProcess:
    return run_vai("data", "fetch", "drawerworld", "--mirror", str(mirror), "--data-dir", str(root))


def files_under(root: Path) -> list[str]:
    """Every file below ``root``, hidden ones too, so that a partial download would show."""
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def test_a_data_directory_that_refuses_a_download_is_one_line_and_keeps_no_part(tmp_path, mount, data_dir):
    blocking = tmp_path / "a_file"
    blocking.write_text("not a directory\n")
    assert_user_error(fetch_drawerworld(blocking, data_dir), f"{blocking} is a file", "--data-dir")
    assert blocking.read_text() == "not a directory\n"
    in_the_way = tmp_path / "data" / "drawerworld" / "blanket.png"
    in_the_way.mkdir(parents=True)
    assert_user_error(fetch_drawerworld(tmp_path / "data", data_dir), str(in_the_way), "is a directory", "--data-dir")
    assert files_under(tmp_path / "data") == []
    read_only = mount(tmp_path / "read_only", "ro,size=1m")
    assert_user_error(fetch_drawerworld(read_only, data_dir), str(read_only), "read-only", "--data-dir")


def test_a_full_disk_keeps_the_files_fetched_before_and_no_part(tmp_path, mount, data_dir):
    blanket, fabric = data_dir / "drawerworld" / "blanket.png", data_dir / "drawerworld" / "fabric.png"
    assert fabric.stat().st_size > PAGE
    root = mount(tmp_path / "full", f"size={-(-blanket.stat().st_size // PAGE) * PAGE + PAGE}")  # blanket fits
    full = fetch_drawerworld(root, data_dir)
    assert_user_error(full, str(root / "drawerworld" / "fabric.png"), "no space left", "--data-dir")
    assert files_under(root) == ["drawerworld/blanket.png"]
    assert digest(root / "drawerworld" / "blanket.png") == digest(blanket)


def test_a_damaged_data_file_is_one_line_naming_its_check(tmp_path, data_dir):
    damaged = tmp_path / "data"
    for folder in ("colors", "drawerworld"):
        shutil.copytree(data_dir / folder, damaged / folder, copy_function=shutil.copyfile)
    colours = damaged / "colors" / "color_hard.json"
    colours.write_text('[{"grid_rgb1": [0.1')
    texture = damaged / "drawerworld" / "blanket.png"
    texture.write_bytes(texture.read_bytes()[:3000])  # cut short, as by an interrupted copy
    env = {"VAI_DATA_DIR": str(damaged)}
    shown = run_vai("env", "show", TASK, "--mode", "color_hard", "--out", str(tmp_path / "colours.png"), env=env)
    assert_user_error(shown, str(colours), "vai data verify colors")
    shown = run_vai("env", "show", "drawer_open", "--mode", "blanket", "--out", str(tmp_path / "texture.png"), env=env)
    assert_user_error(shown, str(texture), "vai data verify drawerworld")
    assert not list(tmp_path.glob("*.png"))


def test_a_damaged_record_or_log_stops_the_resume_in_one_line(tmp_path, data_dir):
    out = tmp_path / "agent"
    command = [*SAC, "train_steps=375", "eval_every=100000", "checkpoint_every=125", "--out", str(out)]
    killed_after_first_checkpoint(command, out, data_dir)
    resume = ["train", TASK, "--algo", "sac", "--out", str(out), "--resume"]
    env = {"VAI_DATA_DIR": str(data_dir)}
    config = (out / "config.json").read_text()
    (out / "config.json").write_text(config[: len(config) // 2])
    assert_user_error(run_vai(*resume, env=env), str(out / "config.json"), "damaged", "delete it")
    (out / "config.json").write_text(config)
    log = out / "train.csv"
    log.write_text(log.read_text() + "\x00\x00garbage,1\n")
    assert_user_error(run_vai(*resume, env=env), str(log), "damaged row", "delete")


WRITERS_UNDER_A_FILE_LIMIT = """
import sys
from pathlib import Path
import numpy as np, torch
from vai.checkpoints import save_tensors
from vai.errors import WriteFailed
from vai.rl.showcase import write_mp4
from vai.vision.adapter import CHECKPOINT
folder = Path(sys.argv[1])
writes = {
    "adapter.safetensors": lambda path: save_tensors(CHECKPOINT, {"weight": torch.zeros(2**16)}, {}, path),
    "adapted.mp4": lambda path: write_mp4([np.full((96, 96, 3), i, np.uint8) for i in range(200)], path),
}
for name, write in writes.items():
    try:
        write(folder / name)
    except WriteFailed as failure:
        print(failure)
"""
"""Writers that wrap a refused write in errors of their own (safetensors) or only warn (OpenCV's video
writer), each writing a file beyond the file size limit it runs under."""


def test_writers_that_do_not_raise_oserror_are_refused_in_one_line_too(tmp_path):
    process = vai_process(str(tmp_path), data_dir=tmp_path, file_limit=16 * 1024, program=WRITERS_UNDER_A_FILE_LIMIT)
    refused = finished(process)
    assert refused.returncode == 0, refused.stderr
    lines = refused.stdout.splitlines()
    assert len(lines) == 2, refused.stdout
    assert f"cannot write {tmp_path / 'adapter.safetensors'}: the file outgrew" in lines[0]
    assert f"cannot write {tmp_path / 'adapted.mp4'} (OpenCV wrote" in lines[1] and "ulimit -f" in lines[1]
    assert list(tmp_path.iterdir()) == []


def assert_only_line(result: subprocess.CompletedProcess, *needles: str) -> None:
    """A user error whose one line is all the process wrote to stderr (no library's warning before it)."""
    assert_user_error(result, *needles)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_damaged_adapter_is_refused_before_the_out_directory_is_made(tmp_path, data_dir):
    import torch
    from conftest import damaged_copy

    from vai.vision.adapter import AttentionAdapter, save_adapter

    torch.manual_seed(0)
    adapter = save_adapter(AttentionAdapter(), tmp_path / "adapter.safetensors")
    size = adapter.stat().st_size
    damaged_copy(adapter, adapter, size - 256, size - 128)  # inside the weights: the checksum fails
    out = tmp_path / "new" / "agent"
    train = ["train", TASK, "--algo", "vai", *TINY, "--adapter", str(adapter), "--out", str(out)]
    assert_only_line(run_vai(*train, env={"VAI_DATA_DIR": str(data_dir)}), str(adapter), "damaged")
    assert not (tmp_path / "new").exists()


COLLECT_LIMIT = 16 * 2**10
"""A file size limit that 40 or 50 cartpole frames' masks (bit-packed, compressed: about 2 kB) fit in and
their frames (40 x 3 x 100 x 100 bytes, compressed: about 58 kB) do not."""


def test_a_collect_refused_by_a_full_disk_leaves_nothing(tmp_path, data_dir):
    run = tmp_path / "new" / "run"
    collect = ["collect", TASK, "--frames", "40", "--run", str(run)]
    full = finished(vai_process(*collect, data_dir=data_dir, file_limit=COLLECT_LIMIT))
    assert_only_line(full, f"cannot write {run / 'frames.npz'}", "file size limit")
    assert not (tmp_path / "new").exists()  # no masks file, lock or folder of a collect that wrote nothing
    done = run_vai("collect", TASK, "--frames", "10", "--run", str(run), env={"VAI_DATA_DIR": str(data_dir)})
    assert done.returncode == 0, done.stderr
    before = {path.name: digest(path) for path in run.glob("*.npz")}
    extend = finished(vai_process(*collect, "--extend", data_dir=data_dir, file_limit=COLLECT_LIMIT))
    assert_only_line(extend, f"cannot write {run / 'frames.npz'}")
    assert {path.name: digest(path) for path in run.glob("*.npz")} == before  # the old pair, as it was
    assert not temporaries(run)


def test_damaged_videos_and_pickled_checkpoints_are_one_line_and_nothing_else(tmp_path, data_dir):
    import pickle

    data = tmp_path / "data"
    data.mkdir()
    for name in ("colors", "video_hard", "drawerworld"):
        (data / name).symlink_to(data_dir / name)
    shutil.copytree(data_dir / "video_easy", data / "video_easy")
    for video in (data / "video_easy").glob("*.mp4"):
        video.write_bytes(video.read_bytes()[:20000])  # cut: FFmpeg finds no index ("moov atom not found")
    show = ["env", "show", TASK, "--mode", "video_easy", "--frames", "1", "--out", str(tmp_path / "show.png")]
    assert_only_line(run_vai(*show, "--data-dir", str(data)), "cannot decode video")
    pickled = tmp_path / "pickled.pt"
    pickled.write_bytes(pickle.dumps({"agent": [1, 2, 3]}, protocol=4))
    assert_only_line(run_vai("eval", str(pickled), "--out", str(tmp_path / "eval")), str(pickled), "not a torch")
