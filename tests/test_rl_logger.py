"""Run logs on real files: CSV round trips and resume, event files parsed back, and the progress line."""

from __future__ import annotations

import csv
import io
import struct
import time

import numpy as np
import pytest

from vai.rl.logger import Progress, RunLogger, crc32c, read_events, read_records


def read_csv(path):
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def event_files(directory):
    return sorted((directory / "tensorboard").glob("events.out.tfevents.*"))


def test_csv_round_trip_keeps_full_precision_and_column_order(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as logger:
        logger.log("train", 100, {"critic_loss": 0.1 + 0.2, "alpha": 1 / 3, "episodes": 4})
        logger.log("train", 200, {"alpha": 2e-9})  # critic_loss and episodes missing: written empty
        logger.log("eval", 200, {"return": 812.5})
    assert read_csv(tmp_path / "train.csv") == [
        ["step", "critic_loss", "alpha", "episodes"],
        ["100", repr(0.1 + 0.2), repr(1 / 3), "4"],
        ["200", "", "2e-09", ""],
    ]
    rows = read_csv(tmp_path / "train.csv")
    assert float(rows[1][1]) == 0.1 + 0.2  # every digit survives
    assert read_csv(tmp_path / "eval.csv") == [["step", "return"], ["200", "812.5"]]


def test_rows_are_on_disk_before_close(tmp_path):
    logger = RunLogger(tmp_path)
    logger.log("train", 1, {"loss": 0.5})
    assert read_csv(tmp_path / "train.csv") == [["step", "loss"], ["1", "0.5"]]
    assert read_events(event_files(tmp_path)[0]) == [(1, "train/loss", 0.5)]
    logger.close()


def test_a_new_key_widens_the_table(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as logger:
        logger.log("train", 1, {"loss": 0.5})
        logger.log("train", 2, {"loss": 0.4, "entropy": 1.0})
        logger.log("train", 3, {"loss": 0.3})
    assert read_csv(tmp_path / "train.csv") == [
        ["step", "loss", "entropy"],
        ["1", "0.5", ""],
        ["2", "0.4", "1.0"],
        ["3", "0.3", ""],
    ]


def test_resume_drops_later_rows_and_appends(tmp_path):
    with RunLogger(tmp_path) as logger:
        for step in (10, 20, 30, 40):
            logger.log("train", step, {"loss": step / 10, "alpha": 0.1})
        logger.log("eval", 20, {"return": 5.0})
        logger.log("eval", 40, {"return": 7.0})
    with RunLogger(tmp_path, resume_step=20) as logger:
        # Dropped at once, before anything is logged: a report read now matches the checkpoint.
        assert read_csv(tmp_path / "eval.csv") == [["step", "return"], ["20", "5.0"]]
        logger.log("train", 30, {"alpha": 0.2})
    assert read_csv(tmp_path / "train.csv") == [
        ["step", "loss", "alpha"],
        ["10", "1.0", "0.1"],
        ["20", "2.0", "0.1"],
        ["30", "", "0.2"],
    ]
    first, second = event_files(tmp_path)  # the resumed run starts a file of its own
    assert [step for step, _, _ in read_events(first)] == [10, 10, 20, 20, 30, 30, 40, 40, 20, 40]
    assert read_events(second) == [(30, "train/alpha", float(np.float32(0.2)))]


def test_resume_drops_a_row_cut_short_by_a_kill(tmp_path):
    (tmp_path / "train.csv").write_text("step,loss\n10,0.5\n20,0.2")  # the kill came before the newline
    with RunLogger(tmp_path, tensorboard=False, resume_step=20) as logger:
        logger.log("train", 20, {"loss": 0.25})
    assert read_csv(tmp_path / "train.csv") == [["step", "loss"], ["10", "0.5"], ["20", "0.25"]]


def test_a_fresh_run_replaces_an_old_log(tmp_path):
    (tmp_path / "train.csv").write_text("step,old\n5,1.0\n")
    with RunLogger(tmp_path, tensorboard=False) as logger:
        logger.log("train", 1, {"loss": 0.5})
    assert read_csv(tmp_path / "train.csv") == [["step", "loss"], ["1", "0.5"]]


def test_event_file_holds_exactly_the_logged_scalars(tmp_path):
    logged = [(0, {"loss": 1.25, "alpha": 0.1}), (1000, {"loss": -3.5e-7, "alpha": 1e30}), (2**40, {"loss": 0.0})]
    before = time.time()
    with RunLogger(tmp_path) as logger:
        for step, metrics in logged:
            logger.log("train", step, metrics)
    (path,) = event_files(tmp_path)
    expected = [
        (step, f"train/{key}", float(np.float32(value))) for step, metrics in logged for key, value in metrics.items()
    ]
    assert read_events(path) == expected
    # The first record is Event{wall_time, step 0, file_version}, checked byte by byte against the wire format.
    first = read_records(path)[0]
    assert first[0] == 0x09 and before <= struct.unpack("<d", first[1:9])[0] <= time.time()
    assert first[9:] == b"\x10\x00" + b"\x1a\x0d" + b"brain.Event:2"


def test_a_corrupt_byte_is_detected(tmp_path):
    with RunLogger(tmp_path) as logger:
        logger.log("train", 1, {"loss": 0.5})
    (path,) = event_files(tmp_path)
    data = bytearray(path.read_bytes())
    data[-6] ^= 0x01  # inside the last record's payload
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        read_events(path)
    path.write_bytes(bytes(data[:-2]))  # a record cut short by a kill
    with pytest.raises(ValueError):
        read_events(path)


def test_crc32c_known_vectors():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros


def test_tensorboard_reads_our_scalars(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    with RunLogger(tmp_path) as logger:
        logger.log("train", 5, {"loss": 0.5})
        logger.log("train", 6, {"loss": 0.25})
    accumulator = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    accumulator.Reload()
    assert [(event.step, event.value) for event in accumulator.Scalars("train/loss")] == [(5, 0.5), (6, 0.25)]


def test_tensorboard_hides_the_steps_a_resume_dropped(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.plugin_event_accumulator")
    with RunLogger(tmp_path) as logger:
        for step in (10, 20, 30):
            logger.log("train", step, {"loss": step / 10})
    with RunLogger(tmp_path, resume_step=20) as logger:
        logger.log("train", 30, {"loss": 9.0})
    accumulator = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    accumulator.Reload()
    loss = [(event.step, event.tensor_proto.float_val[0]) for event in accumulator.Tensors("train/loss")]
    assert loss == [(10, 1.0), (20, 2.0), (30, 9.0)]


def test_disabled_progress_prints_nothing():
    stream = io.StringIO()  # not a terminal, so disabled by default
    progress = Progress(100, stream=stream)
    progress.update(10, loss=0.5)
    progress.close()
    assert stream.getvalue() == ""


def test_enabled_progress_draws_one_line():
    stream = io.StringIO()
    progress = Progress(100, enabled=True, stream=stream)
    progress.update(10, loss=0.123456)
    assert stream.getvalue().startswith("\r10/100 (10%)")
    assert "loss 0.1235" in stream.getvalue()
    progress.update(11)
    progress.close()  # draws the last state whatever the time since the last redraw
    assert "11/100" in stream.getvalue() and stream.getvalue().endswith("\n")
