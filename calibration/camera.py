"""Camera model (intrinsics, distortion, rectification) and camera mounting on the vehicle.

Conventions (the same as ROS ``sensor_msgs/CameraInfo`` and OpenCV):

* **Optical frame**: x right, y down, z forward (REP-103 ``*_optical_frame``). ``K`` maps
  normalized optical coordinates ``(x/z, y/z, 1)`` to pixels after distortion.
* **Pixel coordinates**: ``(u, v)`` = (column, row); the *centre* of the top-left pixel is
  ``(0, 0)``, as in OpenCV and ROS.
* **Distortion models** (``D`` is in the OpenCV order):
  ``plumb_bob`` = (k1, k2, p1, p2[, k3]), ``rational_polynomial`` = (k1, k2, p1, p2, k3, k4, k5,
  k6), ``equidistant`` = fisheye (k1, k2, k3, k4) of ``cv2.fisheye``. An empty ``D`` means no
  distortion.
* ``R`` rotates the camera optical frame into the *rectified* frame and ``P`` ([3, 4]) projects
  rectified-frame points to pixels of the rectified image (both as in CameraInfo; ``P = None``
  means ``[K | 0]``). For a monocular camera ``R`` is the identity.
* **Vehicle frame** (REP-103 body): x forward, y left, z up, metres. The ground is the plane
  ``z = 0`` of the vehicle frame (``base_footprint`` convention).
* :class:`Mounting` gives the camera body pose in the vehicle frame as a translation and
  intrinsic roll/pitch/yaw (``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``, the ROS ``tf`` order).
  With right-handed rotations about y-left, **positive pitch tilts the camera down**, positive
  yaw turns it left, positive roll turns it clockwise as seen from behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perception.errors import CalibrationError

__all__ = ["DISTORTION_MODELS", "CameraModel", "Mounting", "OPTICAL_TO_BODY"]

# Allowed distortion-coefficient counts per model; 0 (empty) always means "no distortion".
DISTORTION_MODELS: dict[str, tuple[int, ...]] = {
    "plumb_bob": (0, 4, 5),
    "rational_polynomial": (0, 4, 5, 8),
    "equidistant": (0, 4),
}

# Columns are the optical axes expressed in the camera body frame (x forward, y left, z up):
# optical x (right) = -y, optical y (down) = -z, optical z (forward) = +x.
OPTICAL_TO_BODY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
OPTICAL_TO_BODY.setflags(write=False)

_NEWTON_STEPS = 4


def _frozen_array(value: Any, shape: tuple[int, ...] | None, name: str) -> np.ndarray:
    """float64, C-contiguous, read-only copy of ``value``; checks the shape."""
    try:
        arr = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as err:
        raise CalibrationError(f"CameraModel.{name}: not a numeric array: {value!r}") from err
    if shape is not None and arr.shape != shape:
        raise CalibrationError(f"CameraModel.{name}: expected shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise CalibrationError(f"CameraModel.{name}: contains NaN or infinity: {arr.tolist()}")
    arr.setflags(write=False)
    return arr


def _as_points(points: np.ndarray, dim: int, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == dim:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise CalibrationError(f"{name}: expected an [N, {dim}] array, got shape {arr.shape}")
    return arr


def _distort_normalized(xy: np.ndarray, D: np.ndarray, model: str) -> np.ndarray:
    """Apply lens distortion to normalized coordinates [N, 2] (OpenCV formulas)."""
    if D.size == 0 or not np.any(D):
        return xy.copy()
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    if model == "equidistant":
        k1, k2, k3, k4 = D
        r = np.sqrt(r2)
        theta = np.arctan(r)
        t2 = theta * theta
        theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
        # Near the axis theta_d / r -> 1 (limit of the ratio).
        scale = np.where(r > 1e-12, theta_d / np.where(r > 1e-12, r, 1.0), 1.0)
        return xy * scale[:, None]
    k = np.zeros(8)
    k[: D.size] = D
    k1, k2, p1, p2, k3, k4, k5, k6 = k
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd, yd], axis=1)


def _undistort_normalized(xy_d: np.ndarray, D: np.ndarray, model: str) -> np.ndarray:
    """Invert :func:`_distort_normalized` ([N, 2] -> [N, 2]) by Newton's method.

    cv2.undistortPoints' fixed-point iteration stops short of 0.01 px near the image border for
    strong barrel distortion, so its result only seeds a few Newton steps here.
    """
    if D.size == 0 or not np.any(D):
        return xy_d.copy()
    xy = _initial_undistort(xy_d, D, model)
    eps = 1e-7
    det = np.ones(len(xy))
    for _ in range(_NEWTON_STEPS):
        f = _distort_normalized(xy, D, model) - xy_d
        fx = (
            _distort_normalized(xy + [eps, 0.0], D, model)
            - _distort_normalized(xy - [eps, 0.0], D, model)
        ) / (2 * eps)
        fy = (
            _distort_normalized(xy + [0.0, eps], D, model)
            - _distort_normalized(xy - [0.0, eps], D, model)
        ) / (2 * eps)
        det = fx[:, 0] * fy[:, 1] - fy[:, 0] * fx[:, 1]
        ok = np.abs(det) > 1e-12
        safe = np.where(ok, det, 1.0)
        dx = (fy[:, 1] * f[:, 0] - fy[:, 0] * f[:, 1]) / safe
        dy = (-fx[:, 1] * f[:, 0] + fx[:, 0] * f[:, 1]) / safe
        xy = xy - np.where(ok[:, None], np.stack([dx, dy], axis=1), 0.0)
    # No preimage (beyond the lens model's fold-over radius or field of view), or a root on the
    # folded branch where the mapping is not locally orientation-preserving: not a valid ray.
    residual = np.abs(_distort_normalized(xy, D, model) - xy_d).max(axis=1)
    invalid = ~np.isfinite(residual) | (residual > 1e-9) | (det <= 0)
    xy[invalid] = np.nan
    return xy


def _initial_undistort(xy_d: np.ndarray, D: np.ndarray, model: str) -> np.ndarray:
    import cv2  # local import: keeps ``import calibration.camera`` light

    src = np.ascontiguousarray(xy_d.reshape(-1, 1, 2))
    eye = np.eye(3)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-12)
    if model == "equidistant":
        out = cv2.fisheye.undistortPoints(src, eye, D.reshape(-1, 1), None, eye, eye, criteria)
    else:
        out = cv2.undistortPoints(src, eye, D.reshape(-1, 1), None, eye, eye, criteria)
    return out.reshape(-1, 2).astype(np.float64)


@dataclass(frozen=True, eq=False)
class CameraModel:
    """A calibrated camera: the raw image of size ``width x height`` and its lens model.

    Arrays are stored as read-only float64 copies. Two models compare equal when every field is
    bit-identical, and a model is hashable, so it can key caches (see ``calibration.undistort``).

    Example:
        >>> cam = CameraModel.pinhole(640, 480, fx=500.0, fy=500.0, cx=319.5, cy=239.5)
        >>> cam.resized(320, 240).K[0, 0]
        250.0
    """

    width: int
    height: int
    K: np.ndarray  # [3, 3]
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [n]
    distortion_model: str = "plumb_bob"
    R: np.ndarray = field(default_factory=lambda: np.eye(3))  # [3, 3]
    P: np.ndarray | None = None  # [3, 4]; None means [K | 0] (and [K | 0] is stored as None)

    def __post_init__(self) -> None:
        if (
            int(self.width) != self.width
            or int(self.height) != self.height
            or self.width < 1
            or self.height < 1
        ):
            raise CalibrationError(
                f"CameraModel: image size must be positive integers, got {self.width!r} x {self.height!r}"
            )
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        if self.distortion_model not in DISTORTION_MODELS:
            raise CalibrationError(
                f"CameraModel.distortion_model: unknown model {self.distortion_model!r}; "
                f"valid: {', '.join(DISTORTION_MODELS)}"
            )
        K = _frozen_array(self.K, (3, 3), "K")
        if K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] != 1.0 or K[1, 0] or K[2, 0] or K[2, 1]:
            raise CalibrationError(
                f"CameraModel.K: expected [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, "
                f"got {K.tolist()} (an all-zero K means the camera is not calibrated)"
            )
        D = _frozen_array(self.D, None, "D").reshape(-1)  # a view of a read-only array: read-only
        allowed = DISTORTION_MODELS[self.distortion_model]
        if D.size not in allowed:
            raise CalibrationError(
                f"CameraModel.D: {self.distortion_model} takes {' or '.join(map(str, allowed))} "
                f"coefficients, got {D.size}"
            )
        R = _frozen_array(self.R, (3, 3), "R")
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
            raise CalibrationError(f"CameraModel.R: not a rotation matrix: {R.tolist()}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "D", D)
        object.__setattr__(self, "R", R)
        if self.P is not None:
            P = _frozen_array(self.P, (3, 4), "P")
            # Canonical form: a P equal to [K | 0] is stored as None, so equal cameras compare equal.
            same = np.array_equal(P[:, :3], K) and not np.any(P[:, 3])
            object.__setattr__(self, "P", None if same else P)

    # ------------------------------------------------------------------ construction
    @classmethod
    def pinhole(
        cls, width: int, height: int, fx: float, fy: float, cx: float, cy: float
    ) -> CameraModel:
        """An ideal pinhole camera: no distortion, ``R = I``, ``P = [K | 0]``."""
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        return cls(width=width, height=height, K=K, D=np.zeros(0), distortion_model="plumb_bob")

    # ------------------------------------------------------------------ properties
    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels, the OpenCV ``dsize`` order."""
        return (self.width, self.height)

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def projection(self) -> np.ndarray:
        """``P`` ([3, 4]), or ``[K | 0]`` when the model has none."""
        if self.P is not None:
            return self.P
        P = np.hstack([self.K, np.zeros((3, 1))])
        P.setflags(write=False)
        return P

    @property
    def is_distorted(self) -> bool:
        return bool(np.any(self.D))

    # ------------------------------------------------------------------ equality / hashing
    def _key(self) -> tuple[Any, ...]:
        P = None if self.P is None else self.P.tobytes()
        return (
            self.width,
            self.height,
            self.K.tobytes(),
            self.D.tobytes(),
            self.distortion_model,
            self.R.tobytes(),
            P,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CameraModel):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"CameraModel({self.width}x{self.height}, fx={self.fx:.3f}, fy={self.fy:.3f}, "
            f"cx={self.cx:.3f}, cy={self.cy:.3f}, {self.distortion_model} D={self.D.tolist()}, "
            f"R={'I' if np.array_equal(self.R, np.eye(3)) else self.R.tolist()}, "
            f"P={'None' if self.P is None else self.P.tolist()})"
        )

    # ------------------------------------------------------------------ image geometry changes
    def _with_pixel_transform(self, A: np.ndarray, width: int, height: int) -> CameraModel:
        """Model of the image whose pixel ``(u, v, 1)`` is ``A @`` the old pixel."""
        P = None if self.P is None else A @ self.P
        return CameraModel(width, height, A @ self.K, self.D, self.distortion_model, self.R, P)

    def resized(self, width: int, height: int) -> CameraModel:
        """The model of this image after ``cv2.resize(image, (width, height))``.

        Pixel centres map as ``u' = (u + 0.5) * width / self.width - 0.5`` (the half-pixel rule of
        ``cv2.resize`` and ``torch.nn.functional.interpolate(align_corners=False)``), so ``fx``
        scales by the ratio and ``cx' = (cx + 0.5) * sx - 0.5``. (ROS image_proc's resize drops the
        0.5 terms, which misplaces the principal point by ``(s - 1) / 2`` px.) ``K`` and ``P``
        both change; ``D`` and ``R`` do not.
        """
        if width < 1 or height < 1:
            raise CalibrationError(f"resized: size must be positive, got {width} x {height}")
        sx, sy = width / self.width, height / self.height
        A = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
        return self._with_pixel_transform(A, width, height)

    def cropped(self, x: int, y: int, width: int, height: int) -> CameraModel:
        """The model of ``image[y:y + height, x:x + width]``: the principal point moves by -x, -y."""
        if (
            x < 0
            or y < 0
            or width < 1
            or height < 1
            or x + width > self.width
            or y + height > self.height
        ):
            raise CalibrationError(
                f"cropped: window x={x}, y={y}, {width}x{height} is not inside the "
                f"{self.width}x{self.height} image"
            )
        A = np.array([[1.0, 0.0, -x], [0.0, 1.0, -y], [0.0, 0.0, 1.0]])
        return self._with_pixel_transform(A, width, height)

    def rectified(self) -> CameraModel:
        """The ideal pinhole model of the *rectified* image (what ``Undistorter`` produces).

        Its ``K`` is ``P[:, :3]``, it has no distortion, and its optical frame is the rectified
        frame (rotated by ``R`` from this camera's); for a monocular camera (``R = I``) the two
        frames coincide, so a :class:`Mounting` applies unchanged. A stereo ``P[:, 3]`` baseline
        term is kept in ``P``.
        """
        P = self.projection
        K = P[:, :3].copy()
        K[1, 0] = K[2, 0] = K[2, 1] = 0.0
        return CameraModel(self.width, self.height, K, np.zeros(0), "plumb_bob", np.eye(3), P)

    # ------------------------------------------------------------------ projection
    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Project optical-frame points [N, 3] to raw (distorted) image pixels [N, 2].

        ``R`` and ``P`` are not involved: this is the raw image of the camera. Points with
        ``z <= 0`` (behind the camera) give NaN. Pixels may fall outside the image; like OpenCV,
        points far outside the calibrated field of view are not flagged (the polynomial folds).
        """
        pts = _as_points(points_cam, 3, "project")
        z = pts[:, 2]
        front = z > 0
        xy = pts[:, :2] / np.where(front, z, 1.0)[:, None]
        xy_d = _distort_normalized(xy, self.D, self.distortion_model)
        uv = xy_d @ self.K[:2, :2].T + self.K[:2, 2]
        uv[~front] = np.nan
        return uv

    def pixel_rays(self, pixels: np.ndarray) -> np.ndarray:
        """Undistorted viewing rays [N, 3] (``z = 1``, optical frame) of raw image pixels [N, 2].

        The exact inverse of :meth:`project` up to scale (Newton-refined to ~1e-10 px). Pixels
        with no valid preimage under the lens model (past the radius where the distortion
        polynomial folds back, or outside a fisheye model's field of view) give NaN rows.
        """
        uv = _as_points(pixels, 2, "pixel_rays")
        Kinv = np.linalg.inv(self.K)
        xy_d = uv @ Kinv[:2, :2].T + Kinv[:2, 2]
        xy = _undistort_normalized(xy_d, self.D, self.distortion_model)
        return np.hstack([xy, np.ones((xy.shape[0], 1))])


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Mounting:
    """Pose of the camera in the vehicle frame (REP-103: x forward, y left, z up; metres, rad).

    ``(x_m, y_m, z_m)`` is the optical centre; with the ground at vehicle ``z = 0``, ``z_m`` is
    the camera height above the road. Angles rotate the camera *body* frame (x along the optical
    axis, y left, z up) as ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``: all zero means looking straight
    ahead, level; **positive pitch looks down**; positive yaw looks left.

    Example:
        >>> m = Mounting(x_m=1.5, y_m=0.0, z_m=1.4, pitch_rad=0.05)
        >>> m.camera_to_vehicle()[:3, 3].tolist()
        [1.5, 0.0, 1.4]
    """

    x_m: float
    y_m: float
    z_m: float
    roll_rad: float = 0.0
    pitch_rad: float = 0.0
    yaw_rad: float = 0.0

    def __post_init__(self) -> None:
        for name in ("x_m", "y_m", "z_m", "roll_rad", "pitch_rad", "yaw_rad"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.floating, np.integer))
                or not np.isfinite(value)
            ):
                raise CalibrationError(f"Mounting.{name}: expected a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))

    @property
    def translation_m(self) -> np.ndarray:
        """[3] optical centre in the vehicle frame."""
        return np.array([self.x_m, self.y_m, self.z_m])

    def body_rotation(self) -> np.ndarray:
        """[3, 3] camera body frame (x forward, y left, z up) -> vehicle frame."""
        return _rot_z(self.yaw_rad) @ _rot_y(self.pitch_rad) @ _rot_x(self.roll_rad)

    def camera_to_vehicle(self) -> np.ndarray:
        """[4, 4] homogeneous transform of optical-frame points (x right, y down, z forward) to
        vehicle-frame points: ``p_vehicle = T @ p_optical``."""
        T = np.eye(4)
        T[:3, :3] = self.body_rotation() @ OPTICAL_TO_BODY
        T[:3, 3] = self.translation_m
        return T

    def vehicle_to_camera(self) -> np.ndarray:
        """[4, 4] inverse of :meth:`camera_to_vehicle` (vehicle frame -> optical frame)."""
        T = self.camera_to_vehicle()
        Rt = T[:3, :3].T
        out = np.eye(4)
        out[:3, :3] = Rt
        out[:3, 3] = -Rt @ T[:3, 3]
        return out
