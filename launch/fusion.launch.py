"""The fusion node beside a thermal and an RGB camera driver (same arguments as
fusion.launch.xml):

    ros2 launch lutfuse_ros fusion.launch.py thermal_topic:=/boson/image_raw model:=/data/my.npz
"""
import os

from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

ARGS = {
    "namespace": ("", "Namespace of the node and its fused/* topics"),
    "thermal_topic": ("thermal/image_raw", "Thermal sensor_msgs/Image (relative: follows the "
                      "namespace)"),
    "rgb_topic": ("rgb/image_raw", "Visible sensor_msgs/Image"),
    "rgb_info_topic": ("rgb/camera_info", "RGB camera_info, republished as fused/camera_info"),
    "params_file": (PathJoinSubstitution([FindPackageShare("lutfuse_ros"), "config",
                                          "fusion.yaml"]), "Node parameters"),
    "model": ("", "Model file (.npz); empty: the package's default model"),
    "dds_profile": (PathJoinSubstitution([FindPackageShare("lutfuse_ros"), "config",
                                          "fastdds_shm.xml"]),
                    "Fast DDS profile with shared-memory segments big enough for images"),
}


def generate_launch_description() -> LaunchDescription:
    profile = LaunchConfiguration("dds_profile")
    node = Node(package="lutfuse_ros", executable="fusion_node", name="lutfuse_fusion",
                namespace=LaunchConfiguration("namespace"), output="screen",
                parameters=[LaunchConfiguration("params_file"),
                            {"model_path": LaunchConfiguration("model")}],
                remappings=[("thermal/image", LaunchConfiguration("thermal_topic")),
                            ("rgb/image", LaunchConfiguration("rgb_topic")),
                            ("rgb/camera_info", LaunchConfiguration("rgb_info_topic"))])
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=desc)
         for name, (default, desc) in ARGS.items()]
        + [SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile)]
        # Fast DDS 2 (Humble, Jazzy) reads only the old name; Fast DDS 3 warns about it.
        + ([SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile)]
           if os.environ.get("ROS_DISTRO", "") in ("", "humble", "iron", "jazzy") else [])
        + [node])
