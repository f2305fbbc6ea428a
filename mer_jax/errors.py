"""Errors caused by the user's input (config, data, workdir) or by the training itself,
not by a bug.

`launch.py` prints these as one clear line without a traceback and exits with the
error's `exit_code`; anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Something the user gave us is wrong; the message says what and what to do."""

    exit_code = 2


class DivergedError(UserError):
    """Training diverged (a non-finite loss or prediction): the run stopped, no metrics
    were reported from it. The message names the replica (fold, seed) and the step."""

    exit_code = 3
