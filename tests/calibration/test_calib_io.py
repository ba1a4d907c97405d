"""Calibration file IO on the real files in ../shared/data/real, and CameraInfo fields (issue 4)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from calibration.camera import CameraModel, Mounting
from calibration.io import (
    camera_info_from_msg,
    camera_info_to_fields,
    load_calibration,
    load_camera,
    load_mounting,
    parse_ros_yaml,
    ros_yaml_text,
    save_mounting,
    save_ros_yaml,
)
from perception.errors import CalibrationError

ROS_YAML = "ros_image_common_calib/camera_info_manager/tests/test_calibration.yaml"
USB_CAM = "ros_usb_cam_calib/config/camera_info.yaml"
INI5 = "ros_image_common_calib/camera_calibration_parsers/test/calib5.ini"
INI8 = "ros_image_common_calib/camera_calibration_parsers/test/calib8.ini"
OPENCV = "opencv_samples_calib/samples/data/left_intrinsics.yml"
STEREO = "opencv_samples_calib/samples/data/intrinsics.yml"
ALL_FILES = [ROS_YAML, USB_CAM, INI5, INI8, OPENCV]


def test_ros_yaml_values(real_data: Path) -> None:
    f = load_calibration(real_data / ROS_YAML)
    cam = f.camera
    assert (f.format, f.camera_name, cam.size, cam.distortion_model) == (
        "ros_yaml",
        "08144361026320a0",
        (640, 480),
        "plumb_bob",
    )
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (1168.68, 1169.01, 295.015, 252.247)
    assert cam.D.tolist() == [-1.04482, 1.59252, -0.0196308, 0.0287906, 0.0]
    assert np.array_equal(cam.R, np.eye(3))
    assert cam.P is None  # the file's P is [K | 0]


def test_usb_cam_stereo_left_keeps_r_and_p(real_data: Path) -> None:
    cam = load_camera(real_data / USB_CAM)
    assert cam.R[0, 1] == 0.002789 and cam.R[2, 0] == 0.006034
    assert cam.P is not None
    assert not np.allclose(cam.R, np.eye(3))
    assert cam.P[0, 0] == 393.6538 and cam.fx == 438.783367  # P != K: rectified focal length
    rect = cam.rectified()
    assert rect.fx == 393.6538 and rect.cx == 322.797939


@pytest.mark.parametrize(
    ("path", "model", "n"), [(INI5, "plumb_bob", 5), (INI8, "rational_polynomial", 8)]
)
def test_ini_files(real_data: Path, path: str, model: str, n: int) -> None:
    f = load_calibration(real_data / path)
    cam = f.camera
    assert (f.format, f.camera_name, cam.size) == ("ini", "mono_left", (640, 480))
    assert (cam.distortion_model, cam.D.size) == (model, n)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (369.344588, 367.15433, 320.739078, 203.59245)
    assert cam.P[0, 0] == 262.927429 and cam.P[1, 2] == 188.592437
    if n == 8:
        assert cam.D[5] == 0.543582


def test_opencv_yaml(real_data: Path) -> None:
    f = load_calibration(real_data / OPENCV)
    cam = f.camera
    assert f.format == "opencv" and cam.size == (640, 480) and cam.P is None
    assert cam.fx == pytest.approx(535.915733961632) and cam.cy == pytest.approx(235.57082909788173)
    assert cam.D[4] == pytest.approx(0.23839153080878486)


def test_opencv_stereo_file_needs_index_and_size(real_data: Path) -> None:
    cam = load_camera(real_data / STEREO, index=2, image_size=(640, 480))
    assert cam.cx == pytest.approx(334.55744527912015)
    with pytest.raises(CalibrationError, match=r"intrinsics\.yml: missing field 'image_width'"):
        load_camera(real_data / STEREO, index=1)
    with pytest.raises(CalibrationError, match=r"intrinsics\.yml: missing field 'camera_matrix'"):
        load_camera(real_data / STEREO, image_size=(640, 480))


@pytest.mark.parametrize("path", ALL_FILES)
def test_yaml_roundtrip_is_exact(real_data: Path, path: str, tmp_path: Path) -> None:
    """file -> model -> YAML -> model: bit-identical; YAML -> model -> YAML: identical text."""
    f = load_calibration(real_data / path)
    out = save_ros_yaml(tmp_path / "cam.yaml", f.camera, f.camera_name)
    g = load_calibration(out)
    assert g.camera_name == f.camera_name
    for attr in ("K", "D", "R"):
        assert np.array_equal(getattr(g.camera, attr), getattr(f.camera, attr))
    assert np.array_equal(g.camera.projection, f.camera.projection)
    assert (g.camera.size, g.camera.distortion_model) == (f.camera.size, f.camera.distortion_model)
    assert ros_yaml_text(g.camera, g.camera_name) == out.read_text()


@pytest.mark.parametrize("path", [ROS_YAML, USB_CAM])
def test_ros_yaml_layout_matches_camera_calibration(real_data: Path, path: str) -> None:
    source = (real_data / path).read_text()
    f = load_calibration(real_data / path)
    keys = [line.split(":")[0] for line in ros_yaml_text(f.camera, f.camera_name).splitlines()]
    assert keys == [line.split(":")[0] for line in source.splitlines()]
    if path == ROS_YAML:  # written by camera_calibration_parsers (yaml-cpp): same text
        assert ros_yaml_text(f.camera, f.camera_name).rstrip("\n") == source.rstrip("\n")


def test_tiny_and_huge_numbers_roundtrip() -> None:
    cam = CameraModel(
        64,
        48,
        [[1e-3 + 500, 0, 31.5], [0, 500.0, 23.5], [0, 0, 1]],
        [1e-20, -3.5e-7, 0, 0, 1.0 / 3.0],
    )
    assert parse_ros_yaml(ros_yaml_text(cam)).camera.D.tolist() == cam.D.tolist()


def _good_yaml(real_data: Path) -> str:
    return (real_data / ROS_YAML).read_text()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda t: t.replace("image_height: 480\n", ""),
            r"bad\.yaml: missing field 'image_height'",
        ),
        (
            lambda t: t.replace(
                "  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]", "  data: [1, 0, 0, 0, 1, 0, 0, 0]"
            ),
            r"bad\.yaml: field 'rectification_matrix\.data': expected 9 numbers",
        ),
        (
            lambda t: t.replace("rows: 3\n  cols: 4", "rows: 4\n  cols: 4"),
            r"bad\.yaml: field 'projection_matrix': expected a 3x4 matrix",
        ),
        (
            lambda t: t.replace("1168.68, 0, 295.015", "1168.68, zero, 295.015", 1),
            r"bad\.yaml: field 'camera_matrix\.data\[1\]': expected a number, got 'zero'",
        ),
        (
            lambda t: t.replace("image_width: 640", "image_width: wide"),
            r"bad\.yaml: field 'image_width'",
        ),
        (
            lambda t: t.replace("distortion_model: plumb_bob", "distortion_model: polka_dot"),
            r"bad\.yaml: field 'distortion_model': unknown distortion model 'polka_dot'",
        ),
        (
            lambda t: t.replace(
                "data: [1168.68, 0, 295.015, 0, 1169.01", "data: [0, 0, 295.015, 0, 0"
            ),
            r"bad\.yaml: field 'camera_matrix'.*not calibrated",
        ),
        (
            lambda t: t.replace("camera_matrix:\n  rows", "camera_matrix: 3\nx:\n  rows"),
            r"bad\.yaml: field 'camera_matrix': expected a mapping",
        ),
    ],
    ids=["missing", "short", "size", "non-numeric", "width", "model", "zero-K", "not-a-mapping"],
)
def test_malformed_ros_yaml_names_file_and_field(
    real_data: Path, tmp_path: Path, edit, match: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(edit(_good_yaml(real_data)))
    with pytest.raises(CalibrationError, match=match):
        load_camera(bad)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda t: t.replace("distortion\n", "distorsion\n"),
            r"bad\.ini: missing field 'mono_left\.distortion'",
        ),
        (
            lambda t: t.replace(
                "0.000000 0.000000 1.000000 0.000000", "0.000000 0.000000 1.000000"
            ),
            r"bad\.ini: field 'mono_left\.projection': expected 3x4",
        ),
        (
            lambda t: t.replace("369.344588", "3x9.344588"),
            r"bad\.ini: field 'mono_left\.camera matrix\[0\]\[0\]'",
        ),
        (
            lambda t: t.replace("height\n480", "height\n"),
            r"bad\.ini: (missing )?field 'image\.height'",
        ),
    ],
    ids=["missing", "size", "non-numeric", "height"],
)
def test_malformed_ini_names_file_and_field(
    real_data: Path, tmp_path: Path, edit, match: str
) -> None:
    bad = tmp_path / "bad.ini"
    bad.write_text(edit((real_data / INI5).read_text()))
    with pytest.raises(CalibrationError, match=match):
        load_camera(bad)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda t: t.replace("distortion_coefficients:", "distortion_coeffs:"),
            r"bad\.yml: missing field 'distortion_coefficients'",
        ),
        (
            lambda t: t.replace("rows: 5\n   cols: 1", "rows: 6\n   cols: 1"),
            r"bad\.yml: field 'distortion_coefficients\.data': expected 6 numbers",
        ),
        (
            lambda t: t.replace("5.3591573396163199e+02, 0.,", "5.3591573396163199e+02, x.,", 1),
            r"bad\.yml: field 'camera_matrix\.data\[1\]'",
        ),
    ],
    ids=["missing", "size", "non-numeric"],
)
def test_malformed_opencv_yaml_names_file_and_field(
    real_data: Path, tmp_path: Path, edit, match: str
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(edit((real_data / OPENCV).read_text()))
    with pytest.raises(CalibrationError, match=match):
        load_camera(bad)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"nope\.yaml: cannot read"):
        load_camera(tmp_path / "nope.yaml")


FIELD_NAMES = {
    "header",
    "height",
    "width",
    "distortion_model",
    "d",
    "k",
    "r",
    "p",
    "binning_x",
    "binning_y",
    "roi",
}


def test_camera_info_fields_roundtrip(real_data: Path) -> None:
    cam = load_camera(real_data / USB_CAM)
    fields = camera_info_to_fields(cam, frame_id="front_camera_optical", stamp_ns=1_500_000_000)
    assert set(fields) == FIELD_NAMES
    assert fields["header"] == {
        "stamp": {"sec": 1, "nanosec": 500_000_000},
        "frame_id": "front_camera_optical",
    }
    assert len(fields["k"]) == 9 and len(fields["p"]) == 12 and fields["d"] == cam.D.tolist()
    assert camera_info_from_msg(fields) == cam
    # Attribute access (what rclpy / rosbags objects offer), numpy arrays for the matrices.
    msg = SimpleNamespace(
        **{**fields, "k": np.array(fields["k"]), "roi": SimpleNamespace(**fields["roi"])}
    )
    assert camera_info_from_msg(msg) == cam


def test_camera_info_from_rosbags_message(real_data: Path) -> None:
    from rosbags.typesys import Stores, get_typestore

    types = get_typestore(Stores.ROS2_HUMBLE).types
    cam = load_camera(real_data / ROS_YAML)
    f = camera_info_to_fields(cam)
    msg = types["sensor_msgs/msg/CameraInfo"](
        header=types["std_msgs/msg/Header"](
            stamp=types["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id="cam"
        ),
        height=f["height"],
        width=f["width"],
        distortion_model=f["distortion_model"],
        d=np.array(f["d"]),
        k=np.array(f["k"]),
        r=np.array(f["r"]),
        p=np.array(f["p"]),
        binning_x=0,
        binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](**f["roi"]),
    )
    assert camera_info_from_msg(msg) == cam


@pytest.mark.ros
def test_camera_info_from_rclpy_message(real_data: Path) -> None:
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    cam = load_camera(real_data / INI8)
    f = camera_info_to_fields(cam)
    msg = sensor_msgs.CameraInfo(
        height=f["height"],
        width=f["width"],
        distortion_model=f["distortion_model"],
        d=f["d"],
        k=f["k"],
        r=f["r"],
        p=f["p"],
    )
    assert camera_info_from_msg(msg) == cam


def test_camera_info_roi_and_binning() -> None:
    full = CameraModel.pinhole(1280, 960, 1000.0, 1000.0, 639.5, 479.5)
    f = camera_info_to_fields(full)
    cropped = camera_info_from_msg(
        {
            **f,
            "roi": {
                "x_offset": 100,
                "y_offset": 50,
                "width": 640,
                "height": 480,
                "do_rectify": False,
            },
        }
    )
    assert cropped == full.cropped(100, 50, 640, 480)
    # width/height stay the full resolution; binning shrinks the published image.
    binned = camera_info_from_msg({**f, "binning_x": 2, "binning_y": 2})
    assert binned == full.resized(640, 480)
    assert (
        camera_info_from_msg({**f, "binning_x": 2, "binning_y": 2}, apply_roi_binning=False) == full
    )
    assert camera_info_from_msg(f) == full  # P = [K | 0] is the canonical P = None


def test_camera_info_errors() -> None:
    f = camera_info_to_fields(CameraModel.pinhole(64, 48, 50, 50, 31.5, 23.5))
    with pytest.raises(CalibrationError, match=r"missing field 'k'"):
        camera_info_from_msg({key: v for key, v in f.items() if key != "k"})
    with pytest.raises(CalibrationError, match=r"field 'k': all zeros"):
        camera_info_from_msg({**f, "k": [0.0] * 9})
    with pytest.raises(CalibrationError, match=r"field 'p': expected 12 numbers"):
        camera_info_from_msg({**f, "p": [1.0] * 9})


def test_mounting_yaml(tmp_path: Path) -> None:
    path = tmp_path / "mount.yaml"
    path.write_text(
        "mounting:\n  x_m: 1.6\n  y_m: -0.1\n  z_m: 1.35\n  pitch_deg: 2.5\n  yaw_rad: 0.01\n"
    )
    m = load_mounting(path)
    assert m == Mounting(1.6, -0.1, 1.35, 0.0, math.radians(2.5), 0.01)
    assert load_mounting(save_mounting(tmp_path / "again.yaml", m)) == m
    path.write_text("x_m: 1.6\ny_m: 0\nz_m: 1.3\npitch_deg: 2\npitch_rad: 0.03\n")
    with pytest.raises(CalibrationError, match=r"mount\.yaml: field 'pitch' given twice"):
        load_mounting(path)
    path.write_text("x_m: 1.6\ny_m: 0\npitch_deg: 2\n")
    with pytest.raises(CalibrationError, match=r"mount\.yaml: missing field 'z_m'"):
        load_mounting(path)
    path.write_text("x_m: 1.6\ny_m: 0\nz_m: high\n")
    with pytest.raises(CalibrationError, match=r"mount\.yaml: field 'z_m': expected a number"):
        load_mounting(path)
    path.write_text("x_m: 1.6\ny_m: 0\nz_m: 1\ntilt_deg: 3\n")
    with pytest.raises(CalibrationError, match=r"unknown fields \['tilt_deg'\]"):
        load_mounting(path)


@pytest.mark.parametrize("suffix", [".xml", ".yml"])
def test_opencv_filestorage_written_by_cv2(tmp_path: Path, suffix: str) -> None:
    """Files written by this cv2 (XML, and YAML with OpenCV 5's '%YAML 1.2' header) load."""
    import cv2

    path = tmp_path / f"calib{suffix}"
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    fs.write("image_width", 640)
    fs.write("image_height", 480)
    fs.write("camera_matrix", np.array([[500.0, 0, 320.0], [0, 501.0, 240.0], [0, 0, 1]]))
    fs.write("distortion_coefficients", np.array([[0.1, -0.2, 0.001, 0.002, 0.05, 0.01, 0.0, 0.0]]))
    fs.release()
    f = load_calibration(path)
    assert f.format == "opencv" and f.camera.fy == 501.0 and f.camera.size == (640, 480)
    assert f.camera.distortion_model == "rational_polynomial" and f.camera.D[5] == 0.01
