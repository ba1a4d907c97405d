"""Camera frames from a bag for replay (:func:`open_camera_bag`): the camera topic, its CameraInfo
and the ground-truth topics under a prefix, as :class:`BagFrame` tuples in bag order with the
ground truth paired by header stamp."""
from __future__ import annotations

import os
import warnings
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from perception.errors import DataError
from perception.evaluation.bag_io.message import stamp_to_ns
from perception.evaluation.bag_io.reader import BagReader, TopicSummary, describe_topics
from perception.ros_format.image import (
    compressed_from_msg,
    decode_compressed,
    image_from_msg,
    to_bgr8,
)

__all__ = ["IMAGE_TYPES", "CAMERA_INFO_TYPE", "BagFrame", "CameraBag", "open_camera_bag"]


IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"


class BagFrame(NamedTuple):
    """One camera frame. ``image`` is ``[H, W, 3]`` uint8 BGR when decoding, else the message.
    ``gt`` maps the topic name below the prefix (``"/gt/depth"`` -> ``"depth"``) to a decoded
    array for Image/CompressedImage topics and to the message for other types."""

    stamp_ns: int
    header: Any
    image: Any
    camera_info: Any
    gt: dict[str, Any]


@dataclass
class _Pending:
    stamp_ns: int
    log_time_ns: int
    msg: Any
    gt: dict[str, Any] = field(default_factory=dict)
    info: Any = None


def _sibling_info_topic(camera_topic: str) -> str:
    base = camera_topic.removesuffix("/compressed")
    return base.rsplit("/", 1)[0] + "/camera_info"


class CameraBag:
    """A bag with its camera, CameraInfo and ground-truth topics resolved; iterate for frames.
    Build with :func:`open_camera_bag`."""

    def __init__(self, reader: BagReader, camera_topic: str, camera_info_topic: str | None,
                 gt_topics: Mapping[str, str], *, decode: bool, sync_window_ns: int) -> None:
        self.bag = reader
        self.path = reader.path
        self.camera_topic = camera_topic
        self.camera_msgtype = reader.topics[camera_topic].msgtype
        self.camera_info_topic = camera_info_topic
        self.gt_topics = dict(gt_topics)  # name below the prefix -> topic
        self.decode = decode
        self.sync_window_ns = sync_window_ns

    def __enter__(self) -> CameraBag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.bag.close()

    def __len__(self) -> int:
        return self.bag.topics[self.camera_topic].count

    def __iter__(self) -> Iterator[BagFrame]:
        return self.frames()

    def _stamp(self, msg: Any, log_time_ns: int) -> int:
        header = getattr(msg, "header", None)
        stamp = stamp_to_ns(header.stamp) if header is not None else 0
        return stamp or log_time_ns  # drivers that leave the stamp at 0: use the bag time

    def frames(self) -> Iterator[BagFrame]:
        """Frames in bag order. Ground truth and CameraInfo are paired by header stamp; a frame
        waits at most ``sync_window_ns`` of bag time for missing partners, then is yielded with
        what it has (CameraInfo: the latest one seen)."""
        gt_names = {topic: name for name, topic in self.gt_topics.items()}
        topics = [self.camera_topic, *gt_names]
        if self.camera_info_topic:
            topics.append(self.camera_info_topic)
        pending: deque[_Pending] = deque()
        by_stamp: dict[int, _Pending] = {}
        orphans: dict[int, tuple[int, dict[str, Any]]] = {}  # stamp -> (log time, gt so far)
        infos: dict[int, tuple[int, Any]] = {}
        latest_info = None
        for topic, msgtype, log_ns, raw in self.bag.messages(topics):
            msg = self.bag.deserialize(raw, msgtype, topic)
            stamp = self._stamp(msg, log_ns)
            if topic == self.camera_topic:
                frame = _Pending(stamp, log_ns, msg, orphans.pop(stamp, (0, {}))[1],
                                 infos.get(stamp, (0, None))[1])
                pending.append(frame)
                by_stamp[stamp] = frame
            elif topic == self.camera_info_topic:
                latest_info = msg
                infos[stamp] = (log_ns, msg)
                if stamp in by_stamp and by_stamp[stamp].info is None:
                    by_stamp[stamp].info = msg
            else:
                if stamp in by_stamp:
                    by_stamp[stamp].gt[gt_names[topic]] = msg
                else:
                    orphans.setdefault(stamp, (log_ns, {}))[1][gt_names[topic]] = msg
            while pending and (self._complete(pending[0])
                               or log_ns - pending[0].log_time_ns > self.sync_window_ns):
                yield self._release(pending.popleft(), by_stamp, latest_info)
            horizon = log_ns - self.sync_window_ns
            for buf in (orphans, infos):
                for key in [k for k, (t, _) in buf.items() if t < horizon]:
                    del buf[key]
        while pending:
            yield self._release(pending.popleft(), by_stamp, latest_info)

    def _complete(self, frame: _Pending) -> bool:
        return len(frame.gt) == len(self.gt_topics) and (
            frame.info is not None or not self.camera_info_topic)

    def _release(self, frame: _Pending, by_stamp: dict[int, _Pending], latest_info: Any) -> BagFrame:
        if by_stamp.get(frame.stamp_ns) is frame:
            del by_stamp[frame.stamp_ns]
        image = self._decode_camera(frame) if self.decode else frame.msg
        gt = {name: self._decode_gt(name, msg) if self.decode else msg
              for name, msg in sorted(frame.gt.items())}
        return BagFrame(frame.stamp_ns, frame.msg.header, image,
                        frame.info if frame.info is not None else latest_info, gt)

    def _decode_camera(self, frame: _Pending) -> np.ndarray:
        msg = frame.msg
        try:
            if hasattr(msg, "format"):  # CompressedImage
                array, encoding = decode_compressed(msg.data, msg.format)
            else:
                array, encoding = image_from_msg(msg), msg.encoding
            return to_bgr8(array, encoding)
        except ValueError as err:  # InputError from the converters
            raise DataError(f"bag {self.path}: topic {self.camera_topic!r}, frame at "
                            f"{frame.stamp_ns} ns: {err}") from err

    def _decode_gt(self, name: str, msg: Any) -> Any:
        msgtype = getattr(msg, "__msgtype__", "")
        try:
            if msgtype == "sensor_msgs/msg/Image":
                return image_from_msg(msg)
            if msgtype == "sensor_msgs/msg/CompressedImage":
                return compressed_from_msg(msg)
        except ValueError as err:
            raise DataError(f"bag {self.path}: topic {self.gt_topics[name]!r}: {err}") from err
        return msg


