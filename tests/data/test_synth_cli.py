"""``tadp synth``: sub-commands run, and bad arguments fail clearly without leaving output."""
from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from perception.cli import main


def _run(capsys, *argv: str) -> tuple[int, str]:
    try:
        rc = main(["synth", *argv])
    except SystemExit as exc:  # argparse errors
        rc = int(exc.code)
    return rc, capsys.readouterr().err


def test_dataset_bag_and_preview(tmp_path: Path, capsys) -> None:
    rc, _ = _run(capsys, "dataset", "--out", str(tmp_path / "ds"), "--n", "2", "--size", "64x128", "--workers", "1",
                 "--no-progress")
    assert rc == 0 and len(list((tmp_path / "ds/image").iterdir())) == 2
    rc, _ = _run(capsys, "bag", "--out", str(tmp_path / "bag"), "--frames", "2", "--fps", "10", "--size", "64x128",
                 "--storage", "sqlite3", "--compressed", "--workers", "1", "--no-progress")
    assert rc == 0 and list((tmp_path / "bag").glob("bag.db3"))
    rc, _ = _run(capsys, "preview", "--out", str(tmp_path / "p.png"), "--n", "2", "--size", "64x128",
                 "--workers", "1", "--no-progress")
    assert rc == 0 and cv2.imread(str(tmp_path / "p.png")).shape == (128, 512, 3)


@pytest.mark.parametrize("args,message", [
    (["dataset", "--n", "2", "--size", "250x512"], "multiple of 32"),
    (["dataset", "--n", "2", "--size", "0x512"], "multiple of 32"),
    (["dataset", "--n", "2", "--size", "big"], "HxW"),
    (["dataset", "--n", "0"], "must be >= 1"),
    (["bag", "--frames", "2", "--fps", "0"], "fps must be > 0"),
    (["bag", "--frames", "2", "--fps", "10", "--storage", "rosbag1"], "invalid choice"),
])
def test_bad_arguments_fail_without_output(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    rc, err = _run(capsys, args[0], "--out", str(out), *args[1:], "--workers", "1", "--no-progress")
    assert rc == 2 and message in err
    assert not any(tmp_path.iterdir())


def test_unwritable_output_fails_without_output(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    rc, err = _run(capsys, "dataset", "--out", str(blocker / "ds"), "--n", "1", "--size", "64x128", "--no-progress")
    assert rc == 2 and "not a writable directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
