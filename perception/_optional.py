"""Import optional dependencies with an error that says how to install them."""
from __future__ import annotations

import importlib
from types import ModuleType

from perception.errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"{purpose} needs {module!r}, which is not installed. "
            f"Install it with: pip install 'tad_perception[{extra}]'"
        ) from err
