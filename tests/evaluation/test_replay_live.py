"""``tadp replay --realtime`` (issue 8, item 4): the bag is played into a running perception node
at the recorded rate, the node's outputs are recorded with the input stamps, and they equal the
offline replay's outputs for the same frames (same model and backend: torch, one thread).

The node runs in this process (its own rclpy context on a random ROS domain), as
``tests/ros2_nodes`` run it; the player is the CLI, exactly as a user runs it.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_replay_world as world
from test_replay_world import FRAMES, ReplayWorld

pytest.importorskip("rclpy")

pytestmark = pytest.mark.ros

import node_bench as bench  # noqa: E402 - benchmarks/ is on sys.path (tests/conftest.py)

from perception.cli import main as tadp  # noqa: E402

# The shared session fixtures (test_replay_world.py), found by pytest as module attributes.
replay_world, one_thread = world.replay_world, world.one_thread
REPO = Path(__file__).resolve().parents[2]




@pytest.fixture
def running_node(replay_world: ReplayWorld, tmp_path: Path, monkeypatch):
    import rclpy

    domain = bench.pick_domain()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    ctx = bench.open_context(domain)
    params = bench.base_params(replay_world.model, tmp_path / "cache",
                               **{"input.topic": "/camera/image_raw",
                                  "input.camera_info_topic": "/camera/camera_info"})
    node = bench.in_process_node(ctx, params)
    executor, thread = bench.spin_in_thread(ctx, node)
    try:
        bench.wait_ready(node, timeout_s=120.0)
        yield node
    finally:
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        thread.join(timeout=5.0)


def test_live_outputs_equal_offline(replay_world: ReplayWorld, running_node, tmp_path: Path,
                                    capsys, one_thread) -> None:
    out = tmp_path / "live.mcap"
    code = tadp(["replay", str(replay_world.bags["mcap"]), "--realtime", "--out", str(out),
                 "--report", str(tmp_path / "report"), "--model", str(replay_world.model),
                 "--backend", "torch", "--threads", "1", "--no-progress", "--wait-node", "60",
                 "--zstd", "--rate", "0.25"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stdout + stderr
    assert f"live: sent {FRAMES} frames to /camera/image_raw" in stdout
    data = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert data["mode"] == "realtime" and data["sent"] == FRAMES and data["rate"] == 0.25
    # At 2.5 Hz (--rate 0.25 of the bag's 10 Hz) the tiny model keeps up even on a loaded
    # machine: every frame answered on every topic, none dropped.
    assert data["answered"] == FRAMES and data["dropped"] == [] and data["incomplete"] == []
    assert data["latency"]["p50_ms"] > 0
    parity = data["parity"]
    assert set(parity) == {"/perception/segmentation", "/perception/depth",
                           "/perception/drivable", "/perception/lanes"}
    assert all(row["ok"] and row["frames"] == FRAMES for row in parity.values()), parity
    # Recorded with the input stamps, as the node published them.
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    from perception.evaluation.bag_io import open_camera_bag, stamp_to_ns

    with open_camera_bag(replay_world.bags["mcap"]) as cam:
        stamps = [f.stamp_ns for f in cam]
    with AnyReader([out], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        by_topic: dict[str, list[int]] = {}
        for conn, t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            assert stamp_to_ns(msg.header.stamp) == t
            by_topic.setdefault(conn.topic, []).append(t)
    assert "/perception/segmentation/color" in by_topic
    assert all(sorted(v) == stamps for v in by_topic.values()), by_topic


def test_no_node_fails_cleanly(replay_world: ReplayWorld, tmp_path: Path, capsys,
                               monkeypatch) -> None:
    monkeypatch.setenv("ROS_DOMAIN_ID", str(bench.pick_domain()))
    code = tadp(["replay", str(replay_world.bags["mcap"]), "--realtime", "--out",
                 str(tmp_path / "live.mcap"), "--model", str(replay_world.model), "--no-progress",
                 "--wait-node", "2", "--node-ns", "/nobody"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("tadp replay: error: no perception node answered within 2 s: nobody "
                          "subscribes to '/camera/image_raw'")
    assert list(tmp_path.iterdir()) == []
    # Options of the offline outputs are the node's business in a live replay.
    code = tadp(["replay", str(replay_world.bags["mcap"]), "--realtime", "--out",
                 str(tmp_path / "live.mcap"), "--mounting", "m.yaml", "--output-ns", "/x"])
    assert code == 2 and ("--mounting, --output-ns have no effect with --realtime"
                          in capsys.readouterr().err)
