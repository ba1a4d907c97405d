"""``tadp calibrate``: chessboard calibration of one camera -> ROS camera_info YAML.

Example::

    tadp calibrate --images 'calib/left*.jpg' --board 9x6 --square 0.025 --out camera.yaml

``--board`` counts *inner* corners (columns x rows). Images where the board is not found are
listed and skipped. The YAML is the ROS ``camera_calibration`` layout (see docs/calibration.md).
"""

from __future__ import annotations

import argparse
import glob
import re
import sys
from pathlib import Path

from perception.errors import CalibrationError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="calibrate a camera from chessboard images (writes ROS camera_info YAML)",
        description=(
            "Detect a chessboard in every image (sub-pixel corners), calibrate with OpenCV, report "
            "the RMS and per-image reprojection errors, and write ROS camera_info YAML."
        ),
    )
    parser.add_argument(
        "--images",
        required=True,
        nargs="+",
        metavar="GLOB",
        help="image files or glob patterns (quote them, e.g. 'calib/*.png')",
    )
    parser.add_argument(
        "--board", required=True, metavar="COLSxROWS", help="inner corners, e.g. 9x6"
    )
    parser.add_argument(
        "--square", required=True, type=float, metavar="METRES", help="square side in metres"
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="YAML", help="output camera_info YAML"
    )
    parser.add_argument(
        "--fisheye", action="store_true", help="fit the equidistant (fisheye) model"
    )
    parser.add_argument(
        "--rational", action="store_true", help="fit the 8-coefficient rational_polynomial model"
    )
    parser.add_argument("--fix-aspect-ratio", action="store_true", help="force fx == fy")
    parser.add_argument("--camera-name", default="camera", help="camera_name written to the YAML")
    parser.add_argument(
        "--min-images", type=int, default=3, help="fewest usable images (default 3)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _natural_key(path: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def _expand(patterns: list[str]) -> list[str]:
    paths: list[str] = []
    for pattern in patterns:
        matches = glob.glob(pattern, recursive=True) if glob.has_magic(pattern) else [pattern]
        paths.extend(sorted(matches, key=_natural_key))
    unique = list(dict.fromkeys(paths))
    if not unique:
        raise CalibrationError(f"--images {' '.join(patterns)!r}: no file matches")
    if missing := [p for p in unique if not Path(p).is_file()]:
        raise CalibrationError(f"--images: not a file: {', '.join(missing)}")
    return unique


def run(args: argparse.Namespace) -> int:
    import cv2

    from calibration.chessboard import calibrate_chessboard, parse_board
    from calibration.io import save_ros_yaml

    if args.fisheye and args.rational:
        raise CalibrationError("--fisheye and --rational exclude each other; pick one model")
    board = parse_board(args.board)
    paths = _expand(args.images)

    def images():
        for path in paths:
            yield path, cv2.imread(path, cv2.IMREAD_GRAYSCALE)

    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        def progress(items):
            return tqdm(
                items, total=len(paths), desc="detecting board", unit="img", file=sys.stderr
            )

    result = calibrate_chessboard(
        images(),
        board,
        args.square,
        fisheye=args.fisheye,
        distortion_model="rational_polynomial" if args.rational else "plumb_bob",
        fix_aspect_ratio=args.fix_aspect_ratio,
        min_views=args.min_images,
        progress=progress,
    )
    cam = result.camera
    width = max(len(Path(p).name) for p in paths)
    print(
        f"board {board[0]}x{board[1]}, square {args.square} m: used {len(result.used)} of {len(paths)} images"
    )
    for path, err in result.per_image_rms_px.items():
        flag = "  <- high, consider removing" if err > 2.5 * result.rms_px else ""
        print(f"  {Path(path).name:<{width}}  {err:7.3f} px{flag}")
    if result.rejected:
        print(f"rejected {len(result.rejected)} image(s):")
        for path, why in result.rejected.items():
            print(f"  {path}: {why}")
    print(f"model {cam.distortion_model}, image {cam.width}x{cam.height}")
    print(f"fx {cam.fx:.3f}  fy {cam.fy:.3f}  cx {cam.cx:.3f}  cy {cam.cy:.3f}")
    print("D " + " ".join(f"{v:.6g}" for v in cam.D))
    print(f"RMS reprojection error {result.rms_px:.4f} px")
    out = save_ros_yaml(args.out, cam, args.camera_name)
    print(f"wrote {out}")
    return 0
