"""Exceptions raised by vaecodec.

Every error a user can cause (a missing dataset, a corrupt checkpoint, a truncated file, an
unknown model name) is a :class:`VaecodecError` with a message that says what to do. The CLI
prints the message and exits with status 2 instead of showing a traceback.
"""


class VaecodecError(Exception):
    """Base class of every error vaecodec raises on bad input."""


class DatasetError(VaecodecError):
    """A dataset is unknown, missing, or unreadable."""


class ModelError(VaecodecError):
    """A model name is unknown, or a checkpoint / config is missing, corrupt or mismatched."""


class FormatError(VaecodecError):
    """A compressed file is corrupt, truncated, of another version, or made by another model."""


class ImageError(VaecodecError):
    """An input image cannot be read or has a size / mode the model cannot code."""


class TrainingError(VaecodecError):
    """Training diverged (NaN / inf loss) or cannot continue."""
