"""Every output topic carries the input's exact stamp and frame_id, with the right encoding and
size: the node in this process, and the node in another process (issue 7, items 2 and 5).

Real BDD100K frames (1280x720) are sent as raw bgr8 and as JPEG CompressedImage; a CameraInfo and
a mounting make ``~/lanes/path`` appear too. Frames are sent in lock-step (the next one after the
previous one's segmentation arrived), so every frame must produce every output whatever the
machine's speed. The small random model (128x256) runs on the torch backend, one thread.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

pytestmark = pytest.mark.ros

import node_bench as bench  # noqa: E402 - benchmarks/ is on sys.path (tests/conftest.py)

REPO = Path(__file__).resolve().parents[2]
FRAMES = 4
OUTPUTS = {**{k: v for k, v in (("segmentation", "mono8"), ("segmentation/color", "bgr8"),
                                ("depth", "32FC1"), ("drivable", "mono8"), ("lanes", "mono8"))},
           "lanes/path": "path"}
MOUNTING = {"mounting.x_m": 1.5, "mounting.z_m": 1.4, "mounting.pitch_deg": 3.0,
            "vehicle_frame": "base_link"}





@pytest.fixture(scope="module")
def env(tmp_path_factory, real_data):
    import rclpy

    tmp = tmp_path_factory.mktemp("node_io")
    domain = bench.pick_domain()
    ctx = bench.open_context(domain)
    yield {"ctx": ctx, "domain": domain, "tmp": tmp, "model": bench.make_model_file(tmp),
           "frames": bench.real_frames(3, root=real_data)}
    rclpy.shutdown(context=ctx)


def _check_outputs(probe, stamps, frame_id="cam_front", size=(720, 1280)):
    for topic, encoding in OUTPUTS.items():
        recs = probe.outputs[topic]
        got = sorted(r.stamp_ns for r in recs)
        assert got == sorted(stamps), f"{topic}: stamps {got} != sent {stamps}"
        for r in recs:
            if encoding == "path":
                assert r.frame_id == "base_link", topic  # lanes/path is in the vehicle frame
                continue
            assert (r.frame_id, r.encoding) == (frame_id, encoding), topic
            assert (r.height, r.width) == size, topic


def _send_camera_info(probe, width=1280, height=720):
    probe.info_pub.publish(bench.camera_info_msg(width, height))


@pytest.mark.parametrize("transport", ["raw", "compressed"])
def test_in_process_outputs_keep_header(env, transport):
    values = bench.base_params(env["model"], env["tmp"] / "cache", **MOUNTING,
                               **{"input.transport": transport})
    node = bench.in_process_node(env["ctx"], values, name=f"perception_{transport}")
    probe = bench.Probe(env["ctx"], list(OUTPUTS), ns=f"/perception_{transport}",
                        name=f"probe_{transport}")
    executor, thread = bench.spin_in_thread(env["ctx"], node, probe.node)
    try:
        bench.wait_ready(node)
        assert probe.wait_matched(compressed=transport == "compressed")
        _send_camera_info(probe)
        assert probe.wait_for(lambda p: node._camera is not None, 10)  # noqa: SLF001
        stamps = bench.lockstep(probe, env["frames"], FRAMES, compressed=transport == "compressed")
        assert probe.wait_for(lambda p: all(len(p.outputs[t]) >= FRAMES for t in OUTPUTS), 10)
        _check_outputs(probe, stamps)
        assert probe.wait_for(lambda p: p.diagnostics
                              and int(p.diagnostics[-1]["frames_processed"]) == FRAMES, 5)
        diag = probe.last_diag()
        assert diag["frames_dropped"] == "0" and diag["frames_invalid"] == "0"
        assert diag["active_tasks"] == "segmentation, depth, drivable, lanes"
    finally:
        executor.shutdown()
        thread.join(5)
        node.destroy_node()
        probe.node.destroy_node()


def test_cross_process_outputs_keep_header(env):
    """The node started by its console script (``ros2 run`` target) in another process."""
    params = bench.write_params(env["tmp"] / "cross.yaml", bench.base_params(
        env["model"], env["tmp"] / "cache", **MOUNTING))
    proc = bench.NodeProcess(params, env["domain"], env["tmp"] / "cross.log", how="entry_point")
    probe = bench.Probe(env["ctx"], list(OUTPUTS), name="probe_cross")
    executor, thread = bench.spin_in_thread(env["ctx"], probe.node)
    try:
        assert probe.wait_for(lambda p: p.diagnostics and p.diagnostics[-1]["engine"] == "ready",
                              90), proc.log_text()
        assert probe.wait_matched(), proc.log_text()
        _send_camera_info(probe)
        assert probe.wait_for(lambda p: p.diagnostics[-1]["camera_info"].startswith("1280x720"), 10)
        t0 = time.monotonic()
        stamps = bench.lockstep(probe, env["frames"], FRAMES)
        assert probe.wait_for(lambda p: all(len(p.outputs[t]) >= FRAMES for t in OUTPUTS), 10)
        _check_outputs(probe, stamps)
        assert time.monotonic() - t0 < 60
    finally:
        code = proc.stop()
        executor.shutdown()
        thread.join(5)
        probe.node.destroy_node()
    log = proc.log_text()
    assert code == 0, log  # SIGINT -> KeyboardInterrupt -> destroy_node, try_shutdown
    assert "built the engine with ['segmentation', 'depth', 'drivable', 'lanes']" in log


def test_auto_reliability_follows_a_best_effort_camera(env):
    """``qos.reliability: auto``: a best-effort camera appearing later is matched (a reliable
    reader would never get its frames)."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    values = bench.base_params(env["model"], env["tmp"] / "cache", tasks=["segmentation"],
                               publish_color=False, **{"qos.reliability": "auto",
                                                       "input.topic": "/camera/image_be"})
    node = bench.in_process_node(env["ctx"], values, name="perception_auto")
    probe = bench.Probe(env["ctx"], ["segmentation"], ns="/perception_auto", name="probe_auto")
    executor, thread = bench.spin_in_thread(env["ctx"], node, probe.node)
    try:
        bench.wait_ready(node)
        probe.raw_pub = probe.node.create_publisher(Image, "/camera/image_be", qos_profile_sensor_data)
        assert probe.wait_for(lambda p: node._reliability == "best_effort", 10)  # noqa: SLF001
        assert probe.wait_matched(topics=["segmentation"])
        stamps = bench.lockstep(probe, env["frames"], 2)
        assert set(stamps) <= set(probe.stamps("segmentation"))
    finally:
        executor.shutdown()
        thread.join(5)
        node.destroy_node()
        probe.node.destroy_node()


