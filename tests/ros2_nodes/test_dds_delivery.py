"""Large images over DDS actually arrive with our QoS and Fast DDS profile (issue 7, item 4).

The delivery tests run ``benchmarks/dds_delivery.py`` trials: a publisher process sends raw
1280x720 bgr8 frames of a real BDD100K image at 10 Hz, a subscriber process counts them, on a
random ROS_DOMAIN_ID restricted to localhost (so parallel runs do not cross-talk). Each takes
about 8 s (50 frames + process start and discovery).
"""
from __future__ import annotations

import importlib.util
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("rclpy")
from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy  # noqa: E402

from ros2_nodes import qos  # noqa: E402

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("dds_delivery", REPO / "benchmarks" / "dds_delivery.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("dds_delivery", module)  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


# --- QoS profiles ----------------------------------------------------------------------------


def test_camera_qos_default():
    profile = qos.camera_qos()
    assert profile.reliability == ReliabilityPolicy.RELIABLE
    assert profile.history == HistoryPolicy.KEEP_LAST and profile.depth == qos.DEFAULT_CAMERA_DEPTH == 3
    assert profile.durability == DurabilityPolicy.VOLATILE
    assert qos.camera_qos("best_effort", 1).reliability == ReliabilityPolicy.BEST_EFFORT
    assert qos.camera_qos("auto").reliability == ReliabilityPolicy.RELIABLE


@pytest.mark.parametrize("kwargs,match", [({"reliability": "fast"}, "reliability must be one of"), ({"depth": 0}, "depth must be >= 1")])
def test_camera_qos_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        qos.camera_qos(**kwargs)


def test_camera_qos_follows_publishers():
    def endpoint(policy):
        return SimpleNamespace(qos_profile=SimpleNamespace(reliability=policy))

    rel, be = endpoint(ReliabilityPolicy.RELIABLE), endpoint(ReliabilityPolicy.BEST_EFFORT)
    assert qos.camera_qos_for_publishers([rel, rel]).reliability == ReliabilityPolicy.RELIABLE
    assert qos.camera_qos_for_publishers([rel, be]).reliability == ReliabilityPolicy.BEST_EFFORT
    assert qos.camera_qos_for_publishers([]).reliability == ReliabilityPolicy.RELIABLE


def test_output_qos_matches_every_reader():
    profile = qos.output_qos()
    assert profile.reliability == ReliabilityPolicy.RELIABLE and profile.history == HistoryPolicy.KEEP_LAST
    assert len(list(qos.overriding_options().policy_kinds)) == 4


# --- Fast DDS profile ------------------------------------------------------------------------


def test_shipped_profile_is_the_generated_default():
    text = qos.FASTDDS_PROFILE_PATH.read_text()
    assert text == qos.fastdds_profile_xml(), "regenerate ros2_nodes/fastdds_profile.xml from qos.fastdds_profile_xml()"
    ns = {"f": "http://www.eprosima.com"}
    root = ET.fromstring(text)
    participant = root.find("f:profiles/f:participant", ns)
    assert participant.get("is_default_profile") == "true"
    sizes = [int(e.text) for e in root.iter("{http://www.eprosima.com}segment_size")]
    assert sizes == [32 * 1024 * 1024]
    assert participant.find("f:rtps/f:useBuiltinTransports", ns).text == "false"


def test_apply_profile_sets_env_once(tmp_path):
    env: dict[str, str] = {}
    assert qos.apply_fastdds_profile(env) == str(qos.FASTDDS_PROFILE_PATH)
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(qos.FASTDDS_PROFILE_PATH)
    own = {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/my_profile.xml"}
    assert qos.apply_fastdds_profile(own) == "/etc/my_profile.xml"  # the operator's file wins
    custom = tmp_path / "p.xml"
    custom.write_text(qos.fastdds_profile_xml(segment_size_mb=16))
    assert qos.apply_fastdds_profile(own, path=custom, override=True) == str(custom)
    assert qos.apply_fastdds_profile({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}) is None
    with pytest.raises(FileNotFoundError):
        qos.apply_fastdds_profile({}, path=tmp_path / "missing.xml")


# --- delivery between two processes ----------------------------------------------------------


@pytest.mark.parametrize(
    "combo,profile_on",
    [
        ("rel-rel", "both"),  # the documented set-up: camera_qos() + profile in camera and node
        ("be-be", "both"),  # best-effort camera: only works with the profile (0-1 % without)
        ("rel-rel", "sub"),  # a camera started without the profile, our node with it
    ],
)
def test_raw_720p_frames_arrive(bench, combo, profile_on):
    trial = bench.Trial(combo, "tad", "raw", 10.0, 50, profile_on, qos.DEFAULT_CAMERA_DEPTH)
    result = bench.run_trial(trial)
    assert not result.error, result.error
    assert result.sent == 50
    assert result.ratio >= 0.95, bench.markdown_table([result])
