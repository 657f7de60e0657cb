"""User-facing errors: the CLI prints them as one line, without a traceback."""


class VidkdError(Exception):
    """A mistake a user can fix; the message says what to do."""


class ConfigError(VidkdError):
    """A config file, key or value that is wrong."""


class DatasetError(VidkdError):
    """A dataset layout, split file or video set that cannot be used."""


class VideoDecodeError(VidkdError):
    """A single video that cannot be opened or decoded (callers skip it and count it)."""


class CheckpointError(VidkdError):
    """A checkpoint that is missing, unsafe, or does not fit the model."""


class TrainingError(VidkdError):
    """A run that cannot go on (a NaN loss, a dataset too small for the batch)."""
