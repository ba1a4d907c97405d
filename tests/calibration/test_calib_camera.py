"""CameraModel and Mounting: OpenCV parity, resize/crop geometry, conventions (issue 4)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.camera import CameraModel, Mounting
from perception.errors import CalibrationError

# Real coefficients: usb_cam stereo-left (plumb_bob), calib8.ini (rational), a fisheye lens.
PLUMB = CameraModel(
    640,
    480,
    [[438.783367, 0, 305.593336], [0, 437.302876, 243.738352], [0, 0, 1]],
    [-0.361976, 0.110510, 0.001014, 0.000505, 0.0],
)
RATIONAL = CameraModel(
    640,
    480,
    [[369.344588, 0, 320.739078], [0, 367.154330, 203.592450], [0, 0, 1]],
    [0.189544, -0.018229, -0.000630, 0.000054, -0.000212, 0.543582, -0.027892, 0.0],
    "rational_polynomial",
)
FISHEYE = CameraModel(
    1280,
    800,
    [[420.0, 0, 640.5], [0, 419.0, 400.2], [0, 0, 1]],
    [0.08, -0.02, 0.004, -0.001],
    "equidistant",
)
MODELS = {"plumb_bob": PLUMB, "rational_polynomial": RATIONAL, "equidistant": FISHEYE}


@pytest.fixture
def points_cam() -> np.ndarray:
    rng = np.random.default_rng(4)
    return rng.uniform([-1.0, -0.8, 1.5], [1.0, 0.8, 6.0], (200, 3))


@pytest.mark.parametrize("name", list(MODELS))
def test_project_matches_opencv(name: str, points_cam: np.ndarray) -> None:
    cam = MODELS[name]
    if cam.distortion_model == "equidistant":
        ref, _ = cv2.fisheye.projectPoints(
            points_cam.reshape(1, -1, 3), np.zeros(3), np.zeros(3), cam.K, cam.D
        )
    else:
        ref, _ = cv2.projectPoints(points_cam, np.zeros(3), np.zeros(3), cam.K, cam.D)
    np.testing.assert_allclose(cam.project(points_cam), ref.reshape(-1, 2), atol=1e-9)


@pytest.mark.parametrize("name", list(MODELS))
def test_pixel_rays_invert_project(name: str) -> None:
    cam = MODELS[name]
    rng = np.random.default_rng(5)
    # The whole image, corners included (strongest distortion).
    pix = np.vstack(
        [
            rng.uniform([0, 0], [cam.width - 1, cam.height - 1], (500, 2)),
            [[0, 0], [cam.width - 1, 0], [0, cam.height - 1], [cam.width - 1, cam.height - 1]],
        ]
    )
    rays = cam.pixel_rays(pix)
    assert np.all(rays[:, 2] == 1.0)
    valid = np.isfinite(rays[:, 0])
    assert valid.mean() > 0.95
    np.testing.assert_allclose(cam.project(rays[valid]), pix[valid], atol=1e-6)


def test_pixels_without_a_preimage_give_nan() -> None:
    """calib8.ini's rational model folds back at r_d ~ 1.09; the image corner lies beyond."""
    corner = RATIONAL.pixel_rays([[0.0, 479.0], [320.0, 240.0]])
    assert np.all(np.isnan(corner[0, :2])) and np.all(np.isfinite(corner[1]))


def test_points_behind_camera_are_nan() -> None:
    uv = PLUMB.project([[0.0, 0.0, -1.0], [0.1, 0.0, 2.0]])
    assert np.all(np.isnan(uv[0])) and np.all(np.isfinite(uv[1]))


def test_resized_follows_cv2_resize() -> None:
    """A sub-pixel dot rendered at full size lands where the resized model projects it."""
    cam = CameraModel.pinhole(640, 480, 500.0, 510.0, 321.3, 238.7)
    point = np.array([[0.31, -0.17, 2.0]])
    u, v = cam.project(point)[0]
    yy, xx = np.mgrid[0:480, 0:640]
    image = np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 6.0**2)).astype(np.float32)
    small = cv2.resize(image, (160, 120), interpolation=cv2.INTER_AREA)
    ys, xs = np.mgrid[0:120, 0:160]
    centroid = np.array([(small * xs).sum(), (small * ys).sum()]) / small.sum()
    np.testing.assert_allclose(cam.resized(160, 120).project(point)[0], centroid, atol=0.01)
    assert cam.resized(160, 120).fx == pytest.approx(125.0)


