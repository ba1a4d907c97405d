"""``tadp calibrate`` end to end on OpenCV's sample images (issue 4)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from calibration.io import load_calibration
from perception.commands import calibrate
from perception.errors import CalibrationError

SAMPLES = "opencv_samples_calib/samples/data"


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tadp")
    calibrate.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_calibrate_command(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "calib" / "camera.yaml"
    images = str(real_data / SAMPLES / "left*.jpg")
    no_board = str(real_data / "segnet_camvid/Scripts/camvid12.png")
    code = _run(
        [
            "calibrate",
            "--images",
            images,
            no_board,
            "--board",
            "9x6",
            "--square",
            "0.025",
            "--out",
            str(out),
            "--camera-name",
            "left",
            "--no-progress",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert (
        "used 13 of 14 images" in text
        and "camvid12.png" in text
        and "RMS reprojection error" in text
    )
    f = load_calibration(out)
    assert f.camera_name == "left" and f.camera.size == (640, 480)
    assert f.camera.fx == pytest.approx(535.9, rel=0.01) and abs(f.camera.cx - 342.3) < 3


def test_calibrate_command_errors(real_data: Path, tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="no file matches"):
        _run(
            [
                "calibrate",
                "--images",
                str(tmp_path / "*.png"),
                "--board",
                "9x6",
                "--square",
                "0.025",
                "--out",
                str(tmp_path / "c.yaml"),
            ]
        )
    with pytest.raises(CalibrationError, match="COLSxROWS"):
        _run(
            [
                "calibrate",
                "--images",
                str(real_data / SAMPLES / "left01.jpg"),
                "--board",
                "9by6",
                "--square",
                "0.025",
                "--out",
                str(tmp_path / "c.yaml"),
            ]
        )


@pytest.mark.skipif(
    importlib.util.find_spec("perception.commands.params") is None,
    reason="tadp's other sub-commands are not in this checkout yet",
)
def test_tadp_main_lists_calibrate(real_data: Path, tmp_path: Path) -> None:
    from perception.cli import main

    code = main(
        [
            "calibrate",
            "--images",
            str(tmp_path / "none*.jpg"),
            "--board",
            "9x6",
            "--square",
            "0.025",
            "--out",
            str(tmp_path / "c.yaml"),
        ]
    )
    assert code == 2  # our error -> one line, exit 2
