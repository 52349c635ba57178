"""pip build of lutfuse_ros (no messages). colcon builds the package with ament_cmake
instead (CMakeLists.txt: the msg/ interfaces, then this Python package installed over the
generated one); both install the same code and entry points."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "lutfuse_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Real-time thermal + visible image fusion (LUT-Fuse MM-LUT) for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    # The offline trainer lives in training/ and installs as lutfuse_training (never as a
    # top-level "training", which collides in site-packages); the runtime never imports it.
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"])
    + find_packages("training", include=["lutfuse_training", "lutfuse_training.*"]),
    package_dir={"lutfuse_training": "training/lutfuse_training"},
    package_data={f"{PACKAGE}.models": ["*.npz", "*.md", "*.yaml", "LICENSE-*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.*")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/msg", glob("msg/*.msg")),
    ],
    # The runtime needs no torch: the context network runs on ONNX Runtime (or OpenCV DNN)
    # from the ONNX graph in the model file. torch is the training dependency and an optional
    # runtime backend (extra "torch"; on a Jetson keep JetPack's build). Every dependency
    # here has x86-64 and aarch64 wheels.
    install_requires=[
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "numba>=0.59",
        "onnxruntime>=1.16",
        "scipy>=1.10",
        "scikit-image>=0.22",
        "tqdm>=4.60",
        "pyyaml>=6",
        "rosbags>=0.10",  # rosbag2 read/write in pure Python (bag-export, training from bags)
    ],
    extras_require={
        "test": ["pytest>=7", "ruff>=0.5"],  # ruff: the linter CI runs (ruff.toml)
        "torch": ["torch>=2.0"],
        # The fused CUDA kernels of the GPU path (core/cuda_kernels.py); pick your CUDA major
        # version (JetPack 6 is CUDA 12). Without CuPy the GPU path runs torch ops.
        "cuda12": ["torch>=2.0", "cupy-cuda12x>=13"],
        "cuda13": ["torch>=2.0", "cupy-cuda13x>=14"],
        # onnx: torch.onnx.export needs it (lutfuse export-onnx, distillation output)
        "training": ["torch>=2.0", "onnx>=1.15", "pyyaml>=6", "tqdm>=4.60"],
        # ROS 2 Kilted from PyPI, for machines without a ROS install (x86-64 only). Robots
        # use their apt-installed ROS 2 instead and skip this extra.
        "ros": ["ros-rclpy==9.1.2", "ros-sensor-msgs==5.5.1", "ros-diagnostic-msgs==5.5.1",
                "ros-std-srvs==5.5.1",
                "ros-rmw-fastrtps-cpp==9.3.3", "pyyaml>=6"],
        # ROS 2 Jazzy (the LTS) from PyPI: CI's second leg (scripts/jazzy_leg.sh).
        "ros-jazzy": ["ros-jazzy-rclpy==7.1.6", "ros-jazzy-sensor-msgs==5.3.6",
                      "ros-jazzy-diagnostic-msgs==5.3.6", "ros-jazzy-std-srvs==5.3.6",
                      "ros-jazzy-rmw-fastrtps-cpp==8.4.3", "pyyaml>=6"],
    },
    entry_points={"console_scripts": [
        f"lutfuse = {PACKAGE}.cli:main",
        "lutfuse-train = lutfuse_training.cli:main",
        f"fusion_node = {PACKAGE}.ros.fusion_node:main",
        f"recorder_node = {PACKAGE}.ros.recorder_node:main",
        f"replay_cameras = {PACKAGE}.ros.demo:replay_main",
        f"fused_receiver = {PACKAGE}.ros.demo:receiver_main",
    ]},
)
