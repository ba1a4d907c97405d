"""Lane mask -> vehicle-frame polylines on synthetic and real (TuSimple) masks (issue 4)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.camera import CameraModel, Mounting
from calibration.lanes import draw_lane_mask, mask_to_polylines
from perception.errors import InputError

CAMERA = CameraModel.pinhole(1280, 720, 1000.0, 1000.0, 639.5, 359.5)
MOUNT = Mounting(1.5, 0.0, 1.5, roll_rad=0.005, pitch_rad=np.radians(1.5), yaw_rad=0.01)
OFFSETS = (-5.25, -1.75, 1.75, 5.25)


def _truth() -> list[np.ndarray]:
    """Four lane lines 3.5 m apart on a left curve (R ~ 300 m), as cubic y(x)."""
    x = np.linspace(0.0, 60.0, 241)
    return [np.column_stack([x, c0 + 0.02 * x + x**2 / 600 + 1e-6 * x**3]) for c0 in OFFSETS]


def _render(camera: CameraModel, noise: float = 0.0) -> np.ndarray:
    mask = np.zeros((camera.height, camera.width), np.uint8)
    for i, line in enumerate(_truth()):  # solid outer lines, dashed 3 m / 9 m inner lines
        mask |= draw_lane_mask(
            [line], camera, MOUNT, width_m=0.15, dash=(3.0, 9.0) if i in (1, 2) else None
        )
    if noise:
        rng = np.random.default_rng(7)
        mask[rng.random(mask.shape) < noise] = 255
    return mask


def _lateral_errors(lines: list[np.ndarray], max_x: float) -> list[float]:
    assert len(lines) == len(OFFSETS)
    errors = []
    for line, truth in zip(lines, _truth(), strict=True):  # sorted right to left, like OFFSETS
        near = line[line[:, 0] <= max_x]
        errors.append(
            float(np.abs(near[:, 1] - np.interp(near[:, 0], truth[:, 0], truth[:, 1])).max())
        )
    return errors


@pytest.mark.parametrize("noise", [0.0, 0.005], ids=["clean", "speckle"])
def test_synthetic_mask_back_to_polylines(noise: float) -> None:
    lines = mask_to_polylines(_render(CAMERA, noise), CAMERA, MOUNT)
    assert max(_lateral_errors(lines, 30.0)) < 0.05
    for line in lines:
        assert line.shape[1] == 3 and np.all(line[:, 2] == 0.0) and np.all(np.diff(line[:, 0]) > 0)
        assert line[0, 0] < 13.0 and line[-1, 0] > 35.0  # dashes bridged from first to last
    offsets = [line[0, 1] for line in lines]
    assert offsets == sorted(offsets)


def test_distorted_camera_and_network_resolution() -> None:
    lens = CameraModel(
        1280,
        720,
        [[900.0, 0, 650.0], [0, 900.0, 350.0], [0, 0, 1]],
        [-0.3, 0.09, 0.001, 0.0005, 0.0],
    )
    assert max(_lateral_errors(mask_to_polylines(_render(lens, 0.002), lens, MOUNT), 30.0)) < 0.05
    small = CAMERA.resized(512, 288)  # what the engine's lanes head outputs
    assert max(_lateral_errors(mask_to_polylines(_render(small), small, MOUNT), 30.0)) < 0.08


def test_clutter_beside_lines_is_rejected() -> None:
    mask = _render(CAMERA)
    cv2.rectangle(mask, (600, 600), (700, 610), 255, -1)  # a stop-line-like bar across a lane
    for u, v in [(300, 650), (900, 520), (1000, 700)]:  # blobs on the road
        cv2.circle(mask, (u, v), 6, 255, -1)
    lines = mask_to_polylines(mask, CAMERA, MOUNT)
    assert max(_lateral_errors(lines, 30.0)) < 0.05


def test_empty_and_wrong_size() -> None:
    assert mask_to_polylines(np.zeros((720, 1280), bool), CAMERA, MOUNT) == []
    with pytest.raises(InputError, match=r"camera\.resized"):
        mask_to_polylines(np.zeros((360, 640), bool), CAMERA, MOUNT)


def test_real_tusimple_masks(real_data: Path) -> None:
    """Real lane masks (LaneNet's TuSimple ground truth): one polyline per labelled lane, ~3.5 m
    apart. The camera is not published: f = 1000 px and 1.5 m height are assumed, and the pitch
    comes from the vanishing point of the two longest lanes."""
    root = real_data / "lanenet_tusimple/data/training_data_example"
    for name in ("0000.png", "0001.png", "0002.png"):
        binary = cv2.imread(str(root / "gt_binary_image" / name), cv2.IMREAD_GRAYSCALE)
        instance = cv2.imread(str(root / "gt_instance_image" / name), cv2.IMREAD_GRAYSCALE)
        ids = [i for i in np.unique(instance) if i]
        fits = []
        for i in ids:
            v, u = np.nonzero(instance == i)
            near = v > np.median(v)
            fits.append((len(v), np.polyfit(v[near], u[near], 1)))
        (a1, b1), (a2, b2) = (f for _, f in sorted(fits, key=lambda item: -item[0])[:2])
        horizon = (b2 - b1) / (a1 - a2)
        mount = Mounting(0.0, 0.0, 1.5, pitch_rad=float(np.arctan((359.5 - horizon) / 1000.0)))
        lines = mask_to_polylines(binary, CAMERA, mount)
        assert len(lines) == len(ids), name
        near_offsets = [float(np.interp(12.0, line[:, 0], line[:, 1])) for line in lines]
        assert np.all((np.diff(near_offsets) > 2.5) & (np.diff(near_offsets) < 4.5)), (
            name,
            near_offsets,
        )
