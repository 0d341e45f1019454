"""Sweeps: many runs (tasks x algorithms x training seeds) on one machine or a Ray cluster, and their table.

:mod:`vai.sweep.plan` resolves and records what a sweep runs and where its files lie,
:mod:`vai.sweep.jobs` is what a worker runs (a task's vision stages, one RL run and its evaluation),
:mod:`vai.sweep.backends` where (local processes or Ray), :mod:`vai.sweep.command` the scheduler and
``vai sweep``, :mod:`vai.sweep.table` the table over seeds built from the result files.
"""
