"""Errors caused by the user's input (config, data, workdir), not by a bug.

`launch.py` prints these as one clear message without a traceback; anything
else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Something the user gave us is wrong; the message says what and what to do."""
