"""The perception ROS 2 node: camera in, one topic per task out, tasks hot-swapped at run time.

Glue only (STYLE §8): decoding is ``perception.ros_format``, inference ``PerceptionEngine``,
messages ``ros2_nodes.convert``, QoS ``ros2_nodes.qos``, parameters ``ros2_nodes.params``,
statistics ``ros2_nodes.diagnostics``, the adapters directory ``ros2_nodes.adapters_watch``,
which tasks run ``ros2_nodes.task_set``.
Topics, parameters and QoS are documented in ``docs/ros_node.md``.

Threads:

* the executor runs the callbacks; none of them blocks. The image callback stores the newest
  message ("latest frame wins") and counts the one it replaces as dropped;
* the **inference worker** takes the newest frame, decodes it, runs the engine and publishes
  every output with the input header;
* the **control thread** (``TaskSet.run``) builds the engine, polls the adapters directory and
  applies task changes (parameter ``tasks``, new/changed/removed bundles, ``~/reload_tasks``).
  Reading and verifying bundles and ``engine.add_task`` run here, never on the worker; the engine
  swaps its task list atomically between two frames. The reload service awaits the control
  thread's answer without blocking the executor.

Usage::

    ros2 run tad_perception perception_node --ros-args --params-file params.yaml \\
        -r image:=/camera/image_raw
    tadp node --params params.yaml            # the same node without ROS tooling
"""
from __future__ import annotations

import collections
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibration.lanes import ego_lane_centre
from perception.errors import ConfigError, InputError, PerceptionError
from perception.ros_format.outputs import colorize_output, output_encoding, published_array
from ros2_nodes.task_set import OutputHooks, SwapOutcome, TaskSet

try:  # the ROS corner: everything that needs rclpy or *_msgs
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Path as PathMsg
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from rclpy.event_handler import SubscriptionEventCallbacks
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import ReliabilityPolicy
    from rclpy.task import Future
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from std_srvs.srv import Trigger

    from ros2_nodes import qos
    from ros2_nodes.adapters_watch import scan_bundles
    from ros2_nodes.convert import image_to_msg, output_msg, path_msg
    from ros2_nodes.diagnostics import FrameStats, NodeState, build_status
    from ros2_nodes.params import ALL_TASKS, NodeParams, ParamBinding

    _IMPORT_ERROR: ImportError | None = None
except ImportError as _err:  # pragma: no cover - exercised only without the `ros` extra
    _IMPORT_ERROR = _err
    Node = object  # type: ignore[assignment,misc]

__all__ = ["PerceptionNode", "SwapOutcome", "ego_lane_centre", "main"]

_ERROR_LOG_PERIOD_S = 2.0  # the same kind of input error is logged at most this often


@dataclass
class _TaskOutputs:
    main: Any
    color: Any = None
    path: Any = None
    info: tuple[Any, Any] | None = None  # (TaskKind, TaskConfig) for colouring


