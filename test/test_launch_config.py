"""Launch files and config agree with the node: executables, parameters, files."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from importlib.metadata import entry_points

import pytest

from lutfuse_ros.ros.param_docs import to_markdown, to_yaml
from lutfuse_ros.ros.params import (
    BY_NAME,
    PARAMS,
    RECORDER_BY_NAME,
    RECORDER_PARAMS,
    read_params_file,
)

from conftest import ROOT

CONSOLE_SCRIPTS = {ep.name for ep in entry_points(group="console_scripts")
                   if ep.value.startswith("lutfuse_ros")}


def test_fusion_yaml_lists_every_parameter_with_its_default():
    text = (ROOT / "config" / "fusion.yaml").read_text()
    assert text == to_yaml(), "regenerate: python -m lutfuse_ros.ros.param_docs --yaml"
    values = read_params_file(ROOT / "config" / "fusion.yaml")
    assert values == {p.name: p.default for p in PARAMS}


def test_readme_parameter_table_matches_the_declaration():
    assert to_markdown() in (ROOT / "README.md").read_text(), \
        "regenerate: python -m lutfuse_ros.ros.param_docs --markdown"
    assert to_markdown(RECORDER_PARAMS) in (ROOT / "README.md").read_text(), \
        "regenerate: python -m lutfuse_ros.ros.param_docs --markdown --recorder"


def test_xml_launch_file_names_real_executables_parameters_and_files():
    root = ET.parse(ROOT / "launch" / "fusion.launch.xml").getroot()
    args = {a.get("name"): a.get("default") for a in root.iter("arg")}
    assert {"namespace", "thermal_topic", "rgb_topic", "params_file", "model"} <= set(args)
    used = set(re.findall(r"\$\(var (\w+)\)", ET.tostring(root, encoding="unicode")))
    assert used <= set(args), f"undeclared launch arguments: {used - set(args)}"
    nodes = list(root.iter("node"))
    assert nodes
    for node in nodes:
        assert node.get("pkg") == "lutfuse_ros"
        assert node.get("exec") in CONSOLE_SCRIPTS
        for p in node.iter("param"):
            assert p.get("from") or p.get("name") in BY_NAME, p.attrib
        assert {r.get("from") for r in node.iter("remap")} == \
            {"thermal/image", "rgb/image", "rgb/camera_info"}
    # Files named through find-pkg-share exist in the package's share layout (setup.py).
    for default in args.values():
        m = re.match(r"\$\(find-pkg-share lutfuse_ros\)/(.+)", default or "")
        if m:
            assert (ROOT / m.group(1)).is_file(), m.group(1)
    envs = {e.get("name") for e in root.iter("set_env")}
    assert {"FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"} <= envs


def test_record_launch_file_names_the_recorder_and_declared_arguments():
    root = ET.parse(ROOT / "launch" / "record.launch.xml").getroot()
    args = {a.get("name") for a in root.iter("arg")}
    used = set(re.findall(r"\$\(var (\w+)\)", ET.tostring(root, encoding="unicode")))
    assert used <= args
    recorder_params = set(RECORDER_BY_NAME)
    for node in root.iter("node"):
        assert node.get("exec") == "recorder_node" and "recorder_node" in CONSOLE_SCRIPTS
        for p in node.iter("param"):
            assert p.get("from") or p.get("name") in recorder_params | set(BY_NAME)


def test_python_launch_file_builds():
    pytest.importorskip("launch_ros", reason="launch_ros is not installable here (a robot has it)")
    import importlib.util

    spec = importlib.util.spec_from_file_location("fusion_launch",
                                                  ROOT / "launch" / "fusion.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert any(type(e).__name__ == "Node" for e in description.entities)


@pytest.mark.parametrize("distro", [None, "", "humble", "jazzy", "kilted"])
@pytest.mark.parametrize("name", ["fusion.launch.xml", "record.launch.xml"])
def test_xml_launch_files_set_the_old_dds_variable_only_where_needed(name, distro, monkeypatch):
    """The Fast DDS 2 variable where ROS_DISTRO is unset, empty or Humble/Iron/Jazzy; the
    condition must evaluate (a pip install has no ROS_DISTRO)."""
    pytest.importorskip("launch_xml", reason="the launch frontend is not installable here")
    from launch.actions import SetEnvironmentVariable
    from launch.frontend import Parser

    from launch import LaunchContext

    if distro is None:
        monkeypatch.delenv("ROS_DISTRO", raising=False)
    else:
        monkeypatch.setenv("ROS_DISTRO", distro)
    entity, parser = Parser.load(str(ROOT / "launch" / name))
    description = parser.parse_description(entity)
    context = LaunchContext()  # the condition reads the environment only
    old = [a for a in description.entities if isinstance(a, SetEnvironmentVariable)
           and a.name[0].text == "FASTRTPS_DEFAULT_PROFILES_FILE"]
    assert len(old) == 1
    assert old[0].condition.evaluate(context) == (distro in (None, "", "humble", "jazzy"))


def test_dds_profiles_are_valid_xml_with_big_shared_memory_segments():
    for name in ("fastdds_shm.xml", "fastdds_shm_localhost.xml"):
        root = ET.parse(ROOT / "config" / name).getroot()
        ns = {"d": "http://www.eprosima.com"}
        sizes = [int(e.text) for e in root.iterfind(".//d:segment_size", ns)]
        assert sizes and min(sizes) >= 8 * 1024 * 1024
    local = (ROOT / "config" / "fastdds_shm_localhost.xml").read_text()
    assert "<address>127.0.0.1</address>" in local
