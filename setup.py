"""ament_python package ``tad_perception``; also a plain pip-installable package.

torch is not pinned here: on Jetson it comes from NVIDIA's JetPack wheels, on desktop GPUs from
PyTorch's CUDA wheels. CPU-only machines install with ``-c constraints-cpu.txt``, which pins the
CPU build so pip never pulls a multi-GB CUDA wheel.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "tad_perception"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Multi-task driving perception: Swin encoder + TADFormer task adapters, ROS 2 node",
    packages=find_packages(include=["perception*", "ros2_nodes*", "calibration*"]),
    package_data={
        "perception": ["assets/*.yaml", "assets/*/*", "assets/*/*/*", "assets/*/*/*/*"],
        "ros2_nodes": ["*.xml"],
    },
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/launch/params", glob("launch/params/*.yaml")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "numpy>=1.24",
        "numba>=0.61",  # compiled per-pixel kernels of the synthetic renderer
        "opencv-python-headless>=4.8",
        "pyyaml>=6",
        "safetensors>=0.4",
        "onnx>=1.16",
        "onnxruntime>=1.18",
        "onnxscript>=0.2",
        "rosbags>=0.10",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    extras_require={
        # Real ROS 2 wheels from PyPI for machines without a ROS install. On a ROS machine,
        # `source /opt/ros/<distro>/setup.bash` provides rclpy and the messages instead.
        "ros": [
            "ros-rclpy",
            "ros-rmw-fastrtps-cpp",
            "ros-sensor-msgs",
            "ros-std-msgs",
            "ros-nav-msgs",
            "ros-diagnostic-msgs",
            "ros-std-srvs",
            "ros-geometry-msgs",
        ],
        # torch-tensorrt must match the installed torch (see docs/tensorrt.md).
        "tensorrt": ["torch-tensorrt>=2.6"],
        # transformers' Swin is the numerical reference in tests (timm needs a torchvision that
        # does not import beside the CPU torch wheel).
        "dev": ["pytest>=7", "transformers>=4.40", "ruff>=0.4", "mcap>=1.1"],
    },
    entry_points={
        "console_scripts": [
            "tadp = perception.cli:main",
            "perception_node = ros2_nodes.perception_node:main",
        ],
    },
    zip_safe=False,
    maintainer="tad_perception developers",
    maintainer_email="dev@tad-perception.invalid",
    license="Apache-2.0",
)
