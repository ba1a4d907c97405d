"""Shared machinery of the perception-node benchmarks and acceptance tests (issue 7).

``benchmarks/node_latency.py``, ``benchmarks/node_overload.py`` and
``tests/ros2_nodes/test_node_*.py`` use it (the tests load it by path, as
``test_dds_delivery.py`` loads ``dds_delivery.py``):

* :func:`make_model_file` / :func:`make_bundle` - the small random model of
  ``tests/runtime/conftest.py`` (128x256 input) saved with ``save_model``, and task bundles;
* :func:`write_params` - a ROS 2 params file from dotted names (``input.transport``);
* :func:`open_context` - an rclpy context on its own ``ROS_DOMAIN_ID``, Fast DDS profile applied;
* :class:`Probe` - the "camera and consumers" side: publishes frames, records every output;
* :class:`NodeProcess` - the node in another process (``perception_node`` or ``tadp node``).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

NODE_NS = "/perception"
BASE_OUTPUTS = {  # topic under the node -> encoding (the tiny model's four tasks)
    "segmentation": "mono8",
    "segmentation/color": "bgr8",
    "depth": "32FC1",
    "drivable": "mono8",
    "lanes": "mono8",
}


# -- data, model, params ----------------------------------------------------------------------
def real_data_dir() -> Path:
    env = os.environ.get("TADP_REAL_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data" / "real"


def real_frames(n: int = 3, size: tuple[int, int] | None = None, root: Path | None = None
                ) -> list[np.ndarray]:
    """``n`` BDD100K frames (yolop_bdd100k, 1280x720 BGR), optionally resized to ``size`` (W, H)."""
    import cv2

    files = sorted((root or real_data_dir()).glob("yolop_bdd100k/**/*.jpg"))
    if len(files) < n:
        raise FileNotFoundError(f"need {n} frames under {root or real_data_dir()}/yolop_bdd100k")
    frames = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files[:n]]
    return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) if size else f for f in frames]


def make_model_file(directory: Path, seed: int = 0) -> Path:
    """The tests' small random model (tiny Swin, 128x256 input) as X.safetensors + X.yaml."""
    from perception.training.model_file import save_model
    from tests.runtime.conftest import make_model

    return save_model(make_model(seed), Path(directory) / "model.safetensors")


def make_bundle(directory: Path, name: str = "corridor", seed: int = 1, model_seed: int = 0
                ) -> Path:
    """A random ``mask`` task bundle on the trunk of ``make_model_file(seed=model_seed)``."""
    import torch

    from perception.config import TaskConfig
    from perception.training.bundle import save_bundle
    from tests.runtime.conftest import make_model

    model = make_model(model_seed)
    head = model.add_task(TaskConfig(name=name, kind="mask"))
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return save_bundle(model, name, Path(directory) / f"{name}.tadtask", overwrite=True)


def write_params(path: Path, values: dict[str, Any], node_name: str = "/**") -> Path:
    """A ROS 2 params file; dotted names become nested mappings."""
    import yaml

    tree: dict[str, Any] = {}
    for name, value in values.items():
        node = tree
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = list(value) if isinstance(value, tuple) else value
    path = Path(path)
    path.write_text(yaml.safe_dump({node_name: {"ros__parameters": tree}}, sort_keys=False))
    return path


def base_params(model: Path, cache_dir: Path, **extra: Any) -> dict[str, Any]:
    """Parameters every node test starts from: small model, torch, one thread, fast diagnostics."""
    values = {"model": str(model), "backend": "torch", "threads": 1, "cache_dir": str(cache_dir),
              "input.topic": "/camera/image", "input.camera_info_topic": "/camera/camera_info",
              "diagnostics_period_s": 0.5}
    values.update(extra)
    return values


# -- ROS plumbing -------------------------------------------------------------------------------
def pick_domain() -> int:
    """A ROS_DOMAIN_ID for this process (1..100), random so parallel runs rarely collide."""
    return random.Random(os.getpid() ^ time.time_ns()).randint(1, 100)


def child_env(domain: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))})
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)  # the node applies its own
    env.update(extra)
    return env


def open_context(domain: int):
    """An initialised rclpy Context on ``domain`` (profile applied first: we send 720p frames)."""
    import rclpy
    from rclpy.context import Context

    from ros2_nodes import qos

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    qos.apply_fastdds_profile()
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    return ctx


@dataclass
class Received:
    stamp_ns: int
    frame_id: str
    encoding: str
    height: int
    width: int
    recv_ns: int  # wall clock (time.time_ns) at the probe's callback
    array: np.ndarray | None = None


def stamp_ns_of(header: Any) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


