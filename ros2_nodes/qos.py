"""QoS profiles of the perception node and the Fast DDS profile it applies to itself.

All QoS decisions live here; ``docs/ros_qos.md`` explains them with the delivery figures measured
by ``benchmarks/dds_delivery.py`` (issue 7, item 4).

* :func:`camera_qos` - the image subscription. Default RELIABLE, KEEP_LAST 3, VOLATILE: a raw
  720p frame is ~2.7 MB, i.e. ~43 DDS fragments, and losing one fragment loses the frame, so
  only a reliable reader gets repairs (best-effort readers received almost nothing here).
  ``reliability="best_effort"`` is needed for cameras that publish best effort (a reliable
  reader does not match a best-effort writer); ``"auto"`` picks per topic from the publishers
  seen in the graph (:func:`camera_qos_for_publishers`), as rosbag2 and rviz do.
* :func:`output_qos` - what the node publishes: RELIABLE (matches reliable *and* best-effort
  subscribers), KEEP_LAST 2, VOLATILE.
* :func:`apply_fastdds_profile` - points ``FASTDDS_DEFAULT_PROFILES_FILE`` at the shipped
  ``fastdds_profile.xml`` before ``rclpy.init()``: a 32 MB shared-memory segment (Fast DDS's
  default 0.5 MB holds less than one frame) for same-host peers, UDP with 4 MB socket buffers
  (capped by the kernel) for the rest. The segment belongs to the *sending* process: it fixes
  what the node publishes; a camera driver needs the same profile (set it in the launch file). ``RMW_FASTRTPS_USE_QOS_FROM_XML`` is *not* set: the QoS in code stays authoritative and
  the XML only configures transports.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSPolicyKind,
    QoSProfile,
    ReliabilityPolicy,
)
from rclpy.qos_overriding_options import QoSOverridingOptions

__all__ = [
    "CAMERA_RELIABILITY_CHOICES",
    "DEFAULT_CAMERA_RELIABILITY",
    "DEFAULT_CAMERA_DEPTH",
    "FASTDDS_PROFILE_PATH",
    "camera_qos",
    "camera_qos_for_publishers",
    "output_qos",
    "overriding_options",
    "fastdds_profile_xml",
    "apply_fastdds_profile",
]

CAMERA_RELIABILITY_CHOICES = ("reliable", "best_effort", "auto")
DEFAULT_CAMERA_RELIABILITY = "reliable"
# Depth 3, not 1: with a default-configured camera, repaired 720p frames arrive in bursts and a
# depth-1 reader dropped 25-45 % of them at 30 Hz (depth 2: 97-100 %, depth 3: 100 %). The node
# keeps "latest frame wins" itself (the callback stores the newest frame, inference takes it).
DEFAULT_CAMERA_DEPTH = 3
DEFAULT_OUTPUT_DEPTH = 2

FASTDDS_PROFILE_PATH = Path(__file__).with_name("fastdds_profile.xml")
_PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"

_RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}


def camera_qos(reliability: str = DEFAULT_CAMERA_RELIABILITY, depth: int = DEFAULT_CAMERA_DEPTH) -> QoSProfile:
    """QoS of the camera subscription (``Image`` or ``CompressedImage``).

    Args:
        reliability: ``"reliable"`` (default), ``"best_effort"``, or ``"auto"`` (resolved by the
            node with :func:`camera_qos_for_publishers`; here it means the default).
        depth: KEEP_LAST depth. Keep >= 2 for raw images from default-configured cameras
            (see ``DEFAULT_CAMERA_DEPTH``); drop stale frames in the node, not here.

    Raises:
        ValueError: unknown reliability or depth < 1.
    """
    if reliability not in CAMERA_RELIABILITY_CHOICES:
        raise ValueError(
            f"camera reliability must be one of {CAMERA_RELIABILITY_CHOICES}, got {reliability!r}"
        )
    if int(depth) < 1:
        raise ValueError(f"camera QoS depth must be >= 1, got {depth!r}")
    if reliability == "auto":
        reliability = DEFAULT_CAMERA_RELIABILITY
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=_RELIABILITY[reliability],
        durability=DurabilityPolicy.VOLATILE,
    )


def camera_qos_for_publishers(endpoints: Iterable[Any], depth: int = DEFAULT_CAMERA_DEPTH) -> QoSProfile:
    """Camera QoS that matches the publishers found on the topic (``reliability="auto"``).

    ``endpoints`` are ``rclpy`` ``TopicEndpointInfo`` (``node.get_publishers_info_by_topic``).
    Reliable when every publisher is reliable (so fragments get repaired), best effort when
    any is best effort (a reliable reader would not match it), the default when none is seen.
    """
    policies = [e.qos_profile.reliability for e in endpoints]
    if any(p == ReliabilityPolicy.BEST_EFFORT for p in policies):
        return camera_qos("best_effort", depth)
    return camera_qos("reliable", depth)


def output_qos(depth: int = DEFAULT_OUTPUT_DEPTH) -> QoSProfile:
    """QoS of every topic the node publishes (masks, depth, paths, coloured images).

    Reliable writers match both reliable and best-effort readers; KEEP_LAST never blocks the
    inference thread on a slow reader.
    """
    if int(depth) < 1:
        raise ValueError(f"output QoS depth must be >= 1, got {depth!r}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def overriding_options() -> QoSOverridingOptions:
    """Let operators retune history/depth/reliability/durability per topic by parameters.

    Pass as ``qos_overriding_options=`` to ``create_subscription``/``create_publisher``; the
    parameters are ``qos_overrides.<topic>.<subscription|publisher>.<policy>``.
    """
    return QoSOverridingOptions(
        policy_kinds=(
            QoSPolicyKind.HISTORY,
            QoSPolicyKind.DEPTH,
            QoSPolicyKind.RELIABILITY,
            QoSPolicyKind.DURABILITY,
        )
    )


# --- Fast DDS --------------------------------------------------------------------------------


def fastdds_profile_xml(
    *,
    segment_size_mb: int = 32,
    shm_max_message_kb: int | None = None,
    port_queue_capacity: int = 512,
    udp_buffer_kb: int | None = 4096,
    profile_name: str = "tad_perception_large_images",
) -> str:
    """The Fast DDS XML profile text (``fastdds_profile.xml`` is this with the defaults).

    Args:
        segment_size_mb: shared-memory segment of each participant; holds the samples it sends
            until every local reader took them (default Fast DDS: 0.5 MB, less than one frame).
            32 MB: 16 MB already carried one 720p camera at 30 Hz; the node's outputs need more.
            Fast DDS allocates all of it in /dev/shm per process.
        shm_max_message_kb: largest SHM message; ``None`` keeps Fast DDS's 64 KB fragments.
        port_queue_capacity: descriptors queued per SHM listening port (one per fragment).
        udp_buffer_kb: UDP socket send/receive buffer (capped by ``net.core.[rw]mem_max``);
            ``None`` keeps the system default. ``0`` removes UDP (same-host only).
        profile_name: participant profile name; it is the default profile.
    """
    shm_max = (
        f"\n                <maxMessageSize>{shm_max_message_kb * 1024}</maxMessageSize>"
        if shm_max_message_kb
        else ""
    )
    udp_ids, udp_desc = "", ""
    if udp_buffer_kb != 0:
        buffers = (
            f"\n                <sendBufferSize>{udp_buffer_kb * 1024}</sendBufferSize>"
            f"\n                <receiveBufferSize>{udp_buffer_kb * 1024}</receiveBufferSize>"
            if udp_buffer_kb
            else ""
        )
        udp_desc = f"""
            <transport_descriptor>
                <transport_id>tadp_udp</transport_id>
                <type>UDPv4</type>{buffers}
            </transport_descriptor>"""
        udp_ids = "\n                    <transport_id>tadp_udp</transport_id>"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by ros2_nodes.qos.fastdds_profile_xml(); see docs/ros_qos.md. Applied by the
     perception node through FASTDDS_DEFAULT_PROFILES_FILE before rclpy.init(). It configures
     transports only; QoS (reliability, depth) comes from code (RMW_FASTRTPS_USE_QOS_FROM_XML unset). -->
<dds xmlns="http://www.eprosima.com">
    <profiles>
        <transport_descriptors>
            <transport_descriptor>
                <transport_id>tadp_shm</transport_id>
                <type>SHM</type>
                <segment_size>{segment_size_mb * 1024 * 1024}</segment_size>
                <port_queue_capacity>{port_queue_capacity}</port_queue_capacity>{shm_max}
            </transport_descriptor>{udp_desc}
        </transport_descriptors>
        <participant profile_name="{profile_name}" is_default_profile="true">
            <rtps>
                <userTransports>
                    <transport_id>tadp_shm</transport_id>{udp_ids}
                </userTransports>
                <useBuiltinTransports>false</useBuiltinTransports>
            </rtps>
        </participant>
    </profiles>
</dds>
"""


