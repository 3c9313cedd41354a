"""Errors a user can act on. The CLI prints them as one line (exit code 2), never a traceback."""


class EdgefleetError(Exception):
    """Base class: the message says what is wrong and, where it can, what to do."""


class FeatureError(EdgefleetError):
    """A window or sampling rate the feature definition cannot take."""


class ArtifactError(EdgefleetError):
    """A model artifact that is truncated, corrupted, of another version or inconsistent."""


class ModelImportError(EdgefleetError):
    """A .tflite file outside what the int8 engine supports (names the op or tensor)."""


class DataError(EdgefleetError):
    """A recording that cannot be used: NaNs, too short, wrong rate, unreadable."""


class SignatureError(EdgefleetError):
    """A manifest whose signature, key or hash does not verify."""


class ConfigError(EdgefleetError):
    """A setting or address with a value the program cannot use."""