def test_depth_follows_camera_info(env):
    """Without a mounting too, CameraInfo sets the intrinsics: the same frame's depth is scaled
    by the camera's vertical focal length at the network input over the model's ``focal_px``."""
    import numpy as np

    from perception.training.model_file import save_model
    from tests.runtime.conftest import make_model

    model = make_model(0)
    model.update_task("depth", focal_px=100.0)
    path = save_model(model, env["tmp"] / "focal" / "model.safetensors")
    node = bench.in_process_node(env["ctx"], bench.base_params(path, env["tmp"] / "cache"),
                                 name="perception_focal")
    probe = bench.Probe(env["ctx"], ["depth"], ns="/perception_focal", keep_arrays=("depth",),
                        name="probe_focal")
    executor, thread = bench.spin_in_thread(env["ctx"], node, probe.node)
    try:
        bench.wait_ready(node)
        assert probe.wait_matched()
        frame = env["frames"][0]
        bench.lockstep(probe, [frame], 1, topic="depth")
        _send_camera_info(probe)  # 1280x720, fy 640
        assert probe.wait_for(lambda p: node._camera is not None, 10)  # noqa: SLF001
        bench.lockstep(probe, [frame], 1, topic="depth")
        assert probe.wait_for(lambda p: len(p.outputs["depth"]) == 2, 10)
        before, after = (r.array for r in probe.outputs["depth"])
        ratio = 640.0 * 128 / 720 / 100.0  # fy at the 128-row input / focal_px
        inside = before * ratio < 0.99 * model.cfg.task("depth").max_depth_m
        assert inside.mean() > 0.5
        np.testing.assert_allclose(after[inside], before[inside] * ratio, rtol=1e-5)
        assert not np.allclose(after, before)
    finally:
        executor.shutdown()
        thread.join(5)
        node.destroy_node()
        probe.node.destroy_node()
