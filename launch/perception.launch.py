"""Start the perception node with a params file (docs/ros_node.md).

Examples::

    ros2 launch tad_perception perception.launch.py
    ros2 launch tad_perception perception.launch.py params_file:=/etc/tadp/front.yaml \\
        image:=/front_camera/image_raw camera_info:=/front_camera/camera_info namespace:=front

``FASTDDS_DEFAULT_PROFILES_FILE`` is set for every process this launch file starts (the node and
anything included after it, e.g. a camera driver): the shared-memory segment that matters for
large images is the *sender's* (docs/ros_qos.md). An operator's own value is kept.
"""
import os  # noqa: I001 - `launch` is the ROS package, not our launch/ directory
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "tad_perception"
EXECUTABLE = "perception_node"  # setup.py console_scripts: ros2_nodes.perception_node:main


def _fastdds_profile() -> str:
    if os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        return os.environ["FASTDDS_DEFAULT_PROFILES_FILE"]
    import ros2_nodes  # no rclpy import; the profile ships beside qos.py

    return str(Path(ros2_nodes.__file__).with_name("fastdds_profile.xml"))


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    image = LaunchConfiguration("image")
    return LaunchDescription([
        DeclareLaunchArgument("params_file",
                              default_value=os.path.join(share, "launch", "params", "default.yaml"),
                              description="ROS 2 params YAML of the perception node"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument("node_name", default_value="perception", description="node name"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="camera image topic ('image'; with transport "
                                          "'compressed' '<image>/compressed' is used)"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="CameraInfo topic"),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
        DeclareLaunchArgument("fastdds_profile", default_value=_fastdds_profile(),
                              description="Fast DDS XML profile (32 MB shared memory segment)"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                               LaunchConfiguration("fastdds_profile")),
        Node(
            package=PACKAGE,
            executable=EXECUTABLE,
            name=LaunchConfiguration("node_name"),
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file")],
            remappings=[
                ("image", image),
                ("image/compressed", [image, "/compressed"]),
                ("camera_info", LaunchConfiguration("camera_info")),
            ],
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
            output="screen",
            emulate_tty=True,
        ),
    ])
