"""Exception tree for tad_perception.

Each error also derives from the matching built-in, so callers that catch ``ValueError`` or
``ImportError`` keep working (the PEFT pattern).
"""
from __future__ import annotations

__all__ = [
    "PerceptionError",
    "ConfigError",
    "RegistryError",
    "MissingDependencyError",
    "InputError",
    "CheckpointError",
    "BackendError",
    "BundleError",
    "CalibrationError",
    "DataError",
]


class PerceptionError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(PerceptionError, ValueError):
    """A configuration file or value is invalid."""


class RegistryError(PerceptionError, LookupError):
    """An unknown name was looked up in a registry."""


class MissingDependencyError(PerceptionError, ImportError):
    """An optional dependency is needed but not installed."""


class InputError(PerceptionError, ValueError):
    """An input tensor, frame or message does not have the expected shape, dtype or layout."""


class CheckpointError(PerceptionError, ValueError):
    """A weight file does not match the model it is loaded into."""


class BackendError(PerceptionError, RuntimeError):
    """An inference backend failed to build or run."""


class BundleError(PerceptionError, ValueError):
    """A task bundle is malformed, corrupt or does not fit the running model."""


class CalibrationError(PerceptionError, ValueError):
    """A calibration file or calibration run is invalid."""


class DataError(PerceptionError, ValueError):
    """A dataset, bag or label file cannot be read as expected."""
