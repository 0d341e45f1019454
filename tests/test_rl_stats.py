"""Evaluation statistics: IQMs and bootstrap intervals by hand and against rliable, tables, results.json."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from vai.rl.stats import (
    aggregate,
    iqm,
    markdown_table,
    returns_from_json,
    returns_to_json,
    seed_scores,
    stratified_bootstrap_iqm,
    summary,
)


@pytest.mark.parametrize(
    "values, expected",
    [
        ([1, 2, 3, 4, 5, 6, 7, 8], 4.5),  # mean of 3, 4, 5, 6
        ([8, 1, 7, 2, 6, 3, 5, 4], 4.5),  # order does not matter
        ([[1, 2, 3, 4], [5, 6, 7, 8]], 4.5),  # flattened
        ([1, 2, 3, 4, 5, 6, 7, 1000], 4.5),  # an outlier is trimmed
        ([-1000, 2, 3, 4, 5, 6, 7, 8], 4.5),
        (list(range(1, 13)), 6.5),  # trim 3 each side: mean of 4..9, as scipy's trim_mean
        ([5], 5.0),
        ([1, 3], 2.0),  # fewer than 4: nothing trimmed, the plain mean
        ([0, 0, 6], 2.0),
        ([1, 2, 3, 4, 100], 3.0),  # trim 1 each side: mean of 2, 3, 4
        ([0, 0, 6, 12, 12, 100], 7.5),  # trim 1 each side: mean of 0, 6, 12, 12
        ([0, 0, 1, 1, 1, 1, 1, 1, 9, 9], 1.0),  # VAI's 10 seeds: trim 2 each side, mean of the middle 6
    ],
)
def test_iqm_hand_computed(values, expected):
    assert iqm(np.array(values)) == pytest.approx(expected)


def test_seed_scores_and_summary():
    returns = np.array([[100.0, 200.0], [300.0, 400.0]])
    np.testing.assert_allclose(seed_scores(returns), [150.0, 350.0])
    result = summary(returns)
    assert result["mean"] == pytest.approx(250.0)
    assert result["std"] == pytest.approx(100.0 * np.sqrt(2.0))  # ddof=1: sqrt((100² + 100²) / 1)
    assert (result["seeds"], result["episodes"]) == (2, 2)
    assert summary(np.array([[1.0, 2.0, 3.0]])) == dict(mean=2.0, std=0.0, seeds=1, episodes=3)


def test_bootstrap_contains_point_and_is_deterministic():
    scores = {"a": np.array([1.0, 2.0, 3.0, 4.0]), "b": np.array([5.0, 6.0, 7.0, 8.0])}
    first = stratified_bootstrap_iqm(scores, rng=np.random.default_rng(3))
    assert first["iqm"] == pytest.approx(4.5)
    assert first["low"] < first["iqm"] < first["high"]
    assert stratified_bootstrap_iqm(scores, rng=np.random.default_rng(3)) == first
    reordered = {"b": scores["b"], "a": scores["a"]}
    assert stratified_bootstrap_iqm(reordered, rng=np.random.default_rng(3)) == first
    # Few distinct resample IQMs here, so another seed may find the same percentiles; continuous scores differ.
    continuous = {task: np.random.default_rng(seed).normal(500.0, 100.0, 10) for seed, task in enumerate("ab")}
    one, other = (stratified_bootstrap_iqm(continuous, rng=np.random.default_rng(seed)) for seed in (3, 4))
    assert one["iqm"] == other["iqm"] and one != other


def test_bootstrap_is_stratified():
    # Each task keeps its own runs, so every resample pools exactly [0, 0, 10, 10]: the IQM is always 5.
    # A bootstrap over the pooled runs would also draw e.g. [0, 0, 0, 10] and give a wide interval.
    result = stratified_bootstrap_iqm({"a": np.zeros(2), "b": np.full(2, 10.0)}, rng=np.random.default_rng(0))
    assert result == pytest.approx(dict(iqm=5.0, low=5.0, high=5.0))


def test_bootstrap_of_equal_seeds_is_the_point():
    scores = {"a": np.full(10, 500.0), "b": np.full(3, 700.0)}
    result = stratified_bootstrap_iqm(scores, rng=np.random.default_rng(0), repetitions=200)
    assert result["iqm"] == pytest.approx(iqm(np.r_[np.full(10, 500.0), np.full(3, 700.0)]))
    assert result["low"] == pytest.approx(result["iqm"]) and result["high"] == pytest.approx(result["iqm"])


def test_bootstrap_interval_shrinks_with_more_seeds():
    draw = np.random.default_rng(1)
    few = {task: draw.normal(500.0, 100.0, 5) for task in ("a", "b", "c")}
    many = {task: draw.normal(500.0, 100.0, 50) for task in ("a", "b", "c")}
    narrow = stratified_bootstrap_iqm(many, rng=np.random.default_rng(0))
    wide = stratified_bootstrap_iqm(few, rng=np.random.default_rng(0))
    for result in (narrow, wide):
        assert result["low"] <= result["iqm"] <= result["high"]
    assert narrow["high"] - narrow["low"] < 0.5 * (wide["high"] - wide["low"])


needs_rliable = pytest.mark.skipif(
    importlib.util.find_spec("rliable") is None, reason="needs the test extra: pip install -e .[test]"
)


def _rliable_iqm(scores: np.ndarray) -> np.ndarray:
    from rliable import metrics

    return np.array([metrics.aggregate_iqm(scores)])


@needs_rliable
@pytest.mark.parametrize("runs, tasks", [(1, 1), (2, 1), (3, 2), (5, 1), (10, 1), (10, 3), (7, 5), (13, 2)])
def test_iqm_equals_rliables(runs, tasks):
    from rliable import metrics

    draw = np.random.default_rng(runs * 100 + tasks)
    # Multiples of 1/8 below 2**20 add up without rounding in any order, so the two agree to the last bit.
    exact = draw.integers(0, 8000, (runs, tasks)) / 8
    assert iqm(exact) == metrics.aggregate_iqm(exact)
    # Any float: equal up to the rounding of a sum taken in another order.
    continuous = draw.normal(500.0, 100.0, (runs, tasks))
    assert iqm(continuous) == pytest.approx(metrics.aggregate_iqm(continuous), rel=1e-12, abs=0)


class _Replay:
    """Stands in for the ``np.random.Generator`` of :func:`stratified_bootstrap_iqm`: each ``integers``
    call (one per task, in sorted order) returns the seed indices rliable drew for that task."""

    def __init__(self, per_task_draws: list[np.ndarray]):
        self.draws = iter(per_task_draws)

    def integers(self, low, high, size):
        draws = next(self.draws)
        assert (low, high, tuple(size)) == (0, draws.shape[1], draws.shape)
        return draws


def _recording_choice(monkeypatch) -> list[np.ndarray]:
    """Lets numpy's global ``np.random.choice``, which rliable's stratified bootstraps draw from, record
    what it returns."""
    recorded, choice = [], np.random.choice

    def record(*args, **kwargs):
        recorded.append(choice(*args, **kwargs))
        return recorded[-1]

    monkeypatch.setattr(np.random, "choice", record)
    return recorded


@needs_rliable
def test_bootstrap_interval_equals_rliables_on_the_same_resamples(monkeypatch):
    from rliable import library

    # VAI's protocol: 10 seeds per task; the tasks are the matrix's columns, in sorted order.
    tasks = ["cartpole_balance", "finger_spin", "walker_walk"]
    scores = np.random.default_rng(7).normal([300.0, 500.0, 800.0], 100.0, (10, 3))
    recorded = _recording_choice(monkeypatch)
    point, interval = library.get_interval_estimates({"vai": scores}, _rliable_iqm, reps=2000)
    # One draw per repetition, (runs, tasks): entry [i, t] is the seed standing in for seed i of task t.
    draws = np.stack(recorded)
    assert draws.shape == (2000, 10, 3)
    ours = stratified_bootstrap_iqm(
        {task: scores[:, column] for column, task in enumerate(tasks)},
        rng=_Replay([draws[:, :, column] for column in range(3)]),
        repetitions=2000,
    )
    assert ours["iqm"] == pytest.approx(point["vai"][0], rel=1e-12, abs=0)
    np.testing.assert_allclose([ours["low"], ours["high"]], interval["vai"][:, 0], rtol=1e-12, atol=0)


@needs_rliable
def test_bootstrap_interval_equals_rliables_when_tasks_have_different_seed_counts(monkeypatch):
    # A video_easy column whose missing clips left some tasks fewer seeds: rliable takes one array per task.
    from rliable import library

    draw = np.random.default_rng(8)
    per_task = {"a": draw.normal(300.0, 50.0, 10), "b": draw.normal(600.0, 50.0, 6), "c": draw.normal(0.0, 50.0, 3)}
    recorded = _recording_choice(monkeypatch)

    def pooled_iqm(*task_scores):
        return _rliable_iqm(np.concatenate([scores.ravel() for scores in task_scores]))

    arrays = [per_task[task][:, None] for task in sorted(per_task)]  # (runs, 1 task) each
    point, interval = library.get_interval_estimates({"vai": arrays}, pooled_iqm, reps=1000)
    # Each repetition draws the tasks in turn, (runs, 1) each.
    draws = [np.stack(recorded[index::3])[:, :, 0] for index in range(3)]
    assert [task_draws.shape for task_draws in draws] == [(1000, 10), (1000, 6), (1000, 3)]
    ours = stratified_bootstrap_iqm(per_task, rng=_Replay(draws), repetitions=1000)
    assert ours["iqm"] == pytest.approx(point["vai"][0], rel=1e-12, abs=0)
    np.testing.assert_allclose([ours["low"], ours["high"]], interval["vai"][:, 0], rtol=1e-12, atol=0)


@pytest.fixture
def numpy_global_seed():
    """Seeds numpy's global generator (rliable draws from it) and puts its state back afterwards."""
    state = np.random.get_state()
    np.random.seed(0)
    yield
    np.random.set_state(state)


