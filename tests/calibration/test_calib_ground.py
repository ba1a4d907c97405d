"""Ground-plane projection: round trips and closed-form values for a known mounting (issue 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calibration.camera import CameraModel, Mounting
from calibration.ground import ground_homography, ground_to_pixel, horizon_row, pixel_to_ground
from calibration.io import load_camera

PINHOLE = CameraModel.pinhole(1280, 720, 1000.0, 1000.0, 639.5, 359.5)
MOUNT = Mounting(x_m=1.2, y_m=0.3, z_m=1.45, pitch_rad=0.04)


def _analytic_ground(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pinhole + pure pitch by hand: optical ray (a, b, 1) is (1, -a, -b) in the level camera
    body frame; pitching by theta about y gives x = cos - sin*b, z = -(sin + cos*b)."""
    a, b = (u - 639.5) / 1000.0, (v - 359.5) / 1000.0
    c, s = np.cos(MOUNT.pitch_rad), np.sin(MOUNT.pitch_rad)
    t = MOUNT.z_m / (s + c * b)
    return np.column_stack([MOUNT.x_m + t * (c - s * b), MOUNT.y_m - t * a, np.zeros_like(a)])


def test_matches_closed_form_5_to_50_m() -> None:
    distances = np.arange(5.0, 50.01, 2.5)  # ahead of the camera, along its column
    # Row of each distance: angle below the horizontal = atan(h / d) = pitch + atan(b).
    v = 359.5 + 1000.0 * np.tan(np.arctan(MOUNT.z_m / distances) - MOUNT.pitch_rad)
    u = np.linspace(100.0, 1180.0, v.size)  # also off-centre columns
    got = pixel_to_ground(PINHOLE, MOUNT, np.column_stack([u, v]))
    expected = _analytic_ground(u, v)
    assert np.abs(got - expected).max() < 1e-3  # 1 mm
    on_axis = pixel_to_ground(PINHOLE, MOUNT, np.column_stack([np.full_like(v, 639.5), v]))
    np.testing.assert_allclose(on_axis[:, 0], MOUNT.x_m + distances, atol=1e-3)
    np.testing.assert_allclose(on_axis[:, 1], MOUNT.y_m, atol=1e-9)
    # And back: the analytic rows of points straight ahead.
    pts = np.column_stack(
        [MOUNT.x_m + distances, np.full_like(distances, MOUNT.y_m), np.zeros_like(distances)]
    )
    np.testing.assert_allclose(
        ground_to_pixel(PINHOLE, MOUNT, pts),
        np.column_stack([np.full_like(v, 639.5), v]),
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "path",
    [
        "ros_usb_cam_calib/config/camera_info.yaml",
        "ros_image_common_calib/camera_calibration_parsers/test/calib8.ini",
        "opencv_samples_calib/samples/data/left_intrinsics.yml",
    ],
)
def test_pixel_ground_pixel_roundtrip(real_data: Path, path: str) -> None:
    cam = load_camera(real_data / path)
    mount = Mounting(1.8, -0.2, 1.3, roll_rad=0.02, pitch_rad=0.12, yaw_rad=-0.05)
    u, v = np.meshgrid(np.linspace(0, cam.width - 1, 33), np.linspace(0, cam.height - 1, 25))
    pix = np.column_stack([u.ravel(), v.ravel()])
    ground = pixel_to_ground(cam, mount, pix)
    hit = np.isfinite(ground[:, 0])
    assert 0.3 < hit.mean() < 0.9  # the horizon crosses the image
    assert np.all(ground[hit, 2] == 0.0)
    assert np.abs(ground_to_pixel(cam, mount, ground[hit]) - pix[hit]).max() < 0.01


def test_above_horizon_is_nan() -> None:
    row = horizon_row(PINHOLE, MOUNT)
    assert row == pytest.approx(359.5 - 1000.0 * np.tan(MOUNT.pitch_rad))
    got = pixel_to_ground(PINHOLE, MOUNT, [[640.0, row - 1.0], [640.0, row + 1.0]])
    assert np.all(np.isnan(got[0])) and np.all(np.isfinite(got[1]))
    assert np.all(np.isnan(ground_to_pixel(PINHOLE, MOUNT, [[-5.0, 0.0, 0.0]])))  # behind


def test_homography_agrees_with_projection() -> None:
    mount = Mounting(1.5, 0.1, 1.4, roll_rad=0.01, pitch_rad=0.06, yaw_rad=0.02)
    H = ground_homography(PINHOLE, mount)
    ground = np.array([[6.0, -2.0], [15.0, 1.5], [40.0, 3.0]])
    p = np.column_stack([ground, np.ones(3)]) @ H.T
    np.testing.assert_allclose(
        p[:, :2] / p[:, 2:],
        ground_to_pixel(PINHOLE, mount, np.column_stack([ground, np.zeros(3)])),
        atol=1e-9,
    )
    raised = pixel_to_ground(
        PINHOLE, mount, ground_to_pixel(PINHOLE, mount, [[10.0, 1.0, 0.2]]), ground_z_m=0.2
    )
    np.testing.assert_allclose(raised, [[10.0, 1.0, 0.2]], atol=1e-9)
