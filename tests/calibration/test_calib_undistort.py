"""Undistortion maps: OpenCV parity, caching, and straight board rows on a real image (issue 4)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration import undistort as undistort_module
from calibration.camera import CameraModel
from calibration.chessboard import find_chessboard
from calibration.io import load_camera
from calibration.undistort import Undistorter, undistort
from perception.errors import InputError

SAMPLES = "opencv_samples_calib/samples/data"


@pytest.fixture(scope="module")
def sample_camera(real_data: Path) -> CameraModel:
    return load_camera(real_data / SAMPLES / "left_intrinsics.yml")


def _row_straightness_px(corners: np.ndarray) -> float:
    """Largest distance of a corner from the straight line through its board row."""
    worst = 0.0
    for row in corners.reshape(6, 9, 2):
        centre = row.mean(axis=0)
        _, _, vt = np.linalg.svd(row - centre)
        worst = max(worst, float(np.abs((row - centre) @ vt[1]).max()))
    return worst


def test_undistorted_board_rows_are_straight(real_data: Path, sample_camera: CameraModel) -> None:
    image = cv2.imread(str(real_data / SAMPLES / "left12.jpg"), cv2.IMREAD_GRAYSCALE)
    raw = find_chessboard(image, (9, 6))
    rect = find_chessboard(Undistorter(sample_camera)(image), (9, 6))
    assert _row_straightness_px(raw) > 2.0  # visible barrel distortion (2.4 px)
    assert _row_straightness_px(rect) < 0.5  # 0.3 px: corner noise


def test_matches_cv2_undistort(real_data: Path, sample_camera: CameraModel) -> None:
    image = cv2.imread(str(real_data / SAMPLES / "left01.jpg"))
    ours = Undistorter(sample_camera)(image)
    ref = cv2.undistort(image, sample_camera.K, sample_camera.D)
    assert ours.shape == image.shape
    assert np.mean(np.abs(ours.astype(int) - ref.astype(int))) < 0.5


def test_rectification_uses_r_and_p(real_data: Path) -> None:
    cam = load_camera(real_data / "ros_usb_cam_calib/config/camera_info.yaml")
    und = Undistorter(cam)
    assert und.output_camera == cam.rectified()
    # A raw pixel's ray, rotated by R and projected with P, is where it lands in the output.
    pix = np.array([[100.0, 80.0], [500.0, 400.0]])
    ray = cam.pixel_rays(pix) @ cam.R.T
    expected = (ray @ cam.P[:, :3].T)[:, :2] / (ray @ cam.P[:, :3].T)[:, 2:]
    image = np.zeros((480, 640), np.float32)
    for u, v in pix.round().astype(int):
        image[v - 2 : v + 3, u - 2 : u + 3] = 1.0
    out = und(image)
    for e in expected:
        u0, v0 = np.round(e).astype(int)
        patch = out[v0 - 6 : v0 + 7, u0 - 6 : u0 + 7]
        ys, xs = np.mgrid[v0 - 6 : v0 + 7, u0 - 6 : u0 + 7]
        centroid = np.array([(patch * xs).sum(), (patch * ys).sum()]) / patch.sum()
        # The blob was centred on the rounded pixel, not the exact one.
        assert np.linalg.norm(centroid - e) < 0.75


def test_fisheye_and_alpha(sample_camera: CameraModel) -> None:
    fish = CameraModel(640, 480, sample_camera.K, [0.05, -0.01, 0.0, 0.0], "equidistant")
    out = Undistorter(fish)(np.full((480, 640), 200, np.uint8))
    assert out.shape == (480, 640) and out[240, 320] == 200
    wide = Undistorter(sample_camera, alpha=1.0)
    assert wide.output_camera.fx < sample_camera.fx  # keeps every source pixel: zooms out
    half = Undistorter(sample_camera, output_size=(320, 240))
    assert half.output_camera == sample_camera.rectified().resized(320, 240)
    assert half(np.zeros((480, 640), np.uint8)).shape == (240, 320)


def test_maps_are_built_once_per_camera(sample_camera: CameraModel,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The maps are the expensive part: an equal camera model reuses them, so a frame after the
    first is one cv2.remap (its cost is in benchmarks, not here)."""
    image = np.zeros((480, 640, 3), np.uint8)
    first = undistort(image, sample_camera)
    cached = undistort_module._cache[sample_camera]

    def rebuilt(*_: object) -> None:
        raise AssertionError("maps rebuilt for a cached camera")

    monkeypatch.setattr(cv2, "initUndistortRectifyMap", rebuilt)
    again = undistort(image, load_camera_copy(sample_camera))
    assert undistort_module._cache[sample_camera] is cached  # equal model -> same maps
    assert np.array_equal(again, first)


def load_camera_copy(cam: CameraModel) -> CameraModel:
    return CameraModel(
        cam.width, cam.height, cam.K.copy(), cam.D.copy(), cam.distortion_model, cam.R.copy(), cam.P
    )


def test_wrong_image_size(sample_camera: CameraModel) -> None:
    with pytest.raises(InputError, match=r"camera\.resized"):
        undistort(np.zeros((240, 320), np.uint8), sample_camera)
