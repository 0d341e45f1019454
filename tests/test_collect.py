"""VAI step 0: random-policy frames on disk (vai.data.frames) and ``vai collect`` (vai.vision.collect).

Real cartpole_balance environments, no mocks: an episode is 125 agent steps plus the reset frame,
so 140 frames span two episodes (126 + 14).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pytest

from vai.atomic import is_temporary
from vai.errors import UserError
from vai.lock import LOCK_NAME

TASK = "cartpole_balance"
EPISODE_FRAMES = 126
FRAMES = 140


def build_parser() -> argparse.ArgumentParser:
    from vai.vision.collect import add_collect_command

    parser = argparse.ArgumentParser(prog="vai")
    add_collect_command(parser.add_subparsers(dest="command", required=True))
    return parser


def synthetic_store(episode_lengths, height=8, width=8, seed=0):
    """A valid FrameStore of random content with the given episode lengths (no environment)."""
    from vai.data.frames import FrameStore

    rng = np.random.default_rng(seed)
    n = sum(episode_lengths)
    episode = np.repeat(np.arange(len(episode_lengths), dtype=np.int32), episode_lengths)
    step = np.concatenate([np.arange(length, dtype=np.int32) for length in episode_lengths])
    metadata = {"task": TASK, "mode": "train", "seed": seed, "vai_version": "test", "image_size": [height, width]}
    metadata |= {"created": "2026-01-01T00:00:00+00:00", "id": f"synthetic-{seed}"}
    return FrameStore(
        frames=rng.integers(0, 256, (n, 3, height, width), dtype=np.uint8),
        episode=episode,
        step=step,
        actions=rng.uniform(-1, 1, (n, 1)).astype(np.float32),
        rewards=rng.random(n).astype(np.float32),
        metadata=metadata,
    )


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> Path:
    """One 140-frame collection (seed 0) shared by the read-only tests; copy it before changing it."""
    from vai.vision.collect import collect

    out = tmp_path_factory.mktemp("collect") / "frames.npz"
    collect(TASK, FRAMES, out, seed=0)
    return out


def copy_collection(source: Path, folder: Path) -> Path:
    from vai.data.frames import masks_path

    target = folder / source.name
    shutil.copyfile(source, target)
    shutil.copyfile(masks_path(source), masks_path(target))
    return target


# -- collect ---------------------------------------------------------------------------------------


def test_collect_stores_each_frame_once_with_episode_boundaries(collected):
    from vai.data.frames import episode_bounds, load_frames

    store = load_frames(collected)
    assert len(store) == FRAMES
    assert store.frames.dtype == np.uint8 and store.frames.shape == (FRAMES, 3, 100, 100)
    assert store.episode.dtype == np.int32 and store.step.dtype == np.int32
    assert store.actions.dtype == np.float32 and store.actions.shape == (FRAMES, 1)
    assert store.rewards.dtype == np.float32 and store.rewards.shape == (FRAMES,)
    assert store.episode_count == 2
    starts, stops = episode_bounds(store)
    assert starts.tolist() == [0, EPISODE_FRAMES] and stops.tolist() == [EPISODE_FRAMES, FRAMES]
    np.testing.assert_array_equal(store.step[:EPISODE_FRAMES], np.arange(EPISODE_FRAMES))
    np.testing.assert_array_equal(store.step[EPISODE_FRAMES:], np.arange(FRAMES - EPISODE_FRAMES))
    # No step follows an episode's last stored frame: its action and reward are NaN, the rest finite.
    last = [EPISODE_FRAMES - 1, FRAMES - 1]
    assert np.flatnonzero(np.isnan(store.actions[:, 0])).tolist() == last
    assert np.flatnonzero(np.isnan(store.rewards)).tolist() == last
    assert np.all(np.abs(np.delete(store.actions, last, axis=0)) <= 1)
    meta = store.metadata
    assert meta["task"] == TASK and meta["mode"] == "train" and meta["seed"] == 0
    assert meta["frame_count"] == FRAMES and meta["image_size"] == [100, 100] and meta["extensions"] == []
    assert not [p.name for p in collected.parent.iterdir() if is_temporary(p.name)], "temporary file left"


def test_replaying_the_stored_actions_reproduces_each_frame_and_mask(collected, env_factory):
    """Frame i is the newest frame of the observation, frame i+1 follows from actions[i]."""
    from vai.data.frames import load_frames, load_masks, masks_path
    from vai.vision.collect import rollout_streams

    store = load_frames(collected)
    masks = load_masks(masks_path(collected), store)
    env_seed, _ = rollout_streams(0, 0)
    env = env_factory(TASK, "train", foreground_mask=True)
    for index in range(FRAMES):
        if store.step[index] == 0:
            obs, info = env.reset(seed=env_seed if index == 0 else None)
        else:
            obs, reward, _, _, info = env.step(store.actions[index - 1])
            assert np.float32(reward) == store.rewards[index - 1]
        np.testing.assert_array_equal(store.frames[index], obs[-3:], err_msg=f"frame {index}")
        np.testing.assert_array_equal(masks[index], info["foreground_mask"][-1], err_msg=f"mask {index}")
    # Frames of one episode differ: the stored frames are not copies of one stack.
    assert not np.array_equal(store.frames[10], store.frames[11])


def test_masks_are_a_separate_file_with_one_nonempty_mask_per_frame(collected):
    from vai.data.frames import load_frames, load_masks, masks_path

    mask_file = masks_path(collected)
    assert mask_file == collected.with_name("frames.masks.npz") and mask_file.is_file()
    store = load_frames(collected)
    assert not hasattr(store, "masks"), "training data must not carry ground truth"
    masks = load_masks(mask_file, store)
    assert masks.dtype == bool and masks.shape == (FRAMES, 100, 100)
    assert masks.any(axis=(1, 2)).all()
    assert masks.mean() < 0.2, "the cart and pole are a small part of the picture"


def test_the_same_seed_reproduces_the_contents_and_another_seed_does_not(collected, tmp_path):
    from vai.data.frames import load_frames, load_masks, masks_path
    from vai.vision.collect import collect

    first, again = (collect(TASK, 30, tmp_path / name, seed=0) for name in ("first.npz", "again.npz"))
    longer = load_frames(collected)  # also seed 0: a shorter collection is its prefix
    for name in ("frames", "episode", "step", "actions", "rewards"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name), err_msg=name)
        np.testing.assert_array_equal(getattr(first, name)[:29], getattr(longer, name)[:29], err_msg=name)
    np.testing.assert_array_equal(
        load_masks(masks_path(tmp_path / "first.npz"), first), load_masks(masks_path(tmp_path / "again.npz"), again)
    )
    other = collect(TASK, 20, tmp_path / "other.npz", seed=1)
    assert not np.array_equal(other.actions[:19], first.actions[:19])
    assert not np.array_equal(other.frames[1:], first.frames[1:20])


def test_a_second_call_without_extend_refuses_and_leaves_the_files_alone(collected, tmp_path):
    from vai.data.frames import masks_path
    from vai.vision.collect import collect

    out = copy_collection(collected, tmp_path)
    before = out.read_bytes(), masks_path(out).read_bytes()
    with pytest.raises(UserError, match="--extend") as error:
        collect(TASK, 30, out, seed=0)
    assert str(out) in str(error.value) and "\n" not in str(error.value)
    assert (out.read_bytes(), masks_path(out).read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != LOCK_NAME) == ["frames.masks.npz", "frames.npz"]


def test_extend_appends_new_episodes_and_keeps_the_old_frames(collected, tmp_path):
    from vai.data.frames import load_frames, load_masks, masks_path
    from vai.vision.collect import collect

    out = copy_collection(collected, tmp_path)
    old = load_frames(collected)
    old_masks = load_masks(masks_path(collected), old)
    store = collect(TASK, 30, out, seed=0, extend=True)
    assert len(store) == FRAMES + 30 and store.episode_count == 3
    reread = load_frames(out)
    np.testing.assert_array_equal(reread.frames[:FRAMES], old.frames)
    np.testing.assert_array_equal(reread.actions[:FRAMES], old.actions)
    # The cut second episode stays cut; the new frames start a new episode at its reset frame.
    assert reread.episode[FRAMES:].tolist() == [2] * 30
    np.testing.assert_array_equal(reread.step[FRAMES:], np.arange(30))
    # Same seed, yet new episodes: the streams are derived from the stored episode count too.
    assert not np.array_equal(reread.actions[FRAMES : FRAMES + 29], old.actions[:29])
    masks = load_masks(masks_path(out), reread)
    assert masks.shape[0] == FRAMES + 30
    np.testing.assert_array_equal(masks[:FRAMES], old_masks)
    assert reread.metadata["extensions"][0] | {"created": None} == {
        "seed": 0, "first_episode": 2, "frames": 30, "created": None
    }  # fmt: skip
    assert reread.metadata["id"] != old.metadata["id"]
    with pytest.raises(UserError, match="other frames"):
        load_masks(masks_path(collected), reread)
    assert not [p.name for p in tmp_path.iterdir() if is_temporary(p.name)], "temporary file left"


def test_extend_refuses_another_task_before_rendering(collected, tmp_path):
    from vai.vision.collect import collect

    out = copy_collection(collected, tmp_path)
    before = out.read_bytes()
    with pytest.raises(UserError, match="holds cartpole_balance frames, not walker_walk"):
        collect("walker_walk", 10, out, extend=True)
    assert out.read_bytes() == before


@pytest.mark.parametrize(("frames", "seed", "needle"), [(0, 0, "--frames"), (10, -1, "--seed")])
def test_collect_refuses_bad_arguments(tmp_path, frames, seed, needle):
    from vai.vision.collect import collect

    with pytest.raises(UserError, match=needle):
        collect(TASK, frames, tmp_path / "frames.npz", seed=seed)
    with pytest.raises(UserError, match="unknown task"):
        collect("cartpole_fly", 10, tmp_path / "frames.npz")
    assert not list(tmp_path.iterdir())


# -- the file format ---------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    from vai.data.frames import load_frames, load_masks, save_frames, save_masks

    store = synthetic_store([5, 1, 7])
    masks = np.random.default_rng(1).random((13, 8, 8)) < 0.3
    save_frames(store, tmp_path / "f.npz")
    save_masks(masks, store, tmp_path / "f.masks.npz")
    loaded = load_frames(tmp_path / "f.npz")
    for name in ("frames", "episode", "step", "actions", "rewards"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(store, name), err_msg=name)
        assert getattr(loaded, name).dtype == getattr(store, name).dtype
    assert loaded.metadata == {**store.metadata, "frame_count": 13}
    np.testing.assert_array_equal(load_masks(tmp_path / "f.masks.npz", loaded), masks)
    assert (tmp_path / "f.npz").stat().st_mode & 0o044, "readable by others, like any file the user writes"


def test_an_interrupted_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    import os

    from vai.data.frames import load_frames, save_frames

    path = tmp_path / "f.npz"
    save_frames(synthetic_store([4]), path)
    before = path.read_bytes()

    def interrupted(source, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_frames(synthetic_store([9], seed=3), path)
    monkeypatch.undo()
    assert path.read_bytes() == before and len(load_frames(path)) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["f.npz"]


def test_damaged_or_wrong_files_give_one_line_user_errors(tmp_path):
    from vai.data.frames import load_frames, load_masks, save_frames, save_masks

    store = synthetic_store([6, 6])
    good = save_frames(store, tmp_path / "good.npz")
    save_masks(np.zeros((12, 8, 8), bool), store, tmp_path / "good.masks.npz")
    data = good.read_bytes()
    cases = {
        "truncated.npz": data[: len(data) // 2],
        "flipped.npz": data[:200] + bytes(b ^ 0xFF for b in data[200:400]) + data[400:],
        "empty.npz": b"",
        "text.npz": b"not an archive\n",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UserError) as error:
            load_frames(tmp_path / name)
        message = str(error.value)
        assert str(tmp_path / name) in message and "vai collect" in message and "\n" not in message, name
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(UserError, match="not a vai file"):
        load_frames(tmp_path / "plain.npy")
    with pytest.raises(UserError, match="'vai-masks', not a 'vai-frames' file"):
        load_frames(tmp_path / "good.masks.npz")
    with pytest.raises(UserError, match="no frames file .*vai collect"):
        load_frames(tmp_path / "absent.npz")
    with pytest.raises(UserError, match="no masks file"):
        load_masks(tmp_path / "absent.masks.npz", store)
    with pytest.raises(UserError, match="other frames"):
        load_masks(tmp_path / "good.masks.npz", synthetic_store([12], seed=5))


def test_masks_path_sits_beside_the_frames():
    from vai.data.frames import masks_path

    assert masks_path("runs/walker_walk/frames.npz") == Path("runs/walker_walk/frames.masks.npz")
    assert masks_path("data/walker") == Path("data/walker.masks.npz")


# -- the command -------------------------------------------------------------------------------------


def test_cli_collects_to_the_default_path_and_prints_what_it_wrote(tmp_path, monkeypatch, capsys):
    from vai.data.frames import load_frames

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["collect", TASK, "--frames", "12", "--seed", "2"])
    assert args.func(args) == 0
    out = Path("runs") / f"{TASK}-paper" / "frames.npz"  # runs/TASK-PRESET, the preset's default: paper
    assert len(load_frames(out)) == 12 and load_frames(out).metadata["seed"] == 2
    printed = capsys.readouterr().out
    assert f"wrote {out}: 12 frames, 1 episodes" in printed and "frames.masks.npz" in printed
    assert f"collect {TASK}: 12/12 frames" in printed


@pytest.mark.parametrize(("preset", "frames"), [("paper", 5000), ("quick", 2000)])
def test_cli_default_frame_count_comes_from_the_vision_preset(collected, tmp_path, preset, frames):
    out = copy_collection(collected, tmp_path)
    args = build_parser().parse_args(["collect", TASK, "--out", str(out), "--preset", preset])
    with pytest.raises(UserError, match=f"--extend to add {frames} frames"):
        args.func(args)


def test_cli_writes_into_a_run_directory_and_refuses_run_with_out(tmp_path, capsys):
    args = build_parser().parse_args(["collect", TASK, "--frames", "3", "--run", str(tmp_path / "mine")])
    assert args.func(args) == 0
    assert (tmp_path / "mine" / "frames.npz").is_file() and (tmp_path / "mine" / "frames.masks.npz").is_file()
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["collect", TASK, "--run", str(tmp_path), "--out", str(tmp_path / "f.npz")])
    assert exit_info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_cli_rejects_an_unknown_preset(tmp_path):
    args = build_parser().parse_args(["collect", TASK, "--out", str(tmp_path / "f.npz"), "--preset", "huge"])
    with pytest.raises(UserError, match="unknown preset 'huge'; choose one of: paper, quick"):
        args.func(args)


def test_collect_refuses_an_unwritable_out_before_rendering(tmp_path):
    from vai.vision.collect import collect

    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match="cannot write"):
        collect(TASK, 10, tmp_path / "a_file" / "frames.npz")
