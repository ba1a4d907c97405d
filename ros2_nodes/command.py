"""``tadp node``: run the perception ROS 2 node without ROS tooling (no ``ros2 run``/launch).
It lives beside the node so rclpy stays in ``ros2_nodes/``.

Example::

    tadp node --params launch/params/default.yaml -r image:=/camera/image_raw

It is the node ``ros2 run tad_perception perception_node`` starts, with the params file and
remappings passed as ROS arguments (``--ros-args --params-file FILE -r FROM:=TO``). Topics and
parameters: ``docs/ros_node.md``. Needs rclpy and the ROS 2 messages: the ``ros`` extra
(``pip install 'tad_perception[ros]'``) or a sourced ROS 2 installation.
"""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("node", help="run the perception ROS 2 node",
                       description="Run the perception ROS 2 node with a params file "
                                   "(same node as `ros2 run tad_perception perception_node`).")
    p.add_argument("--params", type=Path, metavar="FILE", required=True,
                   help="ROS 2 params YAML (see launch/params/default.yaml)")
    p.add_argument("-r", "--remap", action="append", default=[], metavar="FROM:=TO",
                   help="topic remapping, e.g. image:=/camera/image_raw (repeatable)")
    p.add_argument("--name", help="node name (default: perception)")
    p.add_argument("--log-level", choices=("debug", "info", "warn", "error", "fatal"),
                   help="ROS log level")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from perception.errors import ConfigError, MissingDependencyError

    if not args.params.is_file():
        raise ConfigError(f"params file {str(args.params)!r} does not exist")
    for item in args.remap:
        if ":=" not in item:
            raise ConfigError(f"remapping {item!r} is not FROM:=TO (e.g. image:=/camera/image_raw)")
    try:
        import rclpy  # noqa: F401 - only to fail early with the message below
    except ImportError as err:
        raise MissingDependencyError(
            f"tadp node needs 'rclpy' and the ROS 2 message packages, which are not importable "
            f"({err}). Install them with: pip install 'tad_perception[ros]', or on a ROS machine "
            "run: source /opt/ros/<distro>/setup.bash") from err
    from ros2_nodes.perception_node import main

    ros_args = ["--ros-args", "--params-file", str(args.params)]
    for item in args.remap:
        ros_args += ["-r", item]
    if args.name:
        ros_args += ["-r", f"__node:={args.name}"]
    if args.log_level:
        ros_args += ["--log-level", args.log_level]
    return main(["tadp-node", *ros_args])