def open_camera_bag(path: str | os.PathLike[str], camera_topic: str | None = None,
                    gt_prefix: str = "/gt", *, camera_info_topic: str | None = None,
                    decode: bool = True, strict: bool = False,
                    sync_window_ns: int = 1_000_000_000) -> CameraBag:
    """Open a bag for replay: resolve the camera, CameraInfo and ground-truth topics.

    Example:
        >>> with open_camera_bag("drive_01/") as bag:
        ...     for stamp_ns, header, bgr, info, gt in bag:
        ...         result = engine(bgr)

    Args:
        path: See :class:`BagReader`.
        camera_topic: An Image or CompressedImage topic; auto-detected when the bag has exactly
            one (topics under ``gt_prefix`` do not count).
        gt_prefix: Topics below it are ground truth, keyed by the rest of their name.
        camera_info_topic: Default: ``<camera namespace>/camera_info`` if present, else the only
            CameraInfo topic, else none.
        decode: Decode the camera image to BGR and ground-truth images to arrays.
        strict: See :class:`BagReader`.
        sync_window_ns: Bag time a frame waits for ground truth with its stamp.

    Raises:
        DataError: The bag cannot be read, has no (or several) camera topics, or the requested
            topic is missing or has another type. The message lists the topics found.
    """
    reader = BagReader(path, strict=strict).__enter__()
    try:
        topics = reader.topics
        prefix = gt_prefix.rstrip("/") + "/"
        gt_topics = {t[len(prefix):]: t for t in topics if t.startswith(prefix)}
        camera_topic = _pick_camera(reader.path, topics, camera_topic, prefix)
        if camera_info_topic is None:
            infos = [t for t, s in topics.items()
                     if s.msgtype == CAMERA_INFO_TYPE and not t.startswith(prefix)]
            sibling = _sibling_info_topic(camera_topic)
            camera_info_topic = sibling if sibling in infos else (infos[0] if len(infos) == 1 else None)
            if camera_info_topic is None and len(infos) > 1:
                warnings.warn(f"bag {reader.path}: several CameraInfo topics {infos} and none is "
                              f"{sibling!r}; pass camera_info_topic= to use one", stacklevel=2)
        elif camera_info_topic not in topics or topics[camera_info_topic].msgtype != CAMERA_INFO_TYPE:
            found = topics[camera_info_topic].msgtype if camera_info_topic in topics else "missing"
            raise DataError(f"bag {reader.path}: camera_info_topic {camera_info_topic!r} is "
                            f"{found}, expected {CAMERA_INFO_TYPE}; topics found: "
                            f"{describe_topics(topics)}")
        return CameraBag(reader, camera_topic, camera_info_topic, gt_topics, decode=decode,
                         sync_window_ns=sync_window_ns)
    except BaseException:
        reader.close()
        raise


def _pick_camera(path: Path, topics: Mapping[str, TopicSummary], requested: str | None,
                 gt_prefix: str) -> str:
    expected = " or ".join(IMAGE_TYPES)
    if requested is not None:
        if requested not in topics:
            raise DataError(f"bag {path}: camera topic {requested!r} not found; topics found: "
                            f"{describe_topics(topics)}")
        if topics[requested].msgtype not in IMAGE_TYPES:
            raise DataError(f"bag {path}: topic {requested!r} has type "
                            f"{topics[requested].msgtype}, expected {expected}")
        return requested
    candidates = [t for t, s in topics.items()
                  if s.msgtype in IMAGE_TYPES and not t.startswith(gt_prefix)]
    if not candidates:
        raise DataError(f"bag {path}: no camera topic ({expected}) outside {gt_prefix!r}; "
                        f"topics found: {describe_topics(topics)}")
    if len(candidates) > 1:
        listed = ", ".join(f"{t} ({topics[t].msgtype})" for t in candidates)
        raise DataError(f"bag {path}: {len(candidates)} camera topics found: {listed}; pass "
                        "camera_topic= to choose one")
    return candidates[0]
