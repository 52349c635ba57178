"""The colcon (ament_cmake) build description agrees with the code and with setup.py.

The build itself runs in scripts/test.sh (scripts/colcon_build.sh), which then runs the node
tests again from the install space; these checks need no build.
"""
from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from lutfuse_ros.resources import config_file, share_dir
from lutfuse_ros.stream.stats import ModelInfo, NodeStats, status_fields
from lutfuse_ros.stream.sync import SyncStats

from conftest import ROOT

CMAKE = (ROOT / "CMakeLists.txt").read_text()
PACKAGE = ET.parse(ROOT / "package.xml").getroot()


def setup_console_scripts() -> dict[str, str]:
    """name -> "module:function" from setup.py's entry_points, read without running it."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict) and any(
                isinstance(k, ast.Constant) and k.value == "console_scripts" for k in node.keys):
            items = node.values[0].elts
            out = {}
            for item in items:  # f-strings with {PACKAGE} or plain strings
                text = "".join(v.value if isinstance(v, ast.Constant) else "lutfuse_ros"
                               for v in (item.values if isinstance(item, ast.JoinedStr)
                                         else [item]))
                name, target = (s.strip() for s in text.split("="))
                out[name] = target
            return out
    raise AssertionError("no console_scripts in setup.py")


def test_ros_executables_equal_the_pip_console_scripts():
    block = re.search(r"set\(LUTFUSE_EXECUTABLES(.*?)\)", CMAKE, re.S).group(1)
    cmake = dict(e.split("=") for e in re.findall(r'"([^"]+)"', block))
    pip = {k: v for k, v in setup_console_scripts().items()
           if v.startswith("lutfuse_ros")}  # lutfuse-train is the offline trainer: pip only
    assert cmake == pip


def test_every_message_file_is_generated():
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "msg").glob("*.msg"))
    assert files and all(f'"{f}"' in CMAKE for f in files)


def test_status_values_fill_every_field_of_the_status_message():
    fields = [line.split()[1] for line in (ROOT / "msg" / "FusionStatus.msg").read_text()
              .splitlines() if line.strip() and not line.startswith("#")]
    snap = NodeStats().snapshot(now=0.0, input_timeout=0.4)
    values = status_fields(snap, SyncStats(received=[0, 0]), 0, ModelInfo("id", "", "eng"),
                           None)
    assert sorted(values) == sorted(f for f in fields if f != "header")


def test_package_xml_is_format_3_ament_cmake_with_a_key_for_every_runtime_import():
    assert PACKAGE.get("format") == "3"
    assert PACKAGE.find("export/build_type").text == "ament_cmake"
    assert PACKAGE.find("member_of_group").text == "rosidl_interface_packages"
    depends = {e.text for e in PACKAGE if e.tag in ("depend", "exec_depend")}
    build = {e.text for e in PACKAGE if e.tag in ("depend", "build_depend", "buildtool_depend")}
    assert {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"} <= build
    imported = set()
    for path in (ROOT / "lutfuse_ros").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
    rosdep = {"numpy": "python3-numpy", "cv2": "python3-opencv", "scipy": "python3-scipy",
              "yaml": "python3-yaml", "tqdm": "python3-tqdm", "skimage": "python3-skimage"}
    ros = {"rclpy", "rcl_interfaces", "sensor_msgs", "diagnostic_msgs", "std_msgs", "std_srvs",
           "ament_index_python"}
    # Installed by pip on robots (no rosdep key on every distro): README "Robot install".
    # onnx: export only; cupy: the GPU path's fused kernels (optional)
    pip_only = {"torch", "numba", "rosbags", "onnxruntime", "onnx", "cupy"}
    for module in sorted(imported):
        if module in rosdep:
            assert rosdep[module] in depends, f"{module} imported but {rosdep[module]} missing"
        elif module in ros:
            assert module in depends, f"{module} imported but not an exec_depend"
    unknown = imported - set(rosdep) - ros - pip_only - {"lutfuse_ros"}
    stdlib = {m for m in unknown if m in __import__("sys").stdlib_module_names}
    assert unknown == stdlib, f"imports with no dependency entry: {sorted(unknown - stdlib)}"
    for launch_dep in ("launch", "launch_ros", "launch_xml"):
        assert launch_dep in depends


def test_share_files_are_found_in_the_checkout_and_installed_by_cmake():
    assert share_dir() == ROOT  # a source checkout uses its own files
    assert config_file("fusion.yaml") == ROOT / "config" / "fusion.yaml"
    for directory in ("launch", "config"):
        assert directory in re.search(r"install\(DIRECTORY launch config", CMAKE).group(0)
    assert "DESTINATION share/${PROJECT_NAME}/models" in CMAKE
    assert Path(ROOT / "lutfuse_ros" / "models" / "lutfuse_ros_default.npz").is_file()
