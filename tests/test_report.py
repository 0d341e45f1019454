"""What a run reports: how much an agent learned, read back from its CSV logs."""

from __future__ import annotations

from vai.report import EPISODES_COMPARED, curves, learning_summary


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header), *(",".join(str(value) for value in row) for row in rows)]) + "\n")


def test_learning_summary_compares_first_and_last_evaluations_and_episodes(tmp_path):
    write_csv(tmp_path / "eval_train.csv", ["step", "frames", "return"], [(0, 0, 250.0), (500, 4000, 410.0)])
    episodes = [100.0 + 10 * index for index in range(3 * EPISODES_COMPARED)]
    write_csv(tmp_path / "train.csv", ["frames", "return"], [(1000 * (i + 1), r) for i, r in enumerate(episodes)])
    summary = learning_summary(tmp_path)
    assert summary["first_return"] == 250.0 and summary["last_return"] == 410.0 and summary["last_frames"] == 4000
    assert summary["last_step"] == 500
    assert summary["first_episodes"] == sum(episodes[:EPISODES_COMPARED]) / EPISODES_COMPARED
    assert summary["last_episodes"] == sum(episodes[-EPISODES_COMPARED:]) / EPISODES_COMPARED
    assert set(curves({"vai": tmp_path})["vai"]) == {"train", "training episodes"}


def test_learning_summary_needs_an_evaluation_and_enough_episodes_to_compare(tmp_path):
    assert learning_summary(tmp_path) is None
    write_csv(tmp_path / "eval_train.csv", ["step", "frames", "return"], [(0, 0, 250.0)])
    write_csv(tmp_path / "train.csv", ["frames", "return"], [(1000, 300.0)])
    assert "first_episodes" not in learning_summary(tmp_path)
