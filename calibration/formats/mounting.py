"""Mounting YAML (read/write): the camera pose in the vehicle frame, ``x_m, y_m, z_m`` and
``roll/pitch/yaw`` as ``*_rad`` or ``*_deg``, at the top level or under ``mounting:``."""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from calibration.camera import Mounting
from calibration.formats._fields import exact_number, finite_number, required
from perception.errors import CalibrationError

__all__ = ["load_mounting", "mounting_from_dict", "mounting_yaml_text", "save_mounting"]


_MOUNT_LINEAR = ("x_m", "y_m", "z_m")
_MOUNT_ANGLES = ("roll", "pitch", "yaw")


def load_mounting(path: str | Path) -> Mounting:
    """Read a camera mounting (pose in the vehicle frame) from YAML.

    Example file::

        mounting:          # optional wrapper key
          x_m: 1.60        # forward of the vehicle origin
          y_m: 0.0         # left
          z_m: 1.35        # height above the ground
          roll_deg: 0.0
          pitch_deg: 2.5   # positive = looking down
          yaw_deg: 0.0

    Raises:
        CalibrationError: missing/unknown/non-numeric key, or an angle given in both units.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise CalibrationError(f"{path}: cannot read mounting YAML: {err}") from err
    return mounting_from_dict(data, str(path))


def mounting_from_dict(data: Any, where: str = "<mounting>") -> Mounting:
    """:class:`Mounting` from a mapping (see :func:`load_mounting` for the keys)."""
    if isinstance(data, Mapping) and set(data) == {"mounting"}:
        data = data["mounting"]
        prefix = "mounting."
    else:
        prefix = ""
    if not isinstance(data, Mapping):
        raise CalibrationError(
            f"{where}: expected a mapping with x_m, y_m, z_m, roll/pitch/yaw, got {data!r}"
        )
    valid = [*_MOUNT_LINEAR, *(f"{a}_{u}" for a in _MOUNT_ANGLES for u in ("rad", "deg"))]
    if unknown := sorted(set(data) - set(valid)):
        raise CalibrationError(
            f"{where}: unknown fields {[prefix + k for k in unknown]}; valid: {valid}"
        )
    values = {k: finite_number(required(data, k, where, prefix), where, prefix + k) for k in _MOUNT_LINEAR}
    for angle in _MOUNT_ANGLES:
        rad, deg = f"{angle}_rad", f"{angle}_deg"
        if rad in data and deg in data:
            raise CalibrationError(
                f"{where}: field {prefix + angle!r} given twice ({rad} and {deg}); keep one"
            )
        if rad in data:
            values[rad] = finite_number(data[rad], where, prefix + rad)
        elif deg in data:
            values[rad] = math.radians(finite_number(data[deg], where, prefix + deg))
    return Mounting(**values)


def mounting_yaml_text(mounting: Mounting) -> str:
    """YAML for :func:`load_mounting` (angles in radians, exact)."""
    keys = ("x_m", "y_m", "z_m", "roll_rad", "pitch_rad", "yaw_rad")
    body = "\n".join(f"  {k}: {exact_number(getattr(mounting, k))}" for k in keys)
    return (
        "# camera pose in the vehicle frame (x forward, y left, z up); positive pitch = down\nmounting:\n"
        + body
        + "\n"
    )


def save_mounting(path: str | Path, mounting: Mounting) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(mounting_yaml_text(mounting), encoding="utf-8")
    return path
