"""`vai run` end to end through the CLI at tiny sizes: every stage runs and every artifact is written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from test_cli import assert_user_error, run_vai
from test_rl_cli import TINY_AGENT

from vai.errors import UserError
from vai.pipeline import check_same_settings

TASK = "cartpole_balance"
TINY_VISION = [
    "collect_frames=60",
    "transporter_steps=2",
    "transporter_batch=4",
    "adapter_steps=2",
    "adapter_batch=4",
    "mask_eval_episodes=1",
    "mask_eval_steps=3",
]
"""Vision stages of a few seconds (also used by test_sweep)."""
TINY = [
    "--set",
    *TINY_VISION,
    "train_steps=125",
    *TINY_AGENT,
    "test_seeds=1",
    "test_episodes=1",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir):
    run = tmp_path_factory.mktemp("run")
    result = run_vai(
        "run",
        TASK,
        "--preset",
        "quick",
        "--run",
        str(run),
        "--baseline",
        "sac",
        "--mode",
        "train",
        "video_hard",
        *TINY,
        env={"VAI_DATA_DIR": str(data_dir)},
    )
    assert result.returncode == 0, result.stderr + result.stdout
    run.with_suffix(".stdout").write_text(result.stdout)  # beside the run, for the tests of what it printed
    return run


def test_the_stages_that_train_print_their_progress(run_dir):
    printed = run_dir.with_suffix(".stdout").read_text()
    for stage in ("keypoints", "adapter"):  # TINY_VISION: 2 steps each
        lines = [line.strip() for line in printed.splitlines() if line.strip().startswith(f"{stage} ")]
        assert lines and re.match(rf"{stage} 2/2 \(100%\)( \| restart \d of \d)? \| loss ", lines[-1]), printed
        assert all(" | " in line for line in lines)
    # Each Transporter's masks are checked without labels, in one line, and the report says which was kept.
    assert re.search(r"Transporter seed \d+: (masks healthy|collapsed)", printed), printed
    assert re.search(r"Transporter of seed \d+.*: (masks healthy|collapsed)", (run_dir / "report.md").read_text())


def test_every_artifact_is_written(run_dir):
    for name in (
        "run.json",
        "frames.npz",
        "transporter.safetensors",
        "counterfactual.npz",
        "adapter.safetensors",
        "masks_eval.json",
        "masks_eval.md",
        "masks.png",
        "vai-seed0/checkpoints/last.pt",
        "vai-seed0/train.csv",
        "sac-seed0/checkpoints/last.pt",
        "curves.png",
        "adapted.mp4",
        "results.json",
        "results.md",
        "report.md",
    ):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "run.json").read_text())
    assert config["vision"]["collect_frames"] == 60 and config["rl"]["train_steps"] == 125
    assert config["baselines"] == ["sac"]


def test_results_compare_vai_with_the_baseline_in_the_chosen_modes(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["returns"]) == {"vai", "sac"}
    assert set(results["returns"]["vai"][TASK]) == {"train", "video_hard"}
    # The vai agent's tables name the pool its adapter trained on (the photos by default, never the
    # stand-in cut from video_hard); the sac baseline has no adapter.
    pool = results["adapter_backgrounds"]["vai"]
    assert pool in ("photos", "places365", "procedural") and "sac" not in results["adapter_backgrounds"]
    assert f"vai (adapter backgrounds: {pool}): episode return" in (run_dir / "results.md").read_text()
    assert f"adapter backgrounds: {pool}." in (run_dir / "report.md").read_text()


def test_pictures_and_video_decode(run_dir):
    curves = cv2.imread(str(run_dir / "curves.png"))
    assert curves is not None and curves.shape[1] > 600
    video = cv2.VideoCapture(str(run_dir / "adapted.mp4"))
    frames = []
    while True:
        ok, frame = video.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 100
    assert frames[0].shape == (84 * 3, 84 * 3 * 3, 3)  # observation | mask | adapted, enlarged x3


def test_report_links_every_picture_and_table(run_dir):
    report = (run_dir / "report.md").read_text()
    for needle in ("masks.png", "curves.png", "adapted.mp4", "run.json", "IoU", "IQM", "before training"):
        assert needle in report, needle


def test_a_second_run_reuses_the_finished_stages(run_dir, data_dir):
    result = run_vai(
        "run",
        TASK,
        "--preset",
        "quick",
        "--run",
        str(run_dir),
        "--mode",
        "train",
        *TINY,
        env={"VAI_DATA_DIR": str(data_dir)},
    )
    assert result.returncode == 0, result.stderr
    for stage in ("collect", "keypoints", "adapter", "masks"):
        assert f"[{stage}] reusing" in result.stdout


def test_a_second_run_with_other_settings_is_refused_and_changes_nothing(run_dir, data_dir):
    before = {path.name: path.stat().st_mtime_ns for path in run_dir.iterdir()}
    recorded = (run_dir / "run.json").read_bytes()
    changed = [item.replace("adapter_steps=2", "adapter_steps=3") for item in TINY]
    result = run_vai(
        "run", TASK, "--preset", "quick", "--run", str(run_dir), *changed, env={"VAI_DATA_DIR": str(data_dir)}
    )
    assert_user_error(result, "vision.adapter_steps 2 -> 3", "--fresh")
    assert (run_dir / "run.json").read_bytes() == recorded
    assert {path.name: path.stat().st_mtime_ns for path in run_dir.iterdir()} == before


def test_only_free_settings_may_change_between_calls(tmp_path):
    config = {"task": TASK, "device": "cpu", "backgrounds": "/data/backgrounds", "baselines": []}
    config["rl"] = {"train_steps": 10, "test_seeds": 10}
    (tmp_path / "run.json").write_text(json.dumps(config))
    rl = {"train_steps": 10, "test_seeds": 2, "new_field": 1}
    same = {**config, "device": "cuda", "baselines": ["sac"], "rl": rl}
    check_same_settings(tmp_path / "run.json", {**same, "backgrounds": "/elsewhere/backgrounds"})
    with pytest.raises(UserError, match="rl.train_steps 10 -> 20"):
        check_same_settings(tmp_path / "run.json", {**config, "rl": {"train_steps": 20, "test_seeds": 10}})
    with pytest.raises(UserError, match="backgrounds 'backgrounds' -> 'procedural'"):
        check_same_settings(tmp_path / "run.json", {**config, "backgrounds": "procedural"})
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(UserError, match="--fresh"):
        check_same_settings(tmp_path / "run.json", config)


def test_a_record_of_the_pad_heads_as_comma_separated_text_matches_their_tuple(tmp_path):
    config = {"task": TASK, "device": "cpu", "backgrounds": "procedural", "baselines": []}
    (tmp_path / "run.json").write_text(json.dumps({**config, "rl": {"aux_tasks": "inverse,reward"}}))
    check_same_settings(tmp_path / "run.json", {**config, "rl": {"aux_tasks": ("inverse", "reward")}})
    with pytest.raises(UserError, match=r"rl.aux_tasks \['inverse', 'reward'\] -> \['inverse'\]"):
        check_same_settings(tmp_path / "run.json", {**config, "rl": {"aux_tasks": ("inverse",)}})


def test_a_run_directory_whose_rl_settings_counted_frames_is_refused_with_the_fix(tmp_path):
    # Before RL settings counted agent steps, run.json recorded rl.frames (simulator frames): going on
    # would resume its agent under another meaning of every length.
    old = {"task": TASK, "device": "cpu", "backgrounds": "procedural", "baselines": [], "rl": {"frames": 24000}}
    (tmp_path / "run.json").write_text(json.dumps(old))
    wanted = {**old, "rl": {"train_steps": 3000}}
    with pytest.raises(UserError, match=r"counted frames \(rl.frames\).*--fresh"):
        check_same_settings(tmp_path / "run.json", wanted)


def test_bad_arguments_are_user_errors(tmp_path):
    assert_user_error(run_vai("run", TASK, "--set", "warp=9"), "cannot set", "collect_frames")
    assert_user_error(run_vai("run", TASK, "--baseline", "vai"), "--baseline")
    assert_user_error(run_vai("run", TASK, "--mode", "sepia"), "unknown mode")
    assert_user_error(run_vai("run", "pong"), "unknown task")
    kept = tmp_path / "earlier-run"
    kept.mkdir()
    (kept / "run.json").write_text("{}")
    assert_user_error(run_vai("run", TASK, "--fresh", "--run", str(kept), "--device", "banana"), "unknown device")
    assert_user_error(run_vai("run", TASK, "--fresh", "--run", str(kept), "--mode", "sepia"), "unknown mode")
    assert (kept / "run.json").read_text() == "{}"  # --fresh deletes nothing for a command that is refused


def test_the_default_augmentation_pool_is_never_the_stand_in_cut_from_the_test_footage(tmp_path):
    """Places365, then the photos; the ``backgrounds`` stand-in (video_hard clips 0-29) only when named."""
    from vai.pipeline import default_backgrounds
    from vai.vision.backgrounds import describe_pool

    for name in ("backgrounds", "photos", "places365"):
        (tmp_path / name).mkdir()
    (tmp_path / "backgrounds" / "frame.jpg").write_bytes(b"jpg")
    assert default_backgrounds(tmp_path) is None  # empty pools and the stand-in: procedural
    (tmp_path / "photos" / "wallpaper.jpg").write_bytes(b"jpg")
    assert default_backgrounds(tmp_path) == tmp_path / "photos"
    (tmp_path / "places365" / "a" / "scene.jpg").parent.mkdir()
    (tmp_path / "places365" / "a" / "scene.jpg").write_bytes(b"jpg")
    assert default_backgrounds(tmp_path) == tmp_path / "places365"
    assert describe_pool(tmp_path / "backgrounds").startswith("backgrounds (stand-in cut from video_hard")
    assert describe_pool(None) == "procedural" and describe_pool(tmp_path / "photos") == "photos"


def test_the_readme_library_example_runs_on_a_run_directory(run_dir, data_dir):
    """The README's Python block, as a newcomer pastes it, on this tiny run instead of make demo's."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) == 1
    demo_run = 'run = "runs/cartpole_balance-quick"'
    assert demo_run in blocks[0]
    code = blocks[0].replace(demo_run, f"run = {str(run_dir)!r}")
    env = {**os.environ, "VAI_DATA_DIR": str(data_dir)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    returns = result.stdout.strip()
    assert returns.startswith("[[") and returns.endswith("]]") and returns.count("[") == 3, returns  # (2 seeds, 1)