@needs_rliable
def test_bootstrap_interval_matches_rliables_with_its_own_draws(numpy_global_seed):
    """Our own resampling against rliable's, each with its own random draws.

    Both intervals are percentiles of R = 10,000 bootstrap IQMs from the same distribution F. Our
    endpoint at level p = 0.025 (or 0.975) has F(endpoint) = p + N(0, p(1 - p) / R), and rliable's
    empirical CDF differs from F by another N(0, p(1 - p) / R) there, so rliable's empirical CDF at our
    endpoint lies within p ± 4 s, s = sqrt(2 p (1 - p) / R) = 0.0022, but with probability 6e-5: our
    endpoint must lie between rliable's estimates' quantiles at those levels (0.016 and 0.034). The band
    holds whatever the scale of the scores and is too narrow for a 90% interval (p = 0.05), a bootstrap
    that ignores the tasks, or one that never draws a task's last seed.
    """
    from rliable import library

    repetitions, p = 10_000, 0.025
    scores = np.random.default_rng(9).normal([300.0, 500.0, 800.0], 100.0, (10, 3))
    theirs = library.StratifiedBootstrap(scores).apply(_rliable_iqm, repetitions)[:, 0]
    ours = stratified_bootstrap_iqm(
        {task: scores[:, column] for column, task in enumerate("abc")}, rng=np.random.default_rng(0), repetitions=10_000
    )
    band = 4 * np.sqrt(2 * p * (1 - p) / repetitions)
    for endpoint, level in ((ours["low"], p), (ours["high"], 1 - p)):
        below, above = np.quantile(theirs, [level - band, level + band])
        assert below <= endpoint <= above, (endpoint, level, below, above)


