"""Progress lines of the stages that train for minutes (the Transporter, the attention adapter).

Each call of the stage's ``log`` callback prints one plain line (a log file or a pipe shows it as a
terminal does): the steps done of the total, which restart is training (the keypoints stage trains
a Transporter again when one collapses), the losses, the speed since the first call (so the stage's
set-up before its first step is left out) and the time left at that speed. ``vai keypoints``,
``vai adapter`` and ``vai run`` print them; collection prints its own (``vai.vision.collect``).

Example::

    log = step_lines("keypoints", preset.transporter_steps)
    train_transporter(preset, frames, episodes, k, log=log)
    #   keypoints 125/500 (25%) | loss 0.01234 | 6.1 steps/s | 0:01:01 left
    #   keypoints 125/500 (25%) | restart 1 of 2 | loss 0.01234 | 6.1 steps/s | 0:01:01 left
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

SHOWN = ("loss", "mask_loss", "feature_loss")
"""Values of a log call that a line shows, where present (the learning rate and timings are left out)."""


def step_lines(stage: str, total: int, write: Callable[[str], None] = print) -> Callable[[dict[str, float]], None]:
    """A ``log(values)`` callback for a training loop of ``total`` steps whose ``values["step"]`` counts
    the steps done; each call writes one line through ``write``."""
    first: list[tuple[float, int]] = []  # (time, steps done) of the first call of this training
    last = [0]

    def log(values: dict[str, float]) -> None:
        done, now = int(values["step"]), time.monotonic()
        if done < last[0]:  # a new training (a restart) counts its steps from the start
            first.clear()
        last[0] = done
        first.extend([] if first else [(now, done)])
        seconds, steps = now - first[0][0], done - first[0][1]
        rate = steps / seconds if seconds > 0 and steps > 0 else 0.0
        parts = [f"{stage} {done}/{total} ({done / max(total, 1):.0%})"]
        if "restart" in values:
            parts[0] += f" | restart {int(values['restart'])} of {int(values.get('restarts', values['restart']))}"
        parts += [f"{name.replace('_', ' ')} {values[name]:.4g}" for name in SHOWN if name in values]
        if rate > 0:
            parts += [f"{rate:.2f} steps/s", f"{timedelta(seconds=round((total - done) / rate))} left"]
        write("  " + " | ".join(parts))

    return log
