"""Statistics of evaluation returns: per task mean ± std, and an IQM with a stratified bootstrap CI over tasks.

VAI's protocol evaluates each checkpoint with 10 seeds x 10 episodes per mode (seed i plays video i), so
the results are ``returns[task][mode]``: a float array of shape ``(seeds, episodes)`` of episode returns.
A seed is one run: its score is the mean over its episodes, and every statistic here treats seeds, not
episodes, as the independent samples. A mode may cover fewer seeds than were asked (``video_easy`` seeds
whose clip is missing are not evaluated); ``seeds[task][mode]``, the evaluation seed of each row, lets
the table and ``results.json`` name the seeds behind every number.

The aggregate over tasks follows Agarwal et al., "Deep RL at the Edge of the Statistical Precipice"
(NeurIPS 2021): the interquartile mean (IQM) of all tasks' seed scores, which is robust to an outlying
run yet uses half the runs, with a percentile confidence interval from the stratified bootstrap (resample
seeds with replacement within each task, so every task keeps its number of runs). Both are defined as in
rliable, the paper's library (``metrics.aggregate_iqm``, ``library.get_interval_estimates``), which the
tests compare them with; vai does not need rliable to run. Numbers are aggregated as given, without
normalisation: DMC returns all lie on 0..1000, and DrawerWorld reports success rates, so the two kinds
should be aggregated in separate tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

Returns = Mapping[str, Mapping[str, np.ndarray]]
"""``returns[task][mode]``: float array (seeds, episodes) of episode returns."""

SeedIds = Mapping[str, Mapping[str, Sequence[int]]]
"""``seeds[task][mode]``: the evaluation seed of each row of ``returns[task][mode]``."""


def _trimmed_mean(sorted_values: np.ndarray) -> np.ndarray:
    """IQM of values sorted along the last axis: drop the lowest and the highest n // 4, average the rest.

    This is the paper's IQM, the 25% trimmed mean (scipy's ``trim_mean(x, 0.25)``, rliable's
    ``aggregate_iqm``): exactly the middle half when n is a multiple of 4, else a little more (n = 10:
    the middle 6; n = 5: the middle 3); fewer than 4 values are all kept (the plain mean).
    """
    size = sorted_values.shape[-1]
    cut = size // 4
    return sorted_values[..., cut : size - cut].mean(axis=-1)


def _finite(values, name: str, ndim: int) -> np.ndarray:
    """``values`` as a float array of ``ndim`` dimensions, or a ``ValueError`` that says what is wrong."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:  # ragged lists, strings
        raise ValueError(f"{name}: not a rectangular array of numbers ({error})") from None
    if array.ndim != ndim:
        shape = "(seeds, episodes)" if ndim == 2 else "(seeds,)"
        raise ValueError(f"{name}: expected an array of shape {shape}, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name}: empty array, at least one value is needed")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return array


def iqm(values) -> float:
    """Interquartile mean of all values (flattened): the mean of the middle half, see ``_trimmed_mean``."""
    flat = _finite(np.ravel(np.asarray(values, dtype=np.float64)), "iqm values", 1)
    return float(_trimmed_mean(np.sort(flat)))


def seed_scores(returns) -> np.ndarray:
    """(seeds,) score of each seed: the mean of its episode returns."""
    return _finite(returns, "returns", 2).mean(axis=1)


def summary(returns) -> dict:
    """``mean`` and ``std`` over seeds of the seed scores, with ``seeds`` and ``episodes`` counts.

    The std is the sample std (ddof=1), the spread one would expect from a new seed, as papers report
    it; with a single seed there is no spread to estimate and it is 0.
    """
    scores = seed_scores(returns)
    std = float(scores.std(ddof=1)) if scores.size > 1 else 0.0
    return dict(mean=float(scores.mean()), std=std, seeds=int(scores.size), episodes=int(np.shape(returns)[1]))