class Probe:
    """Camera + consumers in one rclpy node: publishes frames and records the node's outputs.

    Args:
        context: rclpy context.
        topics: output topics under ``ns`` to record (Image), plus ``lanes/path`` if listed.
        keep_arrays: topics whose pixel arrays are kept (for equality checks).
    """

    def __init__(self, context: Any, topics: list[str], *, ns: str = NODE_NS,
                 camera_topic: str = "/camera/image", keep_arrays: tuple[str, ...] = (),
                 name: str = "probe") -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Path as PathMsg
        from rcl_interfaces.msg import Log
        from rclpy.node import Node
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        from ros2_nodes import qos

        self.node = Node(name, context=context)
        self.ns, self.keep = ns, set(keep_arrays)
        self.lock = threading.RLock()  # predicates of wait_for may call last_diag()
        self.outputs: dict[str, list[Received]] = {t: [] for t in topics}
        self.diagnostics: list[dict[str, str]] = []  # values of our node's status, in order
        self.levels: list[tuple[int, str]] = []
        self.logs: list[tuple[int, str, str]] = []  # (level, logger name, message)
        self._subs = []
        for topic in topics:
            msg_type = PathMsg if topic.endswith("/path") else Image
            self._subs.append(self.node.create_subscription(
                msg_type, f"{ns}/{topic}", self._recorder(topic), qos.output_qos(10)))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.node.create_subscription(Log, "/rosout", self._on_log, 100)
        self.raw_pub = self.node.create_publisher(Image, camera_topic, 10)
        self.compressed_pub = self.node.create_publisher(CompressedImage,
                                                         f"{camera_topic}/compressed", 10)
        self.info_pub = self.node.create_publisher(CameraInfo, "/camera/camera_info", 10)

    def _recorder(self, topic: str):
        from perception.ros_format import image_from_msg

        def callback(msg: Any) -> None:
            now = time.time_ns()
            is_image = hasattr(msg, "encoding")
            arr = image_from_msg(msg) if is_image and topic in self.keep else None
            rec = Received(stamp_ns_of(msg.header), msg.header.frame_id,
                           msg.encoding if is_image else "path",
                           msg.height if is_image else len(msg.poses),
                           msg.width if is_image else 0, now, arr)
            with self.lock:
                self.outputs[topic].append(rec)

        return callback

    def _on_diag(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith(f"{self.ns}: "):
                with self.lock:
                    self.diagnostics.append({kv.key: kv.value for kv in status.values})
                    self.levels.append((status.level[0] if isinstance(status.level, bytes)
                                        else int(status.level), status.message))

    def _on_log(self, msg: Any) -> None:
        with self.lock:
            self.logs.append((int(msg.level), msg.name, msg.msg))

    def frame_msg(self, frame: np.ndarray, stamp_ns: int, frame_id: str = "cam_front",
                  compressed: bool = False) -> Any:
        from ros2_nodes.convert import compressed_to_msg, image_to_msg

        msg = compressed_to_msg(frame, fmt="jpeg", quality=90) if compressed \
            else image_to_msg(frame, "bgr8")
        msg.header.frame_id = frame_id
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        return msg

    def publish(self, msg: Any) -> None:
        (self.compressed_pub if hasattr(msg, "format") else self.raw_pub).publish(msg)

    def wait_for(self, predicate, timeout_s: float, poll_s: float = 0.05) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self.lock:
                if predicate(self):
                    return True
            time.sleep(poll_s)
        with self.lock:
            return bool(predicate(self))

    def wait_matched(self, compressed: bool = False, topics: list[str] | None = None,
                     timeout_s: float = 20.0) -> bool:
        """Until the node subscribes our camera topic and publishes ``topics`` (default: all)."""
        pub = self.compressed_pub if compressed else self.raw_pub
        subs = [s for t, s in zip(self.outputs, self._subs, strict=True)
                if topics is None or t in topics]
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if pub.get_subscription_count() and all(s.get_publisher_count() for s in subs):
                return True
            time.sleep(0.05)
        return False

    def last_diag(self) -> dict[str, str]:
        with self.lock:
            return dict(self.diagnostics[-1]) if self.diagnostics else {}

    def stamps(self, topic: str) -> list[int]:
        with self.lock:
            return [r.stamp_ns for r in self.outputs[topic]]


def spin_in_thread(context: Any, *nodes: Any):
    """A MultiThreadedExecutor spinning ``nodes`` in a daemon thread; returns (executor, thread)."""
    from rclpy.executors import MultiThreadedExecutor

    executor = MultiThreadedExecutor(num_threads=3, context=context)
    for n in nodes:
        executor.add_node(n)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    return executor, thread


def stream(probe: Probe, frames: list[np.ndarray], rate_hz: float, count: int, *,
           compressed: bool = False, on_sent=None, frame_id: str = "cam_front") -> list[int]:
    """Publish ``count`` frames (cycling ``frames``) at ``rate_hz``; stamps are wall-clock now.

    Messages are built ahead (encoding a 720p JPEG takes ~4 ms) so the pace is exact. Returns
    the stamps in order; frame ``i`` shows ``frames[i % len(frames)]``.
    """
    period = 1.0 / rate_hz
    prebuilt = [probe.frame_msg(f, 0, frame_id, compressed) for f in frames]
    stamps = []
    start = time.perf_counter()
    for i in range(count):
        deadline = start + i * period
        delay = deadline - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        msg = prebuilt[i % len(frames)]
        stamp = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        probe.publish(msg)
        stamps.append(stamp)
        if on_sent is not None:
            on_sent(i, stamp)
    return stamps


def in_process_node(context: Any, values: dict[str, Any], name: str = "perception"):
    """A :class:`~ros2_nodes.perception_node.PerceptionNode` in this process."""
    from rclpy.parameter import Parameter

    from ros2_nodes.perception_node import PerceptionNode

    overrides = [Parameter(k, value=list(v) if isinstance(v, tuple) else v)
                 for k, v in values.items()]
    return PerceptionNode(name, context=context, parameter_overrides=overrides)


def wait_ready(node: Any, timeout_s: float = 120.0) -> None:
    end = time.monotonic() + timeout_s
    while node.engine is None:
        if time.monotonic() > end:
            raise TimeoutError(f"engine not ready after {timeout_s} s: {node._state.engine}")
        time.sleep(0.05)


def lockstep(probe: Probe, frames: list[np.ndarray], count: int, *, topic: str = "segmentation",
             compressed: bool = False, frame_id: str = "cam_front", timeout_s: float = 20.0
             ) -> list[int]:
    """Send frame i, wait for its output on ``topic``, then send i+1 (no drops by design)."""
    stamps = []
    for i in range(count):
        stamp = time.time_ns()
        probe.publish(probe.frame_msg(frames[i % len(frames)], stamp, frame_id, compressed))
        if not probe.wait_for(lambda p, s=stamp: s in [r.stamp_ns for r in p.outputs[topic]],
                              timeout_s):
            raise TimeoutError(f"no {topic} output for frame {i} within {timeout_s} s")
        stamps.append(stamp)
    return stamps


def camera_info_msg(width: int, height: int, frame_id: str = "cam_front") -> Any:
    """A pinhole CameraInfo (90 deg horizontal field of view) for ``width`` x ``height``."""
    from sensor_msgs.msg import CameraInfo

    f = width / 2.0
    msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    msg.header.frame_id = frame_id
    msg.k = [f, 0.0, width / 2.0, 0.0, f, height / 2.0, 0.0, 0.0, 1.0]
    msg.d = [0.0] * 5
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [f, 0.0, width / 2.0, 0.0, 0.0, f, height / 2.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


# -- the node in another process ----------------------------------------------------------------
class NodeProcess:
    """``perception_node --ros-args --params-file F`` (``how="entry_point"``) or
    ``tadp node --params F`` (``how="tadp"``) in a child process; stopped with SIGINT."""

    def __init__(self, params_file: Path, domain: int, log_path: Path, how: str = "entry_point"
                 ) -> None:
        if how == "tadp":
            exe = shutil.which("tadp")
            cmd = [exe] if exe else [sys.executable, "-m", "perception.cli"]
            cmd += ["node", "--params", str(params_file)]
        else:
            exe = shutil.which("perception_node")
            cmd = [exe] if exe else [sys.executable, "-m", "ros2_nodes.perception_node"]
            cmd += ["--ros-args", "--params-file", str(params_file)]
        self.cmd, self.log_path = cmd, Path(log_path)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, env=child_env(domain), stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=str(REPO))

    def rss_mb(self) -> float:
        """Resident memory of the node process (VmRSS), MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


# -- numbers --------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class RssTrace:
    samples: list[tuple[float, float]] = field(default_factory=list)  # (s since start, MB)

    def growth_mb(self, skip_fraction: float = 1 / 3) -> float:
        """RSS at the end minus RSS after the first ``skip_fraction`` of the run (warm-up)."""
        if len(self.samples) < 2:
            return float("nan")
        t_end = self.samples[-1][0]
        after = [mb for t, mb in self.samples if t >= t_end * skip_fraction]
        return after[-1] - after[0]
