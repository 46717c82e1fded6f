"""User-facing errors: the CLI prints these as one clear line instead of a traceback."""


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