def test_resized_and_cropped_keep_rays() -> None:
    cam = PLUMB
    crop = cam.cropped(100, 50, 400, 300)
    pix = np.array([[150.0, 120.0], [420.0, 330.0]])
    np.testing.assert_allclose(crop.pixel_rays(pix - [100, 50]), cam.pixel_rays(pix), atol=1e-12)
    assert crop.size == (400, 300)
    up = cam.resized(1280, 960)
    np.testing.assert_allclose(
        up.pixel_rays((pix + 0.5) * 2 - 0.5), cam.pixel_rays(pix), atol=1e-12
    )
    with pytest.raises(CalibrationError, match="not inside"):
        cam.cropped(600, 0, 100, 100)


def test_p_follows_resize_and_rectified_model() -> None:
    P = np.array([[393.6538, 0, 322.797939, -20.0], [0, 393.6538, 241.090902, 0], [0, 0, 1, 0]])
    cam = CameraModel(640, 480, PLUMB.K, PLUMB.D, R=np.eye(3), P=P)
    half = cam.resized(320, 240)
    assert half.P[0, 0] == pytest.approx(P[0, 0] / 2) and half.P[0, 3] == pytest.approx(-10.0)
    assert half.P[0, 2] == pytest.approx((P[0, 2] + 0.5) / 2 - 0.5)
    rect = cam.rectified()
    assert not rect.is_distorted and rect.fx == pytest.approx(393.6538) and rect.P[0, 3] == -20.0


def test_value_semantics() -> None:
    a = CameraModel.pinhole(640, 480, 500, 500, 320, 240)
    b = CameraModel.pinhole(640, 480, 500, 500, 320, 240)
    assert a == b and hash(a) == hash(b) and a != a.resized(320, 240)
    with pytest.raises(ValueError):
        a.K[0, 0] = 1.0  # read-only: a frozen model cannot change under a cache


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"K": np.eye(3)[:2]}, r"CameraModel\.K: expected shape"),
        ({"K": np.zeros((3, 3))}, "not calibrated"),
        ({"D": [0.1, 0.2, 0.3]}, r"plumb_bob takes 0 or 4 or 5"),
        ({"distortion_model": "fisheye62"}, "unknown model"),
        ({"R": 2 * np.eye(3)}, "not a rotation"),
        ({"P": np.eye(3)}, r"CameraModel\.P: expected shape \(3, 4\)"),
    ],
)
def test_invalid_models_are_refused(kwargs: dict, match: str) -> None:
    base = {"width": 640, "height": 480, "K": PLUMB.K, "D": PLUMB.D}
    with pytest.raises(CalibrationError, match=match):
        CameraModel(**{**base, **kwargs})


def test_mounting_frames() -> None:
    """Optical z (forward) is vehicle x; positive pitch looks down; positive yaw looks left."""
    level = Mounting(1.5, 0.2, 1.4)
    T = level.camera_to_vehicle()
    np.testing.assert_allclose(T[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-15)  # forward
    np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [0, -1, 0], atol=1e-15)  # right
    np.testing.assert_allclose(T[:3, :3] @ [0, 1, 0], [0, 0, -1], atol=1e-15)  # down
    np.testing.assert_allclose(T[:3, 3], [1.5, 0.2, 1.4])
    forward_down = Mounting(0, 0, 1, pitch_rad=0.1).camera_to_vehicle()[:3, :3] @ [0, 0, 1]
    assert forward_down[2] == pytest.approx(-np.sin(0.1))
    forward_left = Mounting(0, 0, 1, yaw_rad=0.1).camera_to_vehicle()[:3, :3] @ [0, 0, 1]
    assert forward_left[1] == pytest.approx(np.sin(0.1))
    m = Mounting(1.2, -0.3, 1.6, roll_rad=0.02, pitch_rad=0.05, yaw_rad=-0.03)
    np.testing.assert_allclose(m.vehicle_to_camera() @ m.camera_to_vehicle(), np.eye(4), atol=1e-14)
    with pytest.raises(CalibrationError, match="Mounting.z_m"):
        Mounting(0.0, 0.0, float("nan"))
