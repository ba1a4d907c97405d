"""Camera calibration for tad_perception: camera model, calibration files, chessboard calibration,
undistortion, ground-plane projection and lane polylines. numpy + OpenCV only, never ROS.

Conventions (frames, pixel centres, pitch sign) are in ``calibration.camera`` and
``docs/calibration.md``. The per-frame helper is ``calibration.undistort.undistort`` (not
re-exported here, where the name would hide the ``calibration.undistort`` module).
"""

from calibration.camera import CameraModel, Mounting
from calibration.chessboard import ChessboardCalibration, calibrate_chessboard, find_chessboard
from calibration.ground import ground_homography, ground_to_pixel, horizon_row, pixel_to_ground
from calibration.io import (
    CalibrationFile,
    camera_info_from_msg,
    camera_info_to_fields,
    load_calibration,
    load_camera,
    load_mounting,
    save_mounting,
    save_ros_yaml,
)
from calibration.lanes import LaneFitConfig, draw_lane_mask, mask_to_polylines
from calibration.undistort import Undistorter

__all__ = [
    "CalibrationFile",
    "CameraModel",
    "ChessboardCalibration",
    "LaneFitConfig",
    "Mounting",
    "Undistorter",
    "calibrate_chessboard",
    "camera_info_from_msg",
    "camera_info_to_fields",
    "draw_lane_mask",
    "find_chessboard",
    "ground_homography",
    "ground_to_pixel",
    "horizon_row",
    "load_calibration",
    "load_camera",
    "load_mounting",
    "mask_to_polylines",
    "pixel_to_ground",
    "save_mounting",
    "save_ros_yaml",
]
