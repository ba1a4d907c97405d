"""camera_calibration_parsers INI (read): ``[image]`` width/height and a ``[<camera name>]``
section with ``camera matrix``, ``distortion`` (5 -> plumb_bob, 8 -> rational_polynomial),
``rectification``, ``projection`` blocks."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from calibration.formats._fields import (
    CalibrationFile,
    build_camera,
    field_error,
    finite_number,
    non_negative_int,
)
from perception.errors import CalibrationError

__all__ = ["parse_ini"]


def parse_ini(text: str, where: str = "<string>") -> CalibrationFile:
    """Parse camera_calibration_parsers INI text (the same rules as its C++ reader)."""
    sections: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append([line])
        elif not sections:
            raise CalibrationError(f"{where}: text before the first [section]: {line!r}")
        else:
            sections[-1].append(line)

    def block(section: list[str], key: str, rows: int, cols: int | None, label: str) -> np.ndarray:
        if key not in section:
            raise CalibrationError(f"{where}: missing field {f'{label}.{key}'!r}")
        start = section.index(key) + 1
        lines = section[start : start + rows]
        values: list[list[float]] = []
        for r, line in enumerate(lines):
            if line.startswith("[") or line in _INI_KEYS:
                break
            tokens = line.split()
            values.append(
                [finite_number(t, where, f"{label}.{key}[{r}][{c}]") for c, t in enumerate(tokens)]
            )
        if len(values) != rows or (cols is not None and any(len(v) != cols for v in values)):
            got = "x".join(map(str, (len(values), *sorted({len(v) for v in values}))))
            raise field_error(
                where, f"{label}.{key}", f"expected {rows}x{cols or 'N'} numbers, got {got}"
            )
        return np.array(values, dtype=np.float64)

    image = next((s for s in sections if s[0] == "[image]"), None)
    cams = [s for s in sections if s[0] not in ("[image]", "[externals]")]
    if image is None:
        raise CalibrationError(f"{where}: missing section '[image]'")
    if not cams:
        raise CalibrationError(f"{where}: missing the camera section '[<camera name>]'")
    size = {}
    for key in ("width", "height"):
        if key not in image or image.index(key) + 1 >= len(image):
            raise CalibrationError(f"{where}: missing field {f'image.{key}'!r}")
        size[key] = non_negative_int(image[image.index(key) + 1], where, f"image.{key}")
    cam = cams[-1]
    label = cam[0][1:-1]
    K = block(cam, "camera matrix", 3, 3, label)
    D = block(cam, "distortion", 1, None, label).reshape(-1)
    if D.size not in (5, 8):
        raise field_error(
            where,
            f"{label}.distortion",
            f"expected 5 (plumb_bob) or 8 (rational_polynomial) numbers, got {D.size}",
        )
    R = block(cam, "rectification", 3, 3, label)
    P = block(cam, "projection", 3, 4, label)
    fields = {
        "K": f"{label}.camera matrix",
        "D": f"{label}.distortion",
        "R": f"{label}.rectification",
        "P": f"{label}.projection",
    }
    model = "plumb_bob" if D.size == 5 else "rational_polynomial"
    camera = build_camera(
        where,
        fields,
        width=size["width"],
        height=size["height"],
        K=K,
        D=D,
        distortion_model=model,
        R=R,
        P=P,
    )
    return CalibrationFile(camera, label, None if where == "<string>" else Path(where), "ini")


_INI_KEYS = frozenset(
    {
        "camera matrix",
        "distortion",
        "rectification",
        "projection",
        "width",
        "height",
        "translation",
        "rotation",
    }
)