def _returns() -> dict[str, dict[str, np.ndarray]]:
    return {
        "cheetah_run": {"train": np.array([[100.0, 200.0], [300.0, 400.0]]), "video_hard": np.array([[50.0, 70.0]])},
        "drawer_open": {"train": np.array([[1.0, 0.0], [1.0, 1.0]])},
    }


def test_aggregate_pools_tasks_that_have_the_mode():
    result = aggregate(_returns(), rng=np.random.default_rng(0), repetitions=500)
    assert list(result) == ["train", "video_hard"]
    assert result["train"]["tasks"] == 2 and result["video_hard"]["tasks"] == 1
    assert result["train"]["iqm"] == pytest.approx(iqm([150.0, 350.0, 0.5, 1.0]))  # mean of 1.0 and 150
    assert result["video_hard"] == pytest.approx(dict(iqm=60.0, low=60.0, high=60.0, tasks=1))
    with pytest.raises(ValueError, match="color_hard.*no task"):
        aggregate(_returns(), modes=["color_hard"], rng=np.random.default_rng(0))


def test_markdown_table():
    table = markdown_table(_returns(), "Returns")
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| task")]
    assert [row.split(" | ")[0] for row in rows] == ["| cheetah_run", "| drawer_open", "| IQM (95% CI)"]
    assert "| task | train | video_hard |" in table
    assert "| cheetah_run | 250 ± 141 | 60 ± 0 |" in table
    assert "| drawer_open | 0.75 ± 0.35 | — |" in table  # success rates keep two decimals
    assert rows[-1].startswith("| IQM (95% CI) | 76 [") and "| 60 [60, 60] |" in rows[-1]
    assert markdown_table(_returns(), "Returns") == table  # fixed default seed


def test_json_round_trip():
    returns = _returns()
    restored = returns_from_json(json.loads(json.dumps(returns_to_json(returns))))
    assert list(restored) == list(returns)
    for task, by_mode in returns.items():
        assert list(restored[task]) == list(by_mode)
        for mode, values in by_mode.items():
            np.testing.assert_array_equal(restored[task][mode], values)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: iqm(np.array([])), "empty"),
        (lambda: iqm([1.0, np.nan]), "NaN"),
        (lambda: summary(np.array([1.0, 2.0])), r"shape \(seeds, episodes\)"),
        (lambda: summary(np.zeros((0, 10))), "empty"),
        (lambda: stratified_bootstrap_iqm({}, rng=np.random.default_rng(0)), "no tasks"),
        (lambda: stratified_bootstrap_iqm({"a": np.ones((2, 2))}, rng=np.random.default_rng(0)), "scores of a"),
        (lambda: stratified_bootstrap_iqm({"a": np.ones(2)}, rng=np.random.default_rng(0), confidence=1.5), "conf"),
        (lambda: returns_from_json({"cheetah_run": {"train": [[1.0, 2.0], [3.0]]}}), r"\[train\]: not a rectangular"),
        (lambda: returns_from_json({"cheetah_run": {"train": [1.0, 2.0]}}), "got shape"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
