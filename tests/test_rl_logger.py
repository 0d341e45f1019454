"""Run logs on real files: CSV round trips and resume, TensorBoard files read back by TensorBoard, the progress line."""

from __future__ import annotations

import csv
import importlib.util
import io
import sys

import numpy as np
import pytest

from vai.errors import UserError
from vai.rl.logger import Progress, RunLogger

needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="needs the test extra: pip install -e .[test]"
)


def read_csv(path):
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def event_files(directory):
    return sorted((directory / "tensorboard").glob("events.out.tfevents.*"))


def scalars(path) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard shows from an event file or a folder of them: (step, value) per tag."""
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(str(path), size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()[event_accumulator.SCALARS]
    }


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


@needs_tensorboard
def test_rows_are_on_disk_before_close(tmp_path):
    logger = RunLogger(tmp_path, tensorboard=True)
    logger.log("train", 1, {"loss": 0.5})
    assert read_csv(tmp_path / "train.csv") == [["step", "loss"], ["1", "0.5"]]
    assert scalars(tmp_path / "tensorboard") == {"train/loss": [(1, 0.5)]}
    logger.log("train", 2, {"loss": 0.25})
    assert scalars(tmp_path / "tensorboard") == {"train/loss": [(1, 0.5), (2, 0.25)]}
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


@needs_tensorboard
def test_resume_drops_later_rows_and_appends(tmp_path):
    with RunLogger(tmp_path, tensorboard=True) as logger:
        for step in (10, 20, 30, 40):
            logger.log("train", step, {"loss": step / 10, "alpha": 0.1})
        logger.log("eval", 20, {"return": 5.0})
        logger.log("eval", 40, {"return": 7.0})
    with RunLogger(tmp_path, tensorboard=True, resume_step=20) as logger:
        # Dropped at once, before anything is logged: a report read now matches the checkpoint.
        assert read_csv(tmp_path / "eval.csv") == [["step", "return"], ["20", "5.0"]]
        logger.log("train", 30, {"alpha": 0.2})
    assert read_csv(tmp_path / "train.csv") == [
        ["step", "loss", "alpha"],
        ["10", "1.0", "0.1"],
        ["20", "2.0", "0.1"],
        ["30", "", "0.2"],
    ]
    first, second = event_files(tmp_path)  # the resumed run starts a file of its own; the first is kept whole
    assert [step for step, _ in scalars(first)["train/loss"]] == [10, 20, 30, 40]
    # TensorBoard hides what the resumed run dropped, steps 30 and 40, and shows the resumed run's step 30.
    assert scalars(tmp_path / "tensorboard") == {
        "train/loss": [(10, 1.0), (20, 2.0)],
        "train/alpha": [(10, pytest.approx(0.1)), (20, pytest.approx(0.1)), (30, pytest.approx(0.2))],
        "eval/return": [(20, 5.0)],
    }


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


@needs_tensorboard
def test_event_files_hold_exactly_the_logged_scalars(tmp_path):
    logged = [(0, {"loss": 1.25, "alpha": 0.1}), (1000, {"loss": -3.5e-7, "alpha": 1e30}), (2**40, {"loss": 0.0})]
    with RunLogger(tmp_path, tensorboard=True) as logger:
        for step, metrics in logged:
            logger.log("train", step, metrics)
        logger.log("eval_video_hard", 1000, {"return": np.float64(812.5), "episodes": np.int64(10)})
    assert len(event_files(tmp_path)) == 1
    expected = {  # TensorBoard stores scalars as float32
        f"train/{key}": [(step, float(np.float32(metrics[key]))) for step, metrics in logged if key in metrics]
        for key in ("loss", "alpha")
    }
    expected.update({"eval_video_hard/return": [(1000, 812.5)], "eval_video_hard/episodes": [(1000, 10.0)]})
    assert scalars(tmp_path / "tensorboard") == expected


@needs_tensorboard
def test_a_fresh_run_hides_an_old_runs_tensorboard_scalars(tmp_path):
    with RunLogger(tmp_path, tensorboard=True) as logger:
        for step in (10, 20, 30):
            logger.log("train", step, {"loss": 1.0})
    with RunLogger(tmp_path, tensorboard=True) as logger:  # started over, e.g. killed before its first checkpoint
        logger.log("train", 5, {"loss": 2.0})
    assert len(event_files(tmp_path)) == 2
    assert scalars(tmp_path / "tensorboard") == {"train/loss": [(5, 2.0)]}


def test_no_tensorboard_files_unless_asked(tmp_path):
    with RunLogger(tmp_path) as logger:
        logger.log("train", 1, {"loss": 0.5})
    assert not (tmp_path / "tensorboard").exists()


def test_tensorboard_without_the_package_is_a_user_error_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # what an import finds without the package
    with pytest.raises(UserError, match=r"pip install vai\[tensorboard\]"):
        RunLogger(tmp_path / "agent", tensorboard=True)
    assert not (tmp_path / "agent").exists()


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
