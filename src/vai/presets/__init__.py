"""The presets: every setting that does not depend on the task, per compute budget (``paper``, ``quick``).

:mod:`vai.presets.vision` holds those of VAI's steps 0-2, :mod:`vai.presets.rl` those of the agent
(step 3), and :mod:`vai.presets.settings` the ``--set KEY=VALUE`` parser that changes them. The
task constants are in :mod:`vai.tasks`.
"""
