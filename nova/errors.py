"""Errors raised by the NOVA engine.

Every error names what was wrong (file, key, value) and what is allowed, so a user reading
it in ComfyUI or a terminal knows what to change.
"""


class NovaError(Exception):
    """Base class for every error the engine raises on bad input."""


class CheckpointError(NovaError):
    """A checkpoint folder or file is missing, malformed or unsafe to load."""


class ConfigError(CheckpointError):
    """A config file has a missing, unknown or inconsistent value."""


class WeightsError(CheckpointError):
    """Weights are missing, unexpected or have the wrong shape."""


class InputError(NovaError, ValueError):
    """A generation argument (prompt, image, frame count, ...) is invalid."""


class WrongFamilyError(CheckpointError, InputError):
    """A checkpoint of the other model family (a NOVA folder given to URSA or the reverse)."""


class NumericalError(NovaError, RuntimeError):
    """The computation produced NaN or Inf (typically an fp16 overflow)."""
