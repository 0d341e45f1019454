"""Collapse checks without labels (vai.vision.health) and the keypoints stage's restarts.

The checks read only frames and masks. Here they are shown masks built on purpose: the true masks of
a moving square (healthy), and four collapses of the same video (one mask for every frame, the
whole frame, nothing, the static stripe of the background). The stage test builds a collapsed
Transporter for real (3 training steps on real cartpole frames) and checks that the run says so
in one line, restarts from other seeds and records every attempt.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_cli import run_vai
from test_keypoints import square_frames

from vai.vision.health import LEAST_FOREGROUND, MOST_FOREGROUND, MaskHealth, mask_health
from vai.vision.stages import RESTART_SEED


@pytest.fixture(scope="module")
def video():
    frames, _, truth, _ = square_frames()
    return frames, truth


def test_the_true_masks_of_a_moving_object_are_healthy(video):
    frames, truth = video
    health = mask_health(truth, frames)
    assert not health.collapsed, health.summary()
    assert health.static < 0.05 and health.constancy < 0.5
    assert health.coverage > 0.95  # the square is all that differs from the median frame
    assert health.summary().startswith("masks healthy")


def test_one_mask_for_every_frame_is_a_collapse(video):
    frames, truth = video
    health = mask_health(np.repeat(truth[:1], len(truth), axis=0), frames)
    assert health.collapsed and health.constancy == pytest.approx(1.0)
    assert any("hardly move" in problem for problem in health.problems)


def test_whole_frame_and_empty_masks_are_collapses(video):
    frames, truth = video
    whole = mask_health(np.ones_like(truth), frames)
    assert whole.foreground == 1.0 > MOST_FOREGROUND and any("cover 100%" in p for p in whole.problems)
    empty = mask_health(np.zeros_like(truth), frames)
    assert empty.foreground == 0.0 < LEAST_FOREGROUND and any("empty" in p for p in empty.problems)
    assert whole.coverage == 1.0 and empty.coverage == 0.0


def test_masks_on_the_static_background_are_a_collapse(video):
    """The stripe never moves: masks on it look like the median frame, whatever they vary."""
    frames, truth = video
    stripe = np.zeros_like(truth)
    rng = np.random.default_rng(0)
    for index in range(len(stripe)):  # a different piece of the stripe in each frame: not constant
        left = rng.integers(0, 60)
        stripe[index, 30:36, left : left + 40] = True
    health = mask_health(stripe & ~truth, frames)
    assert health.static > 0.95 and health.constancy < 0.85
    assert health.problems == [p for p in health.problems if "median frame" in p]
    assert health.collapsed


def test_badness_orders_collapses_and_is_zero_when_healthy(video):
    frames, truth = video
    healthy = mask_health(truth, frames)
    assert healthy.badness() == 0
    half = MaskHealth(foreground=0.7, static=0.2, constancy=0.3, moving=0.1)
    worse = MaskHealth(foreground=0.95, static=0.9, constancy=0.95, moving=0.1)
    assert 0 < half.badness() < worse.badness()


def test_masks_that_do_not_match_the_frames_are_refused(video):
    frames, truth = video
    with pytest.raises(ValueError, match="do not match"):
        mask_health(truth[:-1], frames)


def test_a_collapsed_transporter_is_reported_restarted_and_recorded(tmp_path, data_dir):
    """3 training steps give a Transporter whose masks collapse: the stage says so in one line per
    Transporter and one for its choice, tries the preset's restarts, and keypoints.json keeps them all."""
    run = tmp_path / "run"
    env = {"VAI_DATA_DIR": str(data_dir)}
    assert run_vai("collect", "cartpole_balance", "--frames", "40", "--run", str(run), env=env).returncode == 0
    tiny = ["--set", "transporter_steps=3", "transporter_batch=4", "transporter_restarts=2"]
    result = run_vai("keypoints", "cartpole_balance", "--run", str(run), "--preset", "quick", *tiny, env=env)
    assert result.returncode == 0, result.stderr
    record = json.loads((run / "keypoints.json").read_text())
    assert record["collapsed"] and record["restarts"] == 2
    assert [attempt["seed"] for attempt in record["attempts"]] == [0, RESTART_SEED, 2 * RESTART_SEED]
    assert all(attempt["health"]["collapsed"] for attempt in record["attempts"])
    assert record["seed"] == record["attempts"][record["kept"]]["seed"]
    assert not list(run.glob("*.partial.pt"))  # each training's resumable state is gone once it ends
    lines = result.stdout.splitlines()
    assert sum("collapsed:" in line and "Transporter seed" in line for line in lines) == 3
    assert sum("every Transporter collapsed" in line for line in lines) == 1
    assert any("restart 2 of 2" in line for line in lines)  # the progress lines name the restart
    no_restart = ["--set", "transporter_steps=3", "transporter_batch=4", "transporter_restarts=0"]
    result = run_vai("keypoints", "cartpole_balance", "--run", str(run), "--preset", "quick", *no_restart, env=env)
    assert result.returncode == 0, result.stderr
    record = json.loads((run / "keypoints.json").read_text())
    assert record["restarts"] == 0 and len(record["attempts"]) == 1 and record["collapsed"]
    said = [line for line in result.stdout.splitlines() if "collapsed" in line and not line.startswith("wrote")]
    assert len(said) == 2 and "transporter_restarts is 0" in said[1], said  # the attempt, and the choice