class PerceptionNode(Node):
    """Camera -> :class:`~perception.runtime.engine.PerceptionEngine` -> one topic per task.

    Args:
        node_name: ROS node name (default ``perception``).
        **kwargs: passed to ``rclpy.node.Node`` (``context``, ``parameter_overrides``, ...).

    Raises:
        ConfigError: invalid parameters or a missing model (before anything is subscribed).
        CheckpointError: the model file cannot be loaded.
    """

    def __init__(self, node_name: str = "perception", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._threads: list[threading.Thread] = []
        try:
            self._setup()
        except BaseException:
            super().destroy_node()  # do not leave a half-built node in the context
            raise

    def _setup(self) -> None:
        from perception.training.model_file import load_model

        self._base_names: list[str] | None = None
        self._binding = ParamBinding(self, NodeParams, check=self._check_params)
        cfg = self._binding.current
        self._model_path = cfg.model_path()
        model = load_model(self._model_path)  # fail fast on a bad model, before any I/O
        self._base_names = model.task_names()
        self._check_params(cfg)
        self._mounting = cfg.mounting.mounting()
        self._log = self.get_logger()

        self._stats = FrameStats(cfg.latency_window)
        self._state = NodeState(input_topic=cfg.input.resolved_topic)
        self._cond = threading.Condition()
        self._pending: tuple[Any, int] | None = None
        self._stop = False
        self._pub_lock = threading.Lock()
        self._outputs: dict[str, _TaskOutputs] = {}
        self._published_seq: dict[str, int] = {}  # task -> engine frame number last published
        # (seq, frame, header) of the last frames: a swap's first output names one of them (frame
        # numbers are unique in the process, across engine rebuilds)
        self._recent: collections.deque[tuple[int, np.ndarray, Any]] = collections.deque(maxlen=4)
        self._tasks = TaskSet(
            params=lambda: self.params, base_names=self._base_names, model_path=self._model_path,
            first_model=model, mounting=self._mounting, state=self._state,
            outputs=OutputHooks(ensure=self._ensure_outputs, drop=self._drop_outputs,
                                refresh=self._refresh_outputs, names=lambda: list(self._outputs),
                                first=self._publish_first),
            log=self._log, log_error=self._log_error)
        self._camera: Any = None  # calibration.CameraModel from the first CameraInfo
        self._camera_applied: tuple[int, Any, tuple[int, int]] | None = None
        self._last_seq: dict[bytes, int] = {}
        self._error_logged: dict[str, float] = {}

        self._io_group = MutuallyExclusiveCallbackGroup()
        self._control_group = MutuallyExclusiveCallbackGroup()
        self._compressed = cfg.input.transport == "compressed"
        self._image_sub: Any = None
        self._subscribe_camera(cfg.qos.reliability if cfg.qos.reliability != "auto" else "reliable")
        self._state.input_topic = self._image_sub.topic_name
        if cfg.qos.reliability == "auto":
            self._match_publishers()
        if cfg.input.camera_info_topic:
            self.create_subscription(CameraInfo, cfg.input.camera_info_topic, self._on_camera_info,
                                     qos.camera_qos("reliable", 1), callback_group=self._io_group)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics,
                          callback_group=self._control_group)
        self.create_service(Trigger, "~/reload_tasks", self._on_reload,
                            callback_group=self._control_group)
        self._binding.add_listener(self._on_params_changed)

        self._threads = [
            threading.Thread(target=self._worker_loop, name="tadp-infer", daemon=True),
            threading.Thread(target=self._tasks.run, name="tadp-control", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._log.info(f"subscribed to {self._image_sub.topic_name} ({cfg.input.transport}); "
                       f"building the engine ({cfg.backend}) from {self._model_path}")

    # -- parameters --------------------------------------------------------------------------
    @property
    def params(self) -> NodeParams:
        return self._binding.current

    @property
    def engine(self) -> Any:
        """The engine serving frames now (None while it is built)."""
        return self._tasks.engine

    def _check_params(self, cfg: NodeParams) -> None:
        if self._base_names is None:  # during declaration: the model is not loaded yet
            return
        if cfg.tasks == (ALL_TASKS,):
            return
        bundles = scan_bundles(cfg.adapters_dir)
        if unknown := [t for t in cfg.tasks if t not in self._base_names and t not in bundles]:
            raise ConfigError(
                f"tasks: unknown {unknown}; the model has {self._base_names} and "
                f"adapters_dir {cfg.adapters_dir or '(not set)'!r} has bundles {sorted(bundles)}. "
                "Drop the bundle into adapters_dir first, then add its name")

    def _on_params_changed(self, changed: set[str], cfg: NodeParams) -> None:
        if "tasks" in changed:
            self._tasks.request("params")
        if changed & {"color_tasks", "publish_color"}:
            self._tasks.request("outputs")

    # -- input -------------------------------------------------------------------------------
    def _subscribe_camera(self, reliability: str) -> None:
        cfg = self.params
        first = self._image_sub is None
        if not first:
            self.destroy_subscription(self._image_sub)
        msg_type = CompressedImage if self._compressed else Image
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        self._image_sub = self.create_subscription(
            msg_type, cfg.input.resolved_topic, self._on_image,
            qos.camera_qos(reliability, cfg.qos.depth), callback_group=self._io_group,
            event_callbacks=events,
            # qos_overrides.* are declared once; applying them again would undo the switch
            qos_overriding_options=qos.overriding_options() if first else None)
        self._reliability = reliability

    def _match_publishers(self) -> None:
        """``qos.reliability: auto``: follow the publishers on the topic (best effort if any is)."""
        infos = self.get_publishers_info_by_topic(self._image_sub.topic_name)
        want = qos.camera_qos_for_publishers(infos, self.params.qos.depth)
        best_effort = want.reliability == ReliabilityPolicy.BEST_EFFORT
        reliability = "best_effort" if best_effort else "reliable"
        if reliability != self._reliability:
            self._log.info(f"qos.reliability auto: publishers on {self._image_sub.topic_name} "
                           f"need {reliability}; subscribing again")
            self._subscribe_camera(reliability)

    def _on_incompatible_qos(self, event: Any) -> None:
        if self.params.qos.reliability == "auto":
            # Subscribing again from inside the subscription's own event callback is unsafe;
            # do it from a timer that cancels itself.
            def once() -> None:
                timer.cancel()
                self._match_publishers()

            timer = self.create_timer(0.05, once, callback_group=self._control_group)
        else:
            self._log.error(
                f"a publisher on {self._image_sub.topic_name} has incompatible QoS "
                f"(policy {event.last_policy_kind}); this node subscribes "
                f"{self.params.qos.reliability}. Set qos.reliability to 'best_effort' or 'auto' "
                "for best-effort cameras", throttle_duration_sec=10.0)

    def _on_image(self, msg: Any, info: Any) -> None:
        # Two parameters without defaults: rclpy then passes the MessageInfo (sequence numbers).
        received_ns = time.perf_counter_ns()
        self._stats.count("received")
        if info is not None and info.get("publication_sequence_number") is not None:
            gid = bytes(info["publisher_gid"]["data"]) if info.get("publisher_gid") else b""
            seq = info["publication_sequence_number"]
            last = self._last_seq.get(gid)
            if last is not None and seq > last + 1:
                self._stats.count("lost", seq - last - 1)
            self._last_seq[gid] = seq
        if self._tasks.engine is None:
            self._stats.count("not_ready")
            return
        with self._cond:
            if self._pending is not None:
                self._stats.count("dropped")
            self._pending = (msg, received_ns)
            self._cond.notify()

    def _on_camera_info(self, msg: Any) -> None:
        from calibration.io import camera_info_from_msg

        try:
            camera = camera_info_from_msg(msg)
        except PerceptionError as err:
            self._log_error("camera_info", f"ignoring CameraInfo on {msg.header.frame_id!r}: {err}")
            return
        if camera != self._camera:
            first = self._camera is None
            self._camera = camera
            self._state.camera_info = f"{camera.width}x{camera.height} fx={camera.fx:.1f}"
            self._log.info(f"{'camera intrinsics from' if first else 'new intrinsics on'} "
                           f"CameraInfo: {self._state.camera_info}")

    def _log_error(self, key: str, message: str) -> None:
        now = time.monotonic()
        if now - self._error_logged.get(key, -1e9) >= _ERROR_LOG_PERIOD_S:
            self._error_logged[key] = now
            self._log.error(message)

    # -- inference worker ------------------------------------------------------------------------
    def _worker_loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                msg, received_ns = self._pending
                self._pending = None
            engine = self._tasks.engine
            if engine is None:
                continue
            try:
                self._process(engine, msg, received_ns)
            except Exception as err:  # noqa: BLE001 - one bad frame must not end the worker
                self._stats.error("failed", f"{type(err).__name__}: {err}")
                self._log_error("failed", f"frame {_stamp_text(msg)} failed: "
                                          f"{type(err).__name__}: {err}")

    def _decode(self, msg: Any) -> np.ndarray:
        from perception.ros_format import decode_compressed, image_from_msg, to_bgr8

        if self._compressed:
            array, encoding = decode_compressed(msg.data, msg.format)
        else:
            array, encoding = image_from_msg(msg, copy=False), msg.encoding
        return to_bgr8(array, encoding)

    def _apply_camera(self, engine: Any, size_wh: tuple[int, int]) -> None:
        """Give the engine the frames' intrinsics: depth follows the focal length, and with a
        mounting the lane mask becomes a path."""
        camera = self._camera
        key = (id(engine), camera, size_wh)
        if camera is None or key == self._camera_applied:
            return
        if camera.size != size_wh:
            self._log.warning(f"CameraInfo is {camera.width}x{camera.height} but frames are "
                              f"{size_wh[0]}x{size_wh[1]}; scaling the intrinsics")
            camera = camera.resized(*size_wh)
        engine.camera, engine.mounting = camera, self._mounting
        self._camera_applied = key

    def _process(self, engine: Any, msg: Any, received_ns: int) -> None:
        try:
            frame = self._decode(msg)
        except (PerceptionError, ValueError, TypeError) as err:
            what = "CompressedImage" if self._compressed else f"Image ({msg.encoding!r})"
            self._stats.error("invalid", f"{what} {_stamp_text(msg)}: {err}")
            self._log_error(f"invalid:{str(err)[:40]}", f"rejected {what} {_stamp_text(msg)} on "
                            f"{self._image_sub.topic_name}: {err}")
            return
        self._apply_camera(engine, (frame.shape[1], frame.shape[0]))
        t0 = time.perf_counter_ns()
        try:
            result = engine.infer(frame)
        except InputError as err:  # e.g. a 1-pixel frame
            self._stats.error("invalid", f"frame {_stamp_text(msg)}: {err}")
            self._log_error(f"invalid:{str(err)[:40]}", f"rejected frame {_stamp_text(msg)}: {err}")
            return
        engine_ms = (time.perf_counter_ns() - t0) / 1e6
        self._recent.append((result.seq, frame, msg.header))  # before publishing: a swap may use it
        self._publish(result, frame, msg.header)
        now_ns = self.get_clock().now().nanoseconds
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        tasks = {k[5:]: v for k, v in result.timings_ms.items() if k.startswith("task/")}
        node_ms = (time.perf_counter_ns() - received_ns) / 1e6
        self._stats.processed((now_ns - stamp_ns) / 1e6, node_ms, engine_ms, tasks)

    def _publish_first(self, results: list[Any]) -> bool:
        """A task just added or replaced: publish its output on the latest frame (computed by the
        swap), with that frame's header, unless a newer frame of the task is already out."""
        for seq, frame, header in list(self._recent):
            if seq == results[0].seq:
                self._publish(results[0], frame, header)
                return True
        return False

    def _publish(self, result: Any, frame: np.ndarray, header: Any) -> None:
        cfg = self.params
        with self._pub_lock:
            for name, out in result.outputs.items():
                pubs = self._outputs.get(name)
                if pubs is None or self._published_seq.get(name, -1) >= result.seq > 0:
                    continue  # per topic, stamps never go back (a swap's output came late)
                self._published_seq[name] = result.seq
                # Only build what somebody listens to (a 720p frame's outputs are ~9 MB).
                if pubs.main.get_subscription_count():
                    out = published_array(out)
                    encoding = output_encoding(out)
                    pubs.main.publish(output_msg(out, encoding, header) if encoding
                                      else image_to_msg(out, "passthrough", header))
                if (pubs.color is not None and pubs.info is not None and cfg.publish_color
                        and pubs.color.get_subscription_count()):
                    kind, task_cfg = pubs.info
                    color = colorize_output(kind, task_cfg, result.raw.get(name), result.outputs[name],
                                            frame, cfg.color_blend)
                    pubs.color.publish(output_msg(color, "bgr8", header))
                if pubs.path is not None and pubs.path.get_subscription_count():
                    if result.polylines is not None:
                        pubs.path.publish(path_msg(ego_lane_centre(result.polylines), header,
                                                    cfg.vehicle_frame))

    # -- outputs (the task set's hooks; called on the control thread) ---------------------------
    def _ensure_outputs(self, name: str, task_cfg: Any) -> None:
        from perception.tasks import kind_of

        cfg = self.params
        out_qos = qos.output_qos(cfg.qos.output_depth)
        kind = kind_of(task_cfg)
        with self._pub_lock:
            pubs = self._outputs.get(name)
            if pubs is None:
                pubs = _TaskOutputs(self._publisher(Image, f"~/{name}", out_qos))
                if name == "lanes":
                    pubs.path = self._publisher(PathMsg, "~/lanes/path", out_qos)
                self._outputs[name] = pubs
            pubs.info = (kind, task_cfg)

    def _publisher(self, msg_type: Any, topic: str, profile: Any) -> Any:
        return self.create_publisher(msg_type, topic, profile,
                                     qos_overriding_options=qos.overriding_options())

    def _refresh_outputs(self) -> None:
        """Create/destroy ``~/<task>/color`` publishers after a task or colour change."""
        cfg = self.params
        out_qos = qos.output_qos(cfg.qos.output_depth)
        with self._pub_lock:
            for name, pubs in self._outputs.items():
                want = cfg.publish_color and name in cfg.color_tasks
                if want and pubs.color is None:
                    pubs.color = self._publisher(Image, f"~/{name}/color", out_qos)
                elif not want and pubs.color is not None:
                    self.destroy_publisher(pubs.color)
                    pubs.color = None

    def _drop_outputs(self, name: str) -> None:
        with self._pub_lock:
            pubs = self._outputs.pop(name, None)
            if pubs is not None:
                for pub in (pubs.main, pubs.color, pubs.path):
                    if pub is not None:
                        self.destroy_publisher(pub)
        self._stats.forget_task(name)

    # -- service and diagnostics -----------------------------------------------------------------
    async def _on_reload(self, request: Any, response: Any) -> Any:
        """``~/reload_tasks``: rescan adapters_dir, retry failed bundles, apply ``tasks``."""
        future = Future(executor=self.executor)
        # A done callback makes the executor wake up when the control thread sets the result;
        # without one, the awaiting coroutine would only resume at the next unrelated event.
        future.add_done_callback(lambda _: None)
        self._tasks.request("reload", force=True, future=future)
        outcome: SwapOutcome = await future
        response.success, response.message = outcome.ok, outcome.message
        return response

    def _publish_diagnostics(self) -> None:
        snap = self._stats.snapshot()
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [build_status(f"{self.get_fully_qualified_name()}: perception", snap,
                                     self._state, hardware_id=self._image_sub.topic_name)]
        self._diag_pub.publish(array)

    def destroy_node(self) -> None:
        """Stop the worker and control threads, then the ROS entities."""
        if self._threads:
            with self._cond:
                self._stop = True
                self._tasks.stop()
                self._cond.notify_all()
            for thread in self._threads:
                if thread.is_alive():
                    thread.join(timeout=5.0)
            self._threads = []
        super().destroy_node()


def _stamp_text(msg: Any) -> str:
    try:
        return f"stamp {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}"
    except AttributeError:
        return "stamp ?"


def _missing_ros_message(err: ImportError) -> str:
    return (f"the perception node needs rclpy and the ROS 2 message packages ({err}). On a ROS "
            "machine: source /opt/ros/<distro>/setup.bash; elsewhere: "
            "pip install 'tad_perception[ros]'")


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run tad_perception perception_node`` and ``tadp node``.

    Example:
        ros2 run tad_perception perception_node --ros-args --params-file my.yaml
    """
    if _IMPORT_ERROR is not None:
        print(f"perception_node: error: {_missing_ros_message(_IMPORT_ERROR)}", file=sys.stderr)
        return 1
    qos.apply_fastdds_profile()  # before rclpy.init(): Fast DDS reads it with the first participant
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = PerceptionNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except PerceptionError as err:
        rclpy.logging.get_logger("perception").fatal(f"cannot start: {err}")
        code = 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
