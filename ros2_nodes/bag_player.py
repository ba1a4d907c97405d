"""Live replay (issue 8, item 4): play a camera bag into the running perception node at the
recorded rate and record what the node publishes.

The ROS half of ``tadp replay --realtime``; ``perception.evaluation.replay.live_parity`` (no ROS)
compares the recording with the offline replay of the same frames. The player publishes the
bag's camera messages unchanged (raw or compressed: the node decodes them) with their original
headers, and the bag's CameraInfo, on the node's input topics; it subscribes to every Image and
Path topic the node advertises under its namespace and writes each message it receives, as
received (CDR), into a new bag at the message's header stamp. Publish and receive wall times give
the live latency per frame; frames without any output are the node's drops ("latest frame wins"
under load).

Example:
    >>> live = play_into_node("drive.mcap", "live.mcap", node_ns="/perception")
    >>> live.latency_ms(), live.dropped()
"""
from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rclpy
from nav_msgs.msg import Path as PathMsg
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from perception.errors import DataError
from ros2_nodes import qos
from ros2_nodes.convert import compressed_msg_from_fields, image_msg_from_fields

__all__ = ["LiveRecording", "play_into_node"]

_TYPES = {"sensor_msgs/msg/Image": Image, "nav_msgs/msg/Path": PathMsg}


@dataclass
class LiveRecording:
    """What one live run sent and received (wall clock ``time.time_ns``)."""

    output: Path
    camera_topic: str  # where the frames were published
    topics: dict[str, str]  # recorded output topic -> type
    sent: dict[int, int] = field(default_factory=dict)  # header stamp -> publish time
    received: dict[str, dict[int, int]] = field(default_factory=dict)  # topic -> stamp -> time
    seconds: float = 0.0  # playing time

    def silent(self) -> list[str]:
        """Topics the node advertises but never published on (e.g. ``lanes/path`` without a
        mounting); they do not count when deciding whether a frame is complete."""
        return [t for t, r in self.received.items() if not r]

    def complete(self, stamp_ns: int) -> bool:
        """Every topic that published anything has this frame's output."""
        return all(stamp_ns in r for r in self.received.values() if r)

    def dropped(self) -> list[int]:
        """Stamps of sent frames with no output at all."""
        return [s for s in self.sent if not any(s in r for r in self.received.values())]

    def latency_ms(self) -> list[float]:
        """Per answered frame: last output received - frame published (ms)."""
        out = []
        for stamp, sent_ns in self.sent.items():
            times = [r[stamp] for r in self.received.values() if stamp in r]
            if times:
                out.append((max(times) - sent_ns) / 1e6)
        return out


def _camera_msg(msg: Any) -> Any:
    """rclpy Image/CompressedImage from a rosbags message (ROS 2 or ROS 1), header kept."""
    from std_msgs.msg import Header

    header = Header()
    header.stamp.sec, header.stamp.nanosec = int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)
    header.frame_id = str(msg.header.frame_id)
    data = bytes(memoryview(msg.data))
    if hasattr(msg, "format"):
        return compressed_msg_from_fields({"format": msg.format, "data": data}, header)
    return image_msg_from_fields({"height": int(msg.height), "width": int(msg.width),
                                  "encoding": str(msg.encoding),
                                  "is_bigendian": int(msg.is_bigendian), "step": int(msg.step),
                                  "data": data}, header)


def _camera_info_msg(msg: Any) -> CameraInfo:
    out = CameraInfo()
    out.header.stamp.sec, out.header.stamp.nanosec = int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)
    out.header.frame_id = str(msg.header.frame_id)
    out.height, out.width = int(msg.height), int(msg.width)
    out.distortion_model = str(msg.distortion_model)
    out.d = [float(v) for v in (msg.d if hasattr(msg, "d") else msg.D)]
    out.k = [float(v) for v in (msg.k if hasattr(msg, "k") else msg.K)]
    out.r = [float(v) for v in (msg.r if hasattr(msg, "r") else msg.R)]
    out.p = [float(v) for v in (msg.p if hasattr(msg, "p") else msg.P)]
    out.binning_x, out.binning_y = int(msg.binning_x), int(msg.binning_y)
    return out


