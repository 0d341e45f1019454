"""Progress lines of the stages that train for minutes (vai.progress)."""

from __future__ import annotations

import re
import time

from vai.progress import step_lines


def test_each_call_prints_steps_losses_speed_and_time_left():
    lines: list[str] = []
    log = step_lines("keypoints", 500, lines.append)
    log({"step": 25, "loss": 0.0123456, "lr": 0.001})
    time.sleep(0.05)
    log({"step": 50, "loss": 0.01, "lr": 0.001})
    assert lines[0] == "  keypoints 25/500 (5%) | loss 0.01235"  # no speed before a second call
    speed = r" \| ([0-9.]+) steps/s \| (\d+):(\d\d):(\d\d) left"
    match = re.fullmatch(r"  keypoints 50/500 \(10%\) \| loss 0\.01" + speed, lines[1])
    assert match, lines[1]
    rate = float(match[1])
    assert 0 < rate <= 25 / 0.05
    hours, minutes, seconds = map(int, match.groups()[1:])
    assert abs(hours * 3600 + minutes * 60 + seconds - 450 / rate) <= 1  # the steps left at that speed


def test_the_adapters_losses_are_named_in_words():
    lines: list[str] = []
    step_lines("adapter", 400, lines.append)({"step": 20, "loss": 1.5, "mask_loss": 1.0, "feature_loss": 0.5})
    assert lines == ["  adapter 20/400 (5%) | loss 1.5 | mask loss 1 | feature loss 0.5"]
