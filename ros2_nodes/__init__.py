"""ros2_nodes."""
