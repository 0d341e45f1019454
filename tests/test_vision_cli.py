"""The vision pipeline end to end through the CLI, at tiny sizes: collect -> keypoints -> adapter -> masks."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from test_cli import assert_user_error, run_vai

from vai.lock import LOCK_NAME

TASK = "cartpole_balance"
TINY_TRANSPORTER = ["--set", "transporter_steps=3", "transporter_batch=4"]
TINY_ADAPTER = ["--set", "adapter_steps=3", "adapter_batch=4"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir):
    """A run directory taken through every stage once (the tests below read what it wrote)."""
    run = tmp_path_factory.mktemp("run")
    env = {"VAI_DATA_DIR": str(data_dir)}
    steps = [
        ("collect", TASK, "--frames", "40", "--run", str(run)),
        ("keypoints", TASK, "--run", str(run), "--preset", "quick", *TINY_TRANSPORTER),
        ("adapter", TASK, "--run", str(run), "--preset", "quick", *TINY_ADAPTER),
        (
            "masks",
            "eval",
            TASK,
            "--run",
            str(run),
            "--preset",
            "quick",
            "--episodes",
            "1",
            "--steps",
            "3",
            "--mode",
            "train",
            "video_hard",
        ),
        ("masks", "show", TASK, "--run", str(run), "--mode", "train", "color_hard"),
    ]
    for args in steps:
        result = run_vai(*args, env=env)
        assert result.returncode == 0, f"vai {' '.join(args)} failed:\n{result.stderr}"
    return run


def test_every_stage_writes_its_artifacts(run_dir):
    for name in (
        "frames.npz",
        "frames.masks.npz",
        "transporter.safetensors",
        "counterfactual.npz",
        "keypoints.json",
        "adapter.safetensors",
        "adapter.json",
        "masks_eval.json",
        "masks_eval.md",
        "masks.png",
    ):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.glob(".*.tmp")), "a temporary file was left behind"


def test_counterfactual_masks_match_the_frames(run_dir):
    from vai.data.frames import load_counterfactual_masks, load_frames

    store = load_frames(run_dir / "frames.npz")
    masks = load_counterfactual_masks(run_dir / "counterfactual.npz", store)
    assert masks.dtype == bool and masks.shape == (len(store), 100, 100)  # the whole frame, as VAI


def test_mask_evaluation_reports_both_mask_sources_per_mode(run_dir):
    report = json.loads((run_dir / "masks_eval.json").read_text())
    assert report["meta"]["task"] == TASK
    assert set(report["results"]) == {"train", "video_hard"}
    for sources in report["results"].values():
        assert set(sources) == {"counterfactual", "adapter"}
        for scores in sources.values():
            assert scores["frames"] == 3
            assert 0.0 < scores["foreground_fraction"] < 1.0
    assert report["meta"]["adapter_backgrounds"] == "procedural"  # every mask table names its pool
    table = (run_dir / "masks_eval.md").read_text()
    assert "adapter trained on procedural backgrounds" in table
    assert table.count("| video_hard |") == 3  # two mask sources, then the adapter's threshold sweep
    # The sweep scores the same adapter masks at other cuts: 0.5 is the preset's, and a higher cut
    # keeps a subset of the pixels, so recall can only fall.
    assert report["meta"]["adapter_threshold"] == 0.5
    for mode, by_threshold in report["adapter_by_threshold"].items():
        assert list(by_threshold) == ["0.3", "0.5", "0.7", "0.9"]
        assert by_threshold["0.5"] == report["results"][mode]["adapter"]
        recalls = [scores["recall"] for scores in by_threshold.values()]
        assert recalls == sorted(recalls, reverse=True)


def test_mask_picture_has_a_row_per_mode(run_dir):
    image = cv2.imread(str(run_dir / "masks.png"))
    assert image is not None
    # Header + 2 modes x 168 px; label + 2 samples x 4 tiles of 168 px.
    assert image.shape[:2] == (36 + 2 * 168, 130 + 8 * 168)
    assert np.any(image != 255)


def test_stages_name_the_missing_step(tmp_path):
    assert_user_error(run_vai("keypoints", TASK, "--run", str(tmp_path)), f"vai collect {TASK} --run {tmp_path}")
    assert_user_error(run_vai("masks", "eval", TASK, "--run", str(tmp_path)), "vai keypoints")


def test_adapter_without_counterfactual_masks_names_keypoints(run_dir, tmp_path):
    import shutil

    shutil.copy(run_dir / "frames.npz", tmp_path / "frames.npz")
    assert_user_error(run_vai("adapter", TASK, "--run", str(tmp_path), *TINY_ADAPTER), "vai keypoints")


def test_bad_preset_and_override_are_user_errors(tmp_path):
    assert_user_error(run_vai("keypoints", TASK, "--preset", "huge"), "quick")
    assert_user_error(run_vai("keypoints", TASK, "--set", "transporter_stepz=3"), "transporter_steps")
    assert_user_error(run_vai("adapter", TASK, "--set", "adapter_steps=many"), "adapter_steps")
    assert_user_error(run_vai("keypoints", TASK, "--set", "transporter_steps=0"), "transporter_steps", "> 0")
    assert_user_error(run_vai("adapter", TASK, "--set", "mask_threshold=1.5"), "mask_threshold", "at most 1")


def test_a_collection_without_pairs_and_unknown_devices_are_user_errors(tmp_path, data_dir):
    import torch

    env = {"VAI_DATA_DIR": str(data_dir)}
    assert run_vai("collect", TASK, "--frames", "1", "--run", str(tmp_path), env=env).returncode == 0
    keypoints = ("keypoints", TASK, "--run", str(tmp_path), *TINY_TRANSPORTER)
    assert_user_error(run_vai(*keypoints), "no episode of two frames", "--extend")
    assert_user_error(run_vai(*keypoints, "--device", "banana"), "unknown device 'banana'")
    if not torch.cuda.is_available():
        assert_user_error(run_vai(*keypoints, "--device", "cuda"), "no GPU", "--device cpu")
    assert sorted(path.name for path in tmp_path.iterdir() if path.name != LOCK_NAME) == [
        "frames.masks.npz",
        "frames.npz",
    ]


def test_test_videos_are_refused_as_backgrounds(run_dir, data_dir):
    videos = str(data_dir / "video_easy")
    result = run_vai("adapter", TASK, "--run", str(run_dir), *TINY_ADAPTER, "--backgrounds", videos)
    assert_user_error(result, "video_easy")