def stratified_bootstrap_iqm(
    per_task_scores: Mapping[str, np.ndarray],
    *,
    rng: np.random.Generator,
    repetitions: int = 2000,
    confidence: float = 0.95,
) -> dict:
    """``iqm`` of all tasks' seed scores with the percentile interval ``low``..``high`` of its bootstrap.

    Each repetition draws, per task, as many seeds as it has, with replacement (Agarwal et al., Sec. 4),
    then takes the IQM of the pooled draws; all repetitions are drawn and sorted at once. ``low`` and
    ``high`` are the estimates' percentiles at (1 - confidence) / 2 and its complement, linearly
    interpolated (``np.percentile``), as rliable's default ``percentile`` method. Tasks are visited in
    sorted order, one ``rng.integers`` call each, so a given ``rng`` state gives the same interval
    whatever the dict order.
    """
    if not per_task_scores:
        raise ValueError("per_task_scores: no tasks to aggregate")
    if repetitions < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need repetitions >= 1 and 0 < confidence < 1, got {repetitions} and {confidence}")
    tasks = sorted(per_task_scores)
    scores = [_finite(per_task_scores[task], f"scores of {task}", 1) for task in tasks]
    draws = [task_scores[rng.integers(0, task_scores.size, (repetitions, task_scores.size))] for task_scores in scores]
    estimates = _trimmed_mean(np.sort(np.concatenate(draws, axis=1), axis=1))
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(estimates, [tail, 100.0 - tail])
    return dict(iqm=iqm(np.concatenate(scores)), low=float(low), high=float(high))


def _modes(returns: Returns) -> list[str]:
    """Every mode of any task, in the order first seen."""
    return list(dict.fromkeys(mode for modes in returns.values() for mode in modes))


def aggregate(
    returns: Returns,
    modes: Iterable[str] | None = None,
    *,
    rng: np.random.Generator,
    repetitions: int = 2000,
    confidence: float = 0.95,
) -> dict[str, dict]:
    """``{mode: {iqm, low, high, tasks}}``: the IQM over the tasks evaluated in ``mode`` and its bootstrap CI.

    ``tasks`` counts the tasks that entered the aggregate; ``modes`` defaults to every mode present.
    """
    results = {}
    for mode in _modes(returns) if modes is None else modes:
        per_task = {task: seed_scores(by_mode[mode]) for task, by_mode in returns.items() if mode in by_mode}
        if not per_task:
            raise ValueError(f"mode {mode!r} was evaluated on no task; modes present: {', '.join(_modes(returns))}")
        interval = stratified_bootstrap_iqm(per_task, rng=rng, repetitions=repetitions, confidence=confidence)
        results[mode] = dict(interval, tasks=len(per_task))
    return results


def number_format(values: Iterable[float]) -> str:
    """Whole numbers for returns; two decimals when every value is small (success rates in 0..1)."""
    return "{:.0f}" if any(abs(value) > 10 for value in values) else "{:.2f}"


def markdown_table(
    returns: Returns, title: str, rng: np.random.Generator | None = None, seeds: SeedIds | None = None
) -> str:
    """Rows are tasks, columns modes, cells ``mean ± std`` over seeds, then an ``IQM (95% CI)`` row.

    ``rng`` drives the bootstrap; by default a fixed seed, so the same results always print the same table.
    With ``seeds``, a line under the table names the evaluation seeds of each column (:func:`seeds_line`).
    """
    modes = _modes(returns)
    lines = [f"### {title}", "", "| task | " + " | ".join(modes) + " |", "|---" * (len(modes) + 1) + "|"]
    for task, by_mode in returns.items():
        stats = {mode: summary(by_mode[mode]) for mode in modes if mode in by_mode}
        number = number_format(stat["mean"] for stat in stats.values())
        cell = f"{number} ± {number}"
        cells = [cell.format(stats[m]["mean"], stats[m]["std"]) if m in stats else "—" for m in modes]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    if returns:
        overall = aggregate(returns, rng=np.random.default_rng(0) if rng is None else rng)
        number = number_format(result["iqm"] for result in overall.values())
        cell = f"{number} [{number}, {number}]"
        cells = [cell.format(overall[m]["iqm"], overall[m]["low"], overall[m]["high"]) for m in modes]
        lines.append("| IQM (95% CI) | " + " | ".join(cells) + " |")
    if seeds is not None:
        lines += ["", seeds_line({task: seeds[task] for task in returns if task in seeds})]
    return "\n".join(lines) + "\n"


