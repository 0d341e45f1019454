"""Training metrics of a run: one CSV per group, optionally TensorBoard event files, and a progress line.

CSV is the log every run writes. TensorBoard event files (the records of ``torch.utils.tensorboard``, from the
optional ``vai[tensorboard]`` extra) are added when asked. Every call flushes, so a killed run keeps all it
logged, and a resumed run drops what was logged after its checkpoint, from the CSVs and from TensorBoard.
A write refused to either (a full disk, a read-only file system, a file where the folder should be) is a
:class:`~vai.errors.WriteFailed` raised by the call whose row it refused.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import math
import os
import socket
import sys
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TextIO

import numpy as np

from vai.atomic import write_text_atomic, writing
from vai.errors import UserError, WriteFailed
from vai.run_dir import AgentDir


def check_tensorboard() -> None:
    """UserError naming the extra to install unless TensorBoard's writer can be imported."""
    try:
        import torch.utils.tensorboard  # noqa: F401  (needs the tensorboard package)
    except ImportError:
        raise UserError("TensorBoard logging needs the tensorboard package: pip install vai[tensorboard]") from None


def _cell(value: float) -> str:
    # repr keeps every digit of a float64; integers stay integers so counts read as counts.
    return str(int(value)) if isinstance(value, (int, np.integer)) else repr(float(value))


class RunLogger:
    """Writes ``{group}.csv`` per metric group into an agent's directory (:class:`vai.run_dir.AgentDir`) and,
    with ``tensorboard``, TensorBoard scalars ``{group}/{key}``.

    With ``resume_step``, rows logged after that step (by the run being resumed) are dropped now and new rows
    are appended; without it, a group's existing CSV is replaced at its first log, as a fresh run should.
    TensorBoard's files are never rewritten: a new file marks the step from which older files' scalars are
    hidden (``purge_step``), the step after ``resume_step``, or 0 for a fresh run, which hides all of a
    replaced run's. ``tensorboard`` without the package is a ``UserError``, raised before anything is written.
    """

    def __init__(self, directory: str | os.PathLike, tensorboard: bool = False, resume_step: int | None = None) -> None:
        if tensorboard:
            check_tensorboard()
        self.directory = Path(directory)
        self.agent_dir = AgentDir(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._columns: dict[str, list[str]] = {}
        self._files: dict[str, TextIO] = {}
        self._closed = False
        if resume_step is not None:
            for path in sorted(self.directory.glob("*.csv")):
                self._truncate(path, resume_step)
        self._events = None
        if tensorboard:
            self._events = TensorBoardEvents(
                self.agent_dir.tensorboard, purge_step=0 if resume_step is None else resume_step + 1
            )

    def _truncate(self, path: Path, resume_step: int) -> None:
        text = path.read_text()
        # A row cut short by a kill mid-write lacks its newline; it is dropped with the later ones.
        rows = list(csv.reader(io.StringIO(text[: text.rfind("\n") + 1])))
        if not rows or rows[0][:1] != ["step"]:
            return  # not a log of ours
        header = rows[0]
        damaged = next((row for row in rows[1:] if not (row and row[0].isdigit())), None)
        if damaged is not None:
            raise UserError(
                f"{path} has a damaged row ({','.join(damaged)[:40]!r}): mend or delete the row (deleting the "
                "file drops the log before the resume too), then resume again"
            )
        kept = [row for row in rows[1:] if int(row[0]) <= resume_step]
        kept_text = io.StringIO()
        csv.writer(kept_text, lineterminator="\n").writerows([header, *kept])
        write_text_atomic(kept_text.getvalue(), path)
        self._columns[path.stem] = header[1:]

    def log(self, group: str, step: int, metrics: Mapping[str, float]) -> None:
        """Append one row of ``metrics`` at ``step`` to the group's CSV (and TensorBoard), flushed to disk."""
        if self._closed:
            raise ValueError(f"{self.directory}: the logger is closed")
        if not group or "/" in group or os.sep in group:
            raise ValueError(f"metric group {group!r} must be a non-empty name without path separators")
        if "step" in metrics:
            raise ValueError(f"metric group {group!r}: 'step' is the step column, not a metric name")
        with writing(self.agent_dir.log(group)) as path:  # a full disk: a WriteFailed naming the file
            if group not in self._files:
                resumed = group in self._columns
                self._files[group] = path.open("a" if resumed else "w", newline="")
                if not resumed:
                    self._columns[group] = list(metrics)
                    csv.writer(self._files[group], lineterminator="\n").writerow(["step", *metrics])
            columns = self._columns[group]
            unknown = [key for key in metrics if key not in columns]
            if unknown:
                self._widen(group, unknown)
                columns = self._columns[group]
            row = [str(int(step))] + [_cell(metrics[key]) if key in metrics else "" for key in columns]
            csv.writer(self._files[group], lineterminator="\n").writerow(row)
            self._files[group].flush()
        if self._events is not None:
            self._events.scalars(group, step, metrics)

    def _widen(self, group: str, new: list[str]) -> None:
        """Add columns to a group's CSV (earlier rows get empty cells), e.g. losses that start after the
        random-action phase; the file is rewritten once, atomically."""
        path = self.agent_dir.log(group)
        self._files.pop(group).close()
        rows = list(csv.reader(io.StringIO(path.read_text())))
        self._columns[group] = [*self._columns[group], *new]
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["step", *self._columns[group]])
        writer.writerows(row + [""] * len(new) for row in rows[1:])
        write_text_atomic(text.getvalue(), path)
        self._files[group] = path.open("a", newline="")

    def close(self) -> None:
        """Close every file; a row that cannot be flushed (a full disk) is a WriteFailed, once all are closed."""
        failures = []
        for group, handle in self._files.items():
            try:
                with writing(self.agent_dir.log(group)):
                    handle.close()
            except WriteFailed as failure:
                failures.append(failure)
        self._files.clear()
        if self._events is not None:
            try:
                self._events.close()
            except WriteFailed as failure:
                failures.append(failure)
            self._events = None
        self._closed = True
        if failures:
            raise failures[0]

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *exc_info: object) -> None:
        if error_type is None:
            self.close()
            return
        with contextlib.suppress(WriteFailed):  # the error under way tells what failed first
            self.close()


