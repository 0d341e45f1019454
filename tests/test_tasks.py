"""Task settings: the modes each command uses when none are named."""

from __future__ import annotations

import pytest

from vai.tasks import DRAWER_MODES, TASKS, check_mode, default_modes, get_task


def test_default_modes_by_purpose():
    walker, drawer = get_task("walker_walk"), get_task("drawer_open")
    # Tests (vai eval, vai run, vai env show): every named mode, DrawerWorld's grid (train again) once.
    assert default_modes(walker) == ["train", "color_easy", "color_hard", "video_easy", "video_hard"]
    assert default_modes(drawer) == [mode for mode in DRAWER_MODES if mode != "grid"]
    assert default_modes(walker, "training") == default_modes(drawer, "training") == ["train"]
    assert default_modes(walker, "masks") == ["train", "color_hard", "video_easy", "video_hard"]
    assert default_modes(drawer, "masks") == ["train", "black", "blanket", "marble", "wood"]
    for task in TASKS.values():
        for purpose in ("test", "training", "masks"):
            assert all(check_mode(task, mode) for mode in default_modes(task, purpose)), (task, purpose)
    assert default_modes(walker) is not default_modes(walker)  # a fresh list: callers may extend it
    with pytest.raises(ValueError, match="test, training, masks"):
        default_modes(walker, "everything")
