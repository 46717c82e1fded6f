"""User-facing errors: the CLI prints these as one clear line instead of a traceback."""

from __future__ import annotations

import re

# How torch's DataLoader re-raises a worker's exception in the main process.
_WORKER_WRAPPED = re.compile(
    r"\ACaught (\w+) in DataLoader worker process (\d+)\.\nOriginal Traceback"
)


class StudyError(Exception):
    """A problem with the user's input (file, config, data) that the user can fix."""


class DataError(StudyError):
    """A dataset file is missing, corrupt or inconsistent. The message names the file."""


class ConfigError(StudyError):
    """An experiment or params file is invalid. The message names the file and the key."""


class CheckpointError(StudyError):
    """A checkpoint cannot be loaded into a model (missing, unexpected or mis-shaped keys)."""


class TrainingDiverged(StudyError):
    """A loss term became NaN or Inf; the message names the iteration and the term."""


def user_message(exc: BaseException) -> str:
    """The message to show for ``exc``: its text, or for an error raised in a DataLoader worker
    (which torch wraps in the worker's traceback) the original message plus the worker."""
    text = str(exc)
    wrapped = _WORKER_WRAPPED.match(text)
    if not wrapped:
        return text
    name, worker = wrapped.groups()
    # The traceback ends with "<module>.<Name>: <message>"; the message may span lines.
    lines = list(re.finditer(rf"^(?:[\w.]+\.)?{name}: ", text, re.MULTILINE))
    if not lines:
        return text
    last = lines[-1]
    return f"{text[last.end() :].rstrip()} (in DataLoader worker {worker})"