class TensorBoardEvents:
    """One TensorBoard event file in ``folder``, written in the calling thread and flushed at every call.

    The records are those of torch's ``SummaryWriter`` (its scalar summaries in events, framed by
    TensorBoard's ``RecordWriter``), but that writer writes from a thread of its own, which reports a
    refused write at a later call or, when the thread fails after the call has waited for it, not at
    all, while the run's checkpoint moves past the lost scalars. Here a refused write is a
    :class:`~vai.errors.WriteFailed` naming the file and the fix, raised by the call whose scalars it
    refused. A file that could not take its first records is removed; records written before a failure
    stay, and TensorBoard's reader ends a file at a record cut short. From ``purge_step`` on, the scalars
    of the folder's older files are hidden (``SummaryWriter``'s ``purge_step``).
    """

    def __init__(self, folder: Path, purge_step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.summary.writer.record_writer import RecordWriter

        host = socket.gethostname()
        self.path = folder / f"events.out.tfevents.{int(time.time()):010d}.{host}.{os.getpid()}.{next(_EVENT_FILES)}"
        with writing(self.path):
            folder.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "wb")  # noqa: SIM115  (closed by close())
        self._records = RecordWriter(self._file)
        try:
            self._write(
                Event(wall_time=time.time(), file_version="brain.Event:2"),
                Event(wall_time=time.time(), step=purge_step, session_log=SessionLog(status=SessionLog.START)),
            )
        except WriteFailed:
            with contextlib.suppress(OSError):
                self._file.close()
            self.path.unlink(missing_ok=True)
            raise

    def scalars(self, group: str, step: int, metrics: Mapping[str, float]) -> None:
        """``metrics`` as scalars ``{group}/{key}`` at ``step``, handed to the file system when this returns."""
        from tensorboard.compat.proto.event_pb2 import Event
        from torch.utils.tensorboard.summary import scalar

        now = time.time()
        self._write(
            *(
                Event(wall_time=now, step=int(step), summary=scalar(f"{group}/{key}", float(value)))
                for key, value in metrics.items()
            )
        )

    def _write(self, *events: object) -> None:
        with writing(self.path):
            for event in events:
                self._records.write(event.SerializeToString())
            self._file.flush()

    def close(self) -> None:
        with writing(self.path):
            self._file.close()


_EVENT_FILES = itertools.count()
"""Numbers the event files of this process, as TensorBoard's writer does."""


class Progress:
    """One self-overwriting status line for the training loop; silent unless ``stream`` is a terminal.

    ``stream`` defaults to ``sys.stderr`` as found at construction (not at import, so captured streams work).
    """

    def __init__(self, total: int, initial: int = 0, enabled: bool | None = None, stream: TextIO | None = None):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)()) if enabled is None else enabled
        self.total, self.initial, self.step = total, initial, initial
        self.values: dict[str, object] = {}
        self._start, self._last_draw, self._width = time.monotonic(), -math.inf, 0

    def update(self, step: int, **values: object) -> None:
        """Record ``step`` and ``values``; redraw if 0.2 s have passed since the last redraw (or none happened)."""
        self.step, self.values = step, values
        if self.enabled and time.monotonic() - self._last_draw >= 0.2:
            self._draw()

    def _draw(self) -> None:
        now = time.monotonic()
        rate = (self.step - self.initial) / (now - self._start) if now > self._start else 0.0
        eta = str(timedelta(seconds=int(max(self.total - self.step, 0) / rate))) if rate > 0 else "?"
        line = f"{self.step}/{self.total} ({self.step / max(self.total, 1):.0%}) | {rate:.1f} steps/s | {eta}"
        values = " ".join(
            f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}" for key, value in self.values.items()
        )
        line += f" | {values}" if values else ""
        self.stream.write("\r" + line.ljust(self._width))  # padding wipes the tail of a longer previous line
        self.stream.flush()
        self._width, self._last_draw = len(line), now

    def close(self) -> None:
        """Draw the final state and end the line (nothing at all when disabled)."""
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False  # a second close prints nothing