def apply_fastdds_profile(
    env: MutableMapping[str, str] | None = None, *, path: Path | str | None = None, override: bool = False
) -> str | None:
    """Make the Fast DDS participant of this process use our transport profile.

    Must run before ``rclpy.init()`` (Fast DDS reads the variable when it creates its first
    participant). An operator's own ``FASTDDS_DEFAULT_PROFILES_FILE`` wins unless ``override``.
    Nothing is done when another RMW than Fast DDS is selected by ``RMW_IMPLEMENTATION``.

    Args:
        env: the environment to modify (``os.environ`` by default; a dict for child processes).
        path: profile file; default the shipped ``fastdds_profile.xml`` (written from
            :func:`fastdds_profile_xml` into ``~/.cache/tad_perception`` if the install lacks it).

    Returns:
        The profile path in effect, or None when not using Fast DDS.
    """
    env = os.environ if env is None else env
    rmw = env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if not rmw.startswith("rmw_fastrtps"):
        return None
    if env.get(_PROFILE_ENV) and not override:
        return env[_PROFILE_ENV]
    profile = Path(path) if path is not None else FASTDDS_PROFILE_PATH
    if not profile.is_file():
        if path is not None:
            raise FileNotFoundError(f"Fast DDS profile {profile} does not exist")
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tad_perception"
        cache.mkdir(parents=True, exist_ok=True)
        profile = cache / FASTDDS_PROFILE_PATH.name
        profile.write_text(fastdds_profile_xml())
        warnings.warn(f"{FASTDDS_PROFILE_PATH} is not installed; wrote the default profile to {profile}", stacklevel=2)
    env[_PROFILE_ENV] = str(profile)
    return str(profile)