def _wait(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()


def _play(node: Node, pub: Any, info_pub: Any, frames: Iterator[tuple[int, Any, Any]], rate: float,
          recording: LiveRecording, lock: threading.Lock, tail_s: float,
          progress: Callable[[int], None] | None, wait_s: float) -> None:
    """Publish the frames on the recorded schedule, then wait for the node's last outputs."""
    if not _wait(lambda: all(node.count_publishers(t) for t in recording.topics), wait_s):
        raise DataError(f"the node's outputs {sorted(recording.topics)} stopped being "
                        "published before playing started")
    first, start = None, time.perf_counter()
    for i, (stamp, msg, info) in enumerate(frames):
        if first is None:
            first, start = stamp, time.perf_counter()
        ros_msg = _camera_msg(msg)  # built before its deadline
        info_msg = _camera_info_msg(info) if info_pub is not None and info is not None else None
        delay = start + (stamp - first) / 1e9 / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if info_msg is not None:
            info_pub.publish(info_msg)
        recording.sent[stamp] = time.time_ns()
        pub.publish(ros_msg)
        if progress is not None:
            progress(i + 1)
    recording.seconds = time.perf_counter() - start

    def settled() -> bool:
        with lock:
            done = all(recording.complete(s) for s in recording.sent)
            last = max((t for r in recording.received.values() for t in r.values()), default=0)
        quiet_ns = time.time_ns() - max(last, max(recording.sent.values()))
        # Complete: a short quiet spell still lets a slower topic's last message land.
        return quiet_ns > (0.3 if done else tail_s) * 1e9

    _wait(settled, 24 * 3600.0)


def play_into_node(in_bag: str | Path, out_bag: str | Path, *, node_ns: str = "/perception",
                   input_topic: str | None = None, camera_info_topic: str | None = None,
                   camera_topic: str | None = None, gt_prefix: str = "/gt", rate: float = 1.0,
                   wait_s: float = 30.0, tail_s: float = 3.0, max_frames: int | None = None,
                   overwrite: bool = False, compression: str | None = None,
                   domain_id: int | None = None,
                   progress: Callable[[int], None] | None = None) -> LiveRecording:
    """Publish the bag's camera frames to the running node at ``rate`` x the recorded rate and
    record the node's outputs into ``out_bag`` (written atomically, like the offline replay).

    Args:
        in_bag, camera_topic, gt_prefix, max_frames: the frames to play (``open_camera_bag``).
        out_bag: ``X.mcap`` or a bag directory for the recorded outputs.
        node_ns: the node's namespace + name (its outputs are ``<node_ns>/<task>``).
        input_topic: where to publish (default: the bag's camera topic; for a compressed
            camera, the node's ``input.topic`` + ``/compressed``).
        camera_info_topic: where to publish CameraInfo (default: the bag's topic name).
        rate: playback speed factor (1.0 = as recorded).
        wait_s: how long to wait for the node (subscribed to the input, outputs advertised).
        tail_s: after the last frame, wait this long without new outputs before stopping.
        compression: ``None`` or ``"zstd"`` for the recorded bag.
        domain_id: ROS domain (default ``ROS_DOMAIN_ID``).

    Raises:
        DataError: the bag cannot be read, or no node answers on ``node_ns`` within ``wait_s``.
    """
    from perception.evaluation.bag_io import open_camera_bag

    if not rate > 0:
        raise DataError(f"rate must be > 0, got {rate!r}")
    ns = node_ns.rstrip("/")
    out_bag = Path(out_bag)
    with open_camera_bag(in_bag, camera_topic, gt_prefix, decode=False,
                         camera_info_topic=camera_info_topic) as bag:
        if len(bag) == 0:
            raise DataError(f"bag {in_bag}: the camera topic {bag.camera_topic!r} has no frames")
        frames = ((f.stamp_ns, f.image, f.camera_info) for f in bag)  # read while playing
        if max_frames is not None:
            frames = itertools.islice(frames, max_frames)
        return _session(frames, out_bag, bag.camera_topic, bag.camera_msgtype,
                        bag.camera_info_topic, ns=ns, input_topic=input_topic, rate=rate,
                        wait_s=wait_s, tail_s=tail_s, overwrite=overwrite,
                        compression=compression, domain_id=domain_id, progress=progress)


def _session(frames: Iterator[tuple[int, Any, Any]], out_bag: Path, source_topic: str,
             source_type: str, info_topic: str | None, *, ns: str, input_topic: str | None,
             rate: float, wait_s: float, tail_s: float, overwrite: bool,
             compression: str | None, domain_id: int | None,
             progress: Callable[[int], None] | None) -> LiveRecording:
    from perception.evaluation.bag_frames import place_storage_file
    from perception.evaluation.bag_io import BagOutputWriter

    pub_topic = input_topic or source_topic
    compressed = source_type.endswith("CompressedImage")
    qos.apply_fastdds_profile()  # before init: raw frames need the larger shared-memory segment
    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = None
    recording = LiveRecording(out_bag, pub_topic, {})
    lock = threading.Lock()
    try:
        node = Node("tadp_replay_player", context=context)
        pub = node.create_publisher(CompressedImage if compressed else Image, pub_topic,
                                    qos.camera_qos("reliable", 10))
        info_pub = (node.create_publisher(CameraInfo, info_topic,
                                          QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                                     history=HistoryPolicy.KEEP_LAST,
                                                     durability=DurabilityPolicy.VOLATILE))
                    if info_topic else None)

        def outputs() -> dict[str, str]:
            found = {}
            for name, types in node.get_topic_names_and_types():
                if name.startswith(ns + "/") and types and types[0] in _TYPES:
                    found[name] = types[0]
            return found

        if not _wait(lambda: pub.get_subscription_count() > 0 and outputs(), wait_s):
            raise DataError(
                f"no perception node answered within {wait_s:.0f} s: nobody subscribes to "
                f"{pub_topic!r} or nothing is published under {ns!r}. Start the node first "
                f"(e.g. `tadp node --params P -r image:={pub_topic.removesuffix('/compressed')}`)"
                ", check ROS_DOMAIN_ID, or pass --node-ns / --input-topic")
        time.sleep(0.5)  # let late topics (colour, path) appear
        recording.topics = dict(sorted(outputs().items()))
        recording.received = {t: {} for t in recording.topics}

        def play_and_record(build: Path, replace: bool) -> None:
            with BagOutputWriter(build, overwrite=replace, compression=compression) as writer:
                for topic, msgtype in recording.topics.items():
                    writer.add_connection(topic, msgtype)

                def recorder(topic: str) -> Callable[[Any], None]:
                    def on_msg(msg: Any) -> None:
                        now = time.time_ns()
                        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                        with lock:
                            recording.received[topic].setdefault(stamp, now)
                            writer.write(topic, stamp, serialize_message(msg))
                    return on_msg

                for topic, msgtype in recording.topics.items():
                    node.create_subscription(_TYPES[msgtype], topic, recorder(topic),
                                             qos.output_qos(50))
                executor = SingleThreadedExecutor(context=context)
                executor.add_node(node)
                spinner = threading.Thread(target=executor.spin, name="tadp-live-spin",
                                           daemon=True)
                spinner.start()
                try:
                    _play(node, pub, info_pub, frames, rate, recording, lock, tail_s, progress,
                          wait_s)
                finally:  # no callback may touch the writer once it closes or aborts
                    executor.shutdown(timeout_sec=5.0)
                    spinner.join(timeout=5.0)

        place_storage_file(play_and_record, out_bag, overwrite)
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
    return recording
