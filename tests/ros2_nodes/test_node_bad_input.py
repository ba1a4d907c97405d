"""Bad camera messages and bad bundles are reported (log, /diagnostics ERROR, service response)
and the node keeps processing the next frames (issue 7, items 2 and 3)."""
from __future__ import annotations

import array
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

pytestmark = pytest.mark.ros

import node_bench as bench  # noqa: E402 - benchmarks/ is on sys.path (tests/conftest.py)

REPO = Path(__file__).resolve().parents[2]
ERROR = 40  # rcl_interfaces/Log.ERROR
DIAG_ERROR = 2





@pytest.fixture(scope="module")
def running(tmp_path_factory, real_data):
    """One node (tasks: segmentation) with an adapters directory, and its probe, spinning."""
    import rclpy

    tmp = tmp_path_factory.mktemp("node_bad")
    ctx = bench.open_context(bench.pick_domain())
    adapters = tmp / "adapters"
    adapters.mkdir()
    values = bench.base_params(bench.make_model_file(tmp), tmp / "cache", tasks=["segmentation"],
                               adapters_dir=str(adapters), adapters_poll_s=0.25,
                               publish_color=False)
    node = bench.in_process_node(ctx, values, name="perception_bad")
    probe = bench.Probe(ctx, ["segmentation"], ns="/perception_bad", name="probe_bad")
    executor, thread = bench.spin_in_thread(ctx, node, probe.node)
    bench.wait_ready(node)
    assert probe.wait_matched()
    yield {"node": node, "probe": probe, "adapters": adapters, "tmp": tmp,
           "frames": bench.real_frames(2, size=(640, 360), root=real_data)}
    executor.shutdown()
    thread.join(5)
    node.destroy_node()
    probe.node.destroy_node()
    rclpy.shutdown(context=ctx)


def _raw(width=64, height=48, encoding="bgr8", step=None, data_len=None):
    msg = Image(height=height, width=width, encoding=encoding)
    msg.step = width * 3 if step is None else step
    n = msg.step * height if data_len is None else data_len
    msg.data = array.array("B", bytes(n))
    msg.header.frame_id = "cam_front"
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
    return msg


BAD = {  # what is sent -> what the error must say
    "wrong step": (_raw(step=100), "image step is too small"),
    "unknown encoding": (_raw(encoding="bgr9"), "unknown image encoding 'bgr9'"),
    "truncated data": (_raw(data_len=64 * 3 * 20), "image data is truncated"),
    "zero size": (_raw(height=0, width=0, data_len=0), "image has zero size"),
    "no colour": (_raw(encoding="32FC1", step=64 * 4), "carries no colour information"),
}


def _errors(probe, node_name):
    with probe.lock:
        return [m for level, name, m in probe.logs if level >= ERROR and name == node_name]


def test_bad_messages_are_reported_and_skipped(running):
    probe, node = running["probe"], running["node"]
    good = []
    for what, (msg, expected) in BAD.items():
        probe.publish(msg)  # (sent alone: a frame right behind it would replace it, by design)
        assert probe.wait_for(lambda p, e=expected: any(e in m for m in _errors(p, "perception_bad")),
                              5), f"{what}: no error log with {expected!r}: {_errors(probe, 'perception_bad')}"
        good += bench.lockstep(probe, running["frames"], 1)  # the next frame is still served
    assert set(good) <= set(probe.stamps("segmentation"))
    counts = node._stats.counts  # noqa: SLF001
    assert counts["invalid"] == len(BAD) and counts["failed"] == 0
    assert probe.wait_for(lambda p: any(level == DIAG_ERROR and "rejected" in text
                                        for level, text in p.levels), 5), probe.levels
    assert probe.wait_for(lambda p: int(p.last_diag()["frames_invalid"]) == len(BAD), 5)
    log = next(m for m in _errors(probe, "perception_bad") if "step is too small" in m)
    assert "/camera/image" in log and "stamp" in log  # which topic and which frame


def test_bad_bundles_are_reported_and_serving_continues(running):
    probe, node, adapters = running["probe"], running["node"], running["adapters"]
    good = bench.make_bundle(running["tmp"] / "src", "corridor")
    broken = adapters / "broken.tadtask"
    shutil.copytree(good, broken)
    shutil.copy(good / "manifest.yaml", broken / "manifest.yaml")
    (broken / "weights.safetensors").write_bytes(b"not a safetensors file at all")
    bench.make_bundle(adapters, "alien", model_seed=7)  # trained on another trunk
    for name in ("broken", "alien"):
        (result,) = node.set_parameters([Parameter("tasks", value=["segmentation", name])])
        assert result.successful, result.reason  # the file exists: accepted, then refused on load
        assert probe.wait_for(lambda p, n=name: n in p.last_diag().get("bundle_errors", ""), 15)
    diag = probe.last_diag()
    assert "alien" in diag["bundle_errors"] and "trunk fingerprint mismatch" in diag["bundle_errors"]
    assert node.engine.tasks == ["segmentation"]
    assert probe.wait_for(lambda p: p.levels and p.levels[-1][0] == DIAG_ERROR
                          and "alien" in p.levels[-1][1], 5), probe.levels[-3:]
    assert any("add alien FAILED" in m for m in _errors(probe, "perception_bad"))
    stamps = bench.lockstep(probe, running["frames"], 2)  # still serving
    assert set(stamps) <= set(probe.stamps("segmentation"))

    reload = probe.node.create_client(Trigger, "/perception_bad/reload_tasks")
    assert reload.wait_for_service(5)
    future = reload.call_async(Trigger.Request())
    assert probe.wait_for(lambda p: future.done(), 30)
    response = future.result()
    assert not response.success
    assert "alien" in response.message and "trunk fingerprint mismatch" in response.message

    (result,) = node.set_parameters([Parameter("tasks", value=["segmentation", "broken"])])
    assert result.successful
    assert probe.wait_for(lambda p: "broken" in p.last_diag().get("bundle_errors", "")
                          and "corrupt" in p.last_diag()["bundle_errors"], 15), probe.last_diag()
    (result,) = node.set_parameters([Parameter("tasks", value=["segmentation"])])
    assert result.successful
    assert probe.wait_for(lambda p: p.last_diag().get("bundle_errors") == "none", 15)
    stamps = bench.lockstep(probe, running["frames"], 2)
    assert probe.wait_for(lambda p: p.levels[-1][0] != DIAG_ERROR, 5), probe.levels[-3:]


def test_colour_topics_follow_parameters(running):
    """(Uses the running node of this module.) publish_color/color_tasks change at run time."""
    probe, node = running["probe"], running["node"]
    topic = "/perception_bad/segmentation/color"
    assert not probe.node.get_publishers_info_by_topic(topic)  # publish_color: false
    (result,) = node.set_parameters([Parameter("publish_color", value=True)])
    assert result.successful
    assert probe.wait_for(lambda p: p.node.get_publishers_info_by_topic(topic), 10)
    (result,) = node.set_parameters([Parameter("color_tasks", value=["depth"])])
    assert result.successful  # depth is not running: no topic for it, and segmentation's goes
    assert probe.wait_for(lambda p: not p.node.get_publishers_info_by_topic(topic), 10)
