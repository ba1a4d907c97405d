"""Chessboard camera calibration (OpenCV): detection, sub-pixel refinement, calibration, errors.

The board is given as ``(cols, rows)`` *inner* corners (OpenCV's ``patternSize``; the OpenCV
sample images ``left*.jpg`` show a 9x6 board) and the square side in metres. Reprojection errors
follow ``cv2.calibrateCamera``: the RMS is ``sqrt(mean(|observed - projected|^2))`` over all
corners, and each image's error is the same RMS over its own corners.

Example:
    >>> images = {p.name: cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths}
    >>> result = calibrate_chessboard(images, board=(9, 6), square_m=0.025)
    >>> result.camera.K, result.rms_px, result.rejected
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from calibration.camera import CameraModel
from perception.errors import CalibrationError, InputError

__all__ = [
    "ChessboardCalibration",
    "parse_board",
    "board_points",
    "find_chessboard",
    "calibrate_chessboard",
]

_SUBPIX_MAX_WIN = 11  # half-size used by OpenCV's calibration sample
_MIN_VIEWS = 3


@dataclass(frozen=True)
class ChessboardCalibration:
    """Result of :func:`calibrate_chessboard`.

    ``per_image_rms_px`` and ``used`` keep the input order; ``rejected`` maps each image that
    was not used to the reason (board not found, wrong size, unreadable).
    """

    camera: CameraModel
    rms_px: float
    per_image_rms_px: dict[str, float]
    rejected: dict[str, str]
    board: tuple[int, int]
    square_m: float

    @property
    def used(self) -> tuple[str, ...]:
        return tuple(self.per_image_rms_px)


def parse_board(text: str) -> tuple[int, int]:
    """``"9x6"`` -> ``(9, 6)`` inner corners (columns x rows).

    Raises:
        CalibrationError: not ``COLSxROWS`` with both at least 2.
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 2:
        raise CalibrationError(f"board {text!r}: expected COLSxROWS inner corners, e.g. '9x6'")
    return int(match[1]), int(match[2])


def board_points(board: tuple[int, int], square_m: float) -> np.ndarray:
    """[cols * rows, 3] float32 corner positions on the board plane (z = 0), metres, row-major
    in OpenCV's detection order."""
    if not square_m > 0:
        raise CalibrationError(f"square size must be > 0 metres, got {square_m!r}")
    cols, rows = board
    grid = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2)  # [N, 2] (col, row), row-major
    pts = np.zeros((cols * rows, 3), np.float32)
    pts[:, :2] = grid * square_m
    return pts


def _to_gray(image: np.ndarray) -> np.ndarray:
    import cv2

    if image.ndim == 2:
        gray = image
    elif image.ndim == 3 and image.shape[2] == 3:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 3 and image.shape[2] == 1:
        gray = image[:, :, 0]
    else:
        raise InputError(f"chessboard: expected a grey or BGR image, got shape {image.shape}")
    if gray.dtype != np.uint8:
        gray = cv2.normalize(gray, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return gray


def find_chessboard(image: np.ndarray, board: tuple[int, int]) -> np.ndarray | None:
    """Detect the inner corners with sub-pixel accuracy.

    Uses ``cv2.findChessboardCorners`` + ``cv2.cornerSubPix`` (window half-size: 11 px, or half
    the smallest corner spacing on small boards, as ROS camera_calibration does), and falls back
    to the sector-based ``cv2.findChessboardCornersSB`` when the classic detector fails.

    Returns:
        [cols * rows, 2] float32 pixel corners in OpenCV order, or None if the board is not found.
    """
    import cv2

    gray = _to_gray(image)
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    found, corners = cv2.findChessboardCorners(gray, board, flags=flags)
    if found:
        pts = corners.reshape(-1, 2)
        cols, rows = board
        grid = pts.reshape(rows, cols, 2)
        spacing = min(
            np.linalg.norm(np.diff(grid, axis=1), axis=2).min() if cols > 1 else np.inf,
            np.linalg.norm(np.diff(grid, axis=0), axis=2).min() if rows > 1 else np.inf,
        )
        win = int(max(2, min(_SUBPIX_MAX_WIN, np.ceil(spacing * 0.5))))
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-4)
        corners = cv2.cornerSubPix(gray, corners, (win, win), (-1, -1), criteria)
        return corners.reshape(-1, 2).astype(np.float32)
    found, corners = cv2.findChessboardCornersSB(gray, board, flags=cv2.CALIB_CB_NORMALIZE_IMAGE)
    if found:
        return corners.reshape(-1, 2).astype(np.float32)
    return None


def _fisheye_flag(name: str) -> int:
    """OpenCV 4 keeps fisheye flags in ``cv2.fisheye``; OpenCV 5 moved them to ``cv2``."""
    import cv2

    return int(getattr(cv2.fisheye, name, None) or getattr(cv2, name))