def seed_list(ids: Sequence[int]) -> str:
    """``0-2, 6, 8, 9``: runs of three or more consecutive seeds as ranges."""
    runs: list[list[int]] = []
    for seed in sorted(ids):
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    return ", ".join(f"{run[0]}-{run[-1]}" if len(run) >= 3 else ", ".join(map(str, run)) for run in runs)


def seeds_line(seeds: SeedIds) -> str:
    """One line naming the evaluation seeds behind each mode, e.g. ``Evaluation seeds: 0-9 in train,
    video_hard; 0-2, 6, 8, 9 in video_easy.`` (each seed once, however many checkpoints played it). A
    mode whose seeds differ between tasks is named per task."""
    modes = _modes(seeds)
    groups: dict[tuple[int, ...], list[str]] = {}
    for mode in modes:
        per_task = {task: tuple(sorted(set(by_mode[mode]))) for task, by_mode in seeds.items() if mode in by_mode}
        if len(set(per_task.values())) == 1:
            groups.setdefault(next(iter(per_task.values())), []).append(mode)
        else:
            for task, ids in per_task.items():
                groups.setdefault(ids, []).append(f"{mode} ({task})")
    parts = [f"{seed_list(ids) if ids else 'none'} in {', '.join(names)}" for ids, names in groups.items()]
    return "Evaluation seeds: " + "; ".join(parts) + "."


def summary_to_json(returns: Returns, rng: np.random.Generator | None = None, seeds: SeedIds | None = None) -> dict:
    """What :func:`markdown_table` shows, as numbers for ``results.json``: ``{"tasks": {task: {mode:
    summary}}, "aggregate": {mode: {iqm, low, high, tasks}}}`` (the same fixed bootstrap seed). With
    ``seeds``, each summary also lists its ``evaluation_seeds``, one per row of the returns."""
    tasks = {task: {mode: summary(values) for mode, values in by_mode.items()} for task, by_mode in returns.items()}
    for task, by_mode in tasks.items():
        for mode, result in by_mode.items():
            if seeds is not None and mode in seeds.get(task, {}):
                ids = [int(seed) for seed in seeds[task][mode]]
                if len(ids) != result["seeds"]:
                    raise ValueError(f"seeds[{task}][{mode}]: {len(ids)} seeds for {result['seeds']} rows")
                result["evaluation_seeds"] = ids
    overall = aggregate(returns, rng=np.random.default_rng(0) if rng is None else rng) if returns else {}
    return {"tasks": tasks, "aggregate": overall}


def returns_to_json(returns: Returns) -> dict[str, dict[str, list[list[float]]]]:
    """Plain nested lists for ``results.json``; ``returns_from_json`` gives back equal arrays."""
    return {
        task: {mode: _finite(values, f"returns[{task}][{mode}]", 2).tolist() for mode, values in by_mode.items()}
        for task, by_mode in returns.items()
    }


def returns_from_json(data: Mapping[str, Mapping[str, list]]) -> dict[str, dict[str, np.ndarray]]:
    """Arrays (seeds, episodes) from the lists of ``returns_to_json``; ragged lists raise ``ValueError``."""
    return {
        task: {mode: _finite(rows, f"returns[{task}][{mode}]", 2) for mode, rows in by_mode.items()}
        for task, by_mode in data.items()
    }
