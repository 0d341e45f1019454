"""Training metrics of a run: one CSV per group, a TensorBoard event file, and a progress line.

The event file is written by hand (TFRecord framing around a few protobuf fields) so that logging needs no
TensorFlow, TensorBoard or protobuf package; TensorBoard still reads it. Every call flushes, so a killed
run keeps all it logged, and a resumed run drops what was logged after its checkpoint.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
import socket
import struct
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TextIO

import numpy as np

from vai.atomic import write_text_atomic


@functools.cache
def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum TFRecord framing uses."""
    table = _crc32c_table()
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    # TFRecord masks the CRC so that a CRC over data that itself holds CRCs stays well distributed.
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 values are encoded as their 64-bit two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _event(step: int, what: bytes) -> bytes:
    """An Event: wall_time (1, double), step (2, int64), then one field of its ``what`` oneof, encoded."""
    return b"\x09" + struct.pack("<d", time.time()) + b"\x10" + _varint(step) + what


def _scalar_summary(metrics: Mapping[str, float], group: str) -> bytes:
    """Event.summary (5): Summary.value (1) repeated, each Value{tag (1), simple_value (2, float32)}."""
    values = b""
    with np.errstate(over="ignore"):  # a float64 beyond float32's range is stored as inf, as TensorFlow does
        for key, value in metrics.items():
            simple_value = np.float32(value).tobytes()
            values += _length_delimited(1, _length_delimited(1, f"{group}/{key}".encode()) + b"\x15" + simple_value)
    return _length_delimited(5, values)


def _fields(message: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message: an int for varints, raw bytes for the other types."""
    position = 0
    while position < len(message):
        key, position = _read_varint(message, position)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _read_varint(message, position)
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            value, position = message[position : position + size], position + size
        elif wire_type == 2:
            size, position = _read_varint(message, position)
            value, position = message[position : position + size], position + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        yield field, value


def _read_varint(message: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(message):
            raise ValueError("truncated protobuf varint")
        byte = message[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if not byte & 0x80:
            return value, position


def read_records(path: str | os.PathLike) -> list[bytes]:
    """The payloads of a TFRecord file; ValueError names the offset of a truncated or corrupt record."""
    data = Path(path).read_bytes()
    records, position = [], 0
    while position < len(data):
        header = data[position : position + 12]
        if len(header) < 12:
            raise ValueError(f"{path}: truncated record header at byte {position}")
        (length,), (length_crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
        if _masked_crc(header[:8]) != length_crc:
            raise ValueError(f"{path}: corrupt record length at byte {position}")
        payload = data[position + 12 : position + 12 + length]
        footer = data[position + 12 + length : position + 16 + length]
        if len(footer) < 4 or _masked_crc(payload) != struct.unpack("<I", footer)[0]:
            raise ValueError(f"{path}: corrupt or truncated record at byte {position}")
        records.append(payload)
        position += 16 + length
    return records


def read_events(path: str | os.PathLike) -> list[tuple[int, str, float]]:
    """The scalars of an event file as (step, tag, value), in file order; other events are skipped."""
    scalars = []
    for record in read_records(path):
        event = list(_fields(record))
        step = next((value for field, value in event if field == 2), 0)
        step -= (1 << 64) if step >= 1 << 63 else 0
        for summary in (value for field, value in event if field == 5):
            for _, value in _fields(summary):
                entry = dict(_fields(value))
                if 2 in entry:  # simple_value; tensors, images and the like are not ours
                    scalars.append((step, entry.get(1, b"").decode(), struct.unpack("<f", entry[2])[0]))
    return scalars


def _cell(value: float) -> str:
    # repr keeps every digit of a float64; integers stay integers so counts read as counts.
    return str(int(value)) if isinstance(value, (int, np.integer)) else repr(float(value))


class RunLogger:
    """Writes ``{group}.csv`` per metric group and, optionally, TensorBoard scalars ``{group}/{key}``.

    With ``resume_step``, rows logged after that step (by the run being resumed) are dropped now and new rows
    are appended; without it, a group's existing CSV is replaced at its first log, as a fresh run should.
    """

    def __init__(self, directory: str | os.PathLike, tensorboard: bool = True, resume_step: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._columns: dict[str, list[str]] = {}
        self._files: dict[str, TextIO] = {}
        self._closed = False
        if resume_step is not None:
            for path in sorted(self.directory.glob("*.csv")):
                self._truncate(path, resume_step)
        self._events: io.BufferedWriter | None = None
        if tensorboard:
            self._events = self._open_event_file()
            self._write_event(_event(0, _length_delimited(3, b"brain.Event:2")))
            # SessionLog{status: START} (field 7) in every file: TensorBoard takes a later file's START as a restart
            # and hides older events from its step on (a resume's dropped steps; all of a replaced run's).
            start = 0 if resume_step is None else resume_step + 1
            self._write_event(_event(start, _length_delimited(7, b"\x08\x01")))
            self._events.flush()

    def _truncate(self, path: Path, resume_step: int) -> None:
        text = path.read_text()
        # A row cut short by a kill mid-write lacks its newline; it is dropped with the later ones.
        rows = list(csv.reader(io.StringIO(text[: text.rfind("\n") + 1])))
        if not rows or rows[0][:1] != ["step"]:
            return  # not a log of ours
        header = rows[0]
        kept = [row for row in rows[1:] if int(row[0]) <= resume_step]
        kept_text = io.StringIO()
        csv.writer(kept_text, lineterminator="\n").writerows([header, *kept])
        write_text_atomic(kept_text.getvalue(), path)
        self._columns[path.stem] = header[1:]

    def _open_event_file(self) -> io.BufferedWriter:
        folder = self.directory / "tensorboard"
        folder.mkdir(exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        path, suffix = folder / name, 0
        while path.exists():  # a resume within the same second and process must not overwrite the first file
            suffix += 1
            path = folder / f"{name}.{suffix}"
        return path.open("xb")

    def _write_event(self, event: bytes) -> None:
        length = struct.pack("<Q", len(event))
        self._events.write(
            length + struct.pack("<I", _masked_crc(length)) + event + struct.pack("<I", _masked_crc(event))
        )

    def log(self, group: str, step: int, metrics: Mapping[str, float]) -> None:
        """Append one row of ``metrics`` at ``step`` to the group's CSV (and TensorBoard), flushed to disk."""
        if self._closed:
            raise ValueError(f"{self.directory}: the logger is closed")
        if not group or "/" in group or os.sep in group:
            raise ValueError(f"metric group {group!r} must be a non-empty name without path separators")
        if "step" in metrics:
            raise ValueError(f"metric group {group!r}: 'step' is the step column, not a metric name")
        if group not in self._files:
            path = self.directory / f"{group}.csv"
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
            self._write_event(_event(int(step), _scalar_summary(metrics, group)))
            self._events.flush()

    def _widen(self, group: str, new: list[str]) -> None:
        """Add columns to a group's CSV (earlier rows get empty cells), e.g. losses that start after the
        random-action phase; the file is rewritten once, atomically."""
        path = self.directory / f"{group}.csv"
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
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        if self._events is not None:
            self._events.close()
            self._events = None
        self._closed = True

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