def _view_rms(
    camera: CameraModel, obj: np.ndarray, img: np.ndarray, rvec: np.ndarray, tvec: np.ndarray
) -> float:
    import cv2

    R, _ = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64).reshape(3))
    pts_cam = obj.astype(np.float64) @ R.T + np.asarray(tvec, dtype=np.float64).reshape(3)
    diff = camera.project(pts_cam) - img.astype(np.float64)
    return float(np.sqrt(np.mean(np.sum(diff * diff, axis=1))))


def calibrate_chessboard(
    images: Mapping[str, np.ndarray | None] | Iterable[tuple[str, np.ndarray | None]],
    board: tuple[int, int],
    square_m: float,
    *,
    fisheye: bool = False,
    distortion_model: str = "plumb_bob",
    fix_aspect_ratio: bool = False,
    min_views: int = _MIN_VIEWS,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> ChessboardCalibration:
    """Calibrate one camera from chessboard images.

    Args:
        images: ``name -> image`` (grey or BGR; ``None`` = unreadable), in the order to report.
        board: inner corners ``(cols, rows)``.
        square_m: side of one square in metres (sets the scale of the extrinsics only).
        fisheye: fit the ``equidistant`` (cv2.fisheye) model instead of ``distortion_model``.
        distortion_model: ``plumb_bob`` (5 coefficients) or ``rational_polynomial`` (8).
        fix_aspect_ratio: force ``fx == fy`` (OpenCV's ``CALIB_FIX_ASPECT_RATIO``).
        min_views: fewest usable images to attempt a calibration.
        progress: optional wrapper for the detection loop (e.g. ``tqdm``).

    Raises:
        CalibrationError: fewer than ``min_views`` images with a detected board, images of
            different sizes, or OpenCV failing to converge.
    """
    import cv2

    items = list(images.items() if isinstance(images, Mapping) else images)
    if not items:
        raise CalibrationError("calibrate: no images given")
    if fisheye:
        distortion_model = "equidistant"
    elif distortion_model not in ("plumb_bob", "rational_polynomial"):
        raise CalibrationError(
            f"calibrate: distortion_model {distortion_model!r} is not supported; "
            "valid: plumb_bob, rational_polynomial (or fisheye=True for equidistant)"
        )
    obj = board_points(board, square_m)
    size: tuple[int, int] | None = None
    found: dict[str, np.ndarray] = {}
    rejected: dict[str, str] = {}
    for name, image in progress(items) if progress else items:
        if image is None:
            rejected[name] = "unreadable image"
            continue
        image_size = (int(image.shape[1]), int(image.shape[0]))
        if size is None:
            size = image_size
        elif image_size != size:
            rejected[name] = (
                f"size {image_size[0]}x{image_size[1]} differs from {size[0]}x{size[1]}"
            )
            continue
        corners = find_chessboard(image, board)
        if corners is None:
            rejected[name] = f"{board[0]}x{board[1]} board not found"
        else:
            found[name] = corners
    if len(found) < min_views:
        listing = "; ".join(f"{n}: {why}" for n, why in rejected.items()) or "none"
        raise CalibrationError(
            f"calibrate: the {board[0]}x{board[1]} board was found in {len(found)} of {len(items)} "
            f"images, need at least {min_views}. Check --board (inner corners, COLSxROWS). "
            f"Rejected: {listing}"
        )
    assert size is not None
    names = list(found)
    obj_list = [obj] * len(names)
    img_list = [found[n] for n in names]
    try:
        if fisheye:
            flags = _fisheye_flag("CALIB_RECOMPUTE_EXTRINSIC") | _fisheye_flag("CALIB_FIX_SKEW")
            criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-9)
            rms, K, D, rvecs, tvecs = cv2.fisheye.calibrate(
                # cv2.fisheye wants [1, N, 3] / [1, N, 2] per view (not [N, 1, 3]).
                [o.reshape(1, -1, 3).astype(np.float64) for o in obj_list],
                [i.reshape(1, -1, 2).astype(np.float64) for i in img_list],
                size,
                None,
                None,
                flags=flags,
                criteria=criteria,
            )
        else:
            flags = cv2.CALIB_RATIONAL_MODEL if distortion_model == "rational_polynomial" else 0
            K0 = np.eye(3)
            if fix_aspect_ratio:
                flags |= cv2.CALIB_FIX_ASPECT_RATIO  # keeps fx/fy of K0, i.e. 1
            rms, K, D, rvecs, tvecs = cv2.calibrateCamera(
                obj_list, img_list, size, K0, None, flags=flags
            )
    except cv2.error as err:
        raise CalibrationError(
            f"calibrate: OpenCV calibration failed on {len(names)} images: {err}"
        ) from err
    n_coeffs = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}[distortion_model]
    D = np.asarray(D, dtype=np.float64).reshape(-1)[:n_coeffs]
    camera = CameraModel(size[0], size[1], K, D, distortion_model)
    per_image = {
        n: _view_rms(camera, obj, found[n], r, t)
        for n, r, t in zip(names, rvecs, tvecs, strict=True)
    }
    return ChessboardCalibration(camera, float(rms), per_image, rejected, board, float(square_m))
