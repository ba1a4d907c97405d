"""``tadp demo`` (issue 8, item 5): synthetic drive -> model -> output bag + report, offline.

The tests pass ``--model`` (a tiny random model, 64x128 input, so the demo renders 64x128 frames);
without it the shipped default model is used, and when that is missing the demo fails at once
with a message that says how to proceed. ``test_demo_default_model_fresh_process`` runs the demo
exactly as the README does when the default model is present.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import test_replay_world as world
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore
from test_replay_world import ReplayWorld

from perception.cli import main as tadp
from perception.runtime import default_model

# The shared session fixtures (test_replay_world.py), found by pytest as module attributes.
replay_world, one_thread = world.replay_world, world.one_thread
REPO = Path(__file__).resolve().parents[2]


def test_demo_with_model(replay_world: ReplayWorld, tmp_path: Path, capsys, one_thread) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--frames", "6", "--model", str(replay_world.model),
            "--threads", "1", "--no-progress"]
    assert tadp(argv) == 0
    text = capsys.readouterr().out
    for needle in (f"input bag:  {out / 'demo_input.mcap'} (6 frames 128x64 at 10 Hz, seed 7",
                   f"output bag: {out / 'demo_output.mcap'} (6 topics",
                   f"report:     {out / 'report' / 'report.md'}", "metrics: segmentation/miou",
                   "done in"):
        assert needle in text, text
    assert sorted(p.name for p in out.iterdir()) == ["demo_input.mcap", "demo_output.mcap", "report"]
    ts = get_typestore(Stores.ROS2_HUMBLE)
    with AnyReader([out / "demo_output.mcap"], default_typestore=ts) as reader:
        assert reader.message_count == 6 * 6  # lanes/path too: the drive's mounting is given
        assert reader.topics["/perception/lanes/path"].msgtype == "nav_msgs/msg/Path"
    with AnyReader([out / "demo_input.mcap"], default_typestore=ts) as reader:
        assert {"/camera/image_raw", "/camera/camera_info", "/gt/segmentation", "/gt/depth",
                "/gt/drivable", "/gt/lanes", "/gt/corridor"} == set(reader.topics)
    data = json.loads((out / "report" / "metrics.json").read_text())
    assert data["command"] == "tadp demo" and data["seed"] == 7 and len(data["frames"]) == 6
    assert data["metrics"]["segmentation/miou"] is not None
    assert {"per_class_iou.png", "depth_error.png", "latency.png", "overlays.png"} <= {
        p.name for p in (out / "report").iterdir()}
    # A second run replaces its own outputs (same seed: the same input bag).
    first = (out / "demo_input.mcap").read_bytes()
    assert tadp(argv) == 0
    capsys.readouterr()
    assert (out / "demo_input.mcap").read_bytes() == first
    assert sorted(p.name for p in out.iterdir()) == ["demo_input.mcap", "demo_output.mcap", "report"]


def test_demo_without_default_model(monkeypatch, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "assets" / "default" / "model.safetensors"
    monkeypatch.setattr(default_model, "DEFAULT_MODEL", missing)
    assert tadp(["demo", "--out", str(tmp_path / "demo"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tadp demo: error: no --model given and the shipped default model "
                          f"{missing} is missing from this checkout; pass --model MODEL")
    assert not (tmp_path / "demo").exists()  # failed before rendering anything


@pytest.mark.slow
@pytest.mark.skipif(default_model.default_model_path() is None,
                    reason="the shipped default model is not in this checkout yet")
def test_demo_default_model_fresh_process(tmp_path: Path) -> None:
    """``tadp demo`` as the README runs it: default model, default backend, 40 frames."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([sys.executable, "-m", "perception.cli", "demo", "--out",
                           str(tmp_path / "demo"), "--no-progress"], capture_output=True,
                          text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "metrics: segmentation/miou" in proc.stdout and "done in" in proc.stdout
    assert (tmp_path / "demo" / "report" / "report.md").is_file()
    # Its wall time (issue 8: < 60 s here) is a figure, not a pass/fail check: `tadp demo`
    # prints it ("done in ... s") and the closing notes record it.
