"""Atomic writes: the old file or the new one, flushed to disk before and after the rename."""

from __future__ import annotations

import os
import stat

import pytest

from vai.atomic import atomic_write, write_text_atomic


def test_the_file_is_flushed_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("fsync", stat.S_ISDIR(os.fstat(descriptor).st_mode)))
        real_fsync(descriptor)

    def replace(source, target):
        events.append(("replace", None))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_text_atomic("new\n", tmp_path / "out.txt")
    assert events == [("fsync", False), ("replace", None), ("fsync", True)]
    assert (tmp_path / "out.txt").read_text() == "new\n"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text_atomic("old\n", tmp_path / "out.txt")

    def half_then_fail(temporary):
        temporary.write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    assert path.stat().st_mode & 0o044, "readable by others, like any file the user writes"
