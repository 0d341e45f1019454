"""The one exception type for mistakes a user can make and fix."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user caused and can fix (unknown task, missing data, no GL backend...).

    The message is one line that names the valid choices or the fix. The CLI prints it without a
    traceback and exits with code 2.
    """
