"""The exceptions the CLI turns into one clear line: mistakes a user can fix, and a diverged training run."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user caused and can fix (unknown task, missing data, no GL backend...).

    The message is one line that names the valid choices or the fix. The CLI prints it without a
    traceback and exits with code 2.
    """


class WriteFailed(UserError):
    """A file could not be written: a full disk, a read-only file system, no permission, or a file where a
    folder should be. The message names the path and the fix; files written before stay as they were."""


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite during training; the state was saved for inspection (exit code 1)."""
