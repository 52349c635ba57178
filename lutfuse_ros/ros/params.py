"""The fusion node's parameters: declared once here, read into plain settings objects.

``config/fusion.yaml`` and the README's parameter table list the same names and defaults
(a test checks both against :data:`PARAMS`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IDENTITY = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    read_only: bool = False
    range: tuple[float, float] | None = None  # inclusive, for int and double parameters
    choices: tuple[str, ...] | None = None


PARAMS: tuple[Param, ...] = (
    Param("model_path", "", "Model file (.npz); empty: the package's default model. Setting it "
          "at run time loads, validates and swaps the model; a bad file is refused."),
    Param("fusion.exact", False, "Authors' exact forward pass (context network at full "
          "resolution, ~15x slower) instead of the fast mode."),
    Param("fusion.context_scale", 0.0625, "Fast mode: context network resolution, 1/k of the "
          "image (1, 1/2, 1/4, ...).", range=(0.015625, 1.0)),
    Param("fusion.backend", "numpy", "numpy (compiled CPU kernels) or torch.", read_only=True,
          choices=("numpy", "torch")),
    Param("fusion.device", "cpu", "torch device of the torch backend (cpu, cuda, cuda:1).",
          read_only=True),
    Param("fusion.context_engine", "auto", "What runs the context network of the numpy "
          "backend: auto (onnxruntime, else opencv, when the model file carries its ONNX graph;"
          " else torch), onnxruntime, opencv or torch. The ONNX engines need no torch.",
          choices=("auto", "onnxruntime", "opencv", "torch")),
    Param("fusion.precision", "fp32", "torch backend: fp16 runs the context network in half "
          "precision (GPUs); the lookup stays fp32.", read_only=True, choices=("fp32", "fp16")),
    Param("fusion.threads", 0, "CPU threads for fusion; 0: every core.", read_only=True,
          range=(0, 256)),
    Param("gradient.mode", "stable", "Visible-gradient range: stable (smoothed over frames: "
          "a bright edge entering the view no longer makes the whole frame jump; single images "
          "fuse as per_image) or per_image (the authors').",
          choices=("stable", "per_image")),
    Param("gradient.quantile", 1.0, "stable mode: quantile of the row maxima taken as the top "
          "of the range (1: the maximum, as the authors; lower ignores rare extreme edges but "
          "costs quality on the test sets).", range=(0.5, 1.0)),
    Param("gradient.smoothing", 0.1, "stable mode: weight of the newest frame in the range.",
          range=(0.001, 1.0)),
    Param("agc.mode", "percentile", "16-bit thermal to 8 bit: percentile (robust AGC, smoothed),"
          " fixed (agc.low..agc.high counts) or equalize. 8-bit thermal passes through.",
          choices=("percentile", "fixed", "equalize")),
    Param("agc.low", 0.0, "fixed mode: count mapped to 0.", range=(0.0, 65535.0)),
    Param("agc.high", 65535.0, "fixed mode: count mapped to 255.", range=(0.0, 65535.0)),
    Param("agc.percentile_low", 1.0, "percentile mode: lower percentile.", range=(0.0, 100.0)),
    Param("agc.percentile_high", 99.0, "percentile mode: upper percentile.",
          range=(0.0, 100.0)),
    Param("agc.smoothing", 0.2, "percentile mode: weight of the newest frame in the range.",
          range=(0.001, 1.0)),
    Param("registration.mode", "resize", "Thermal into the RGB frame: none, resize, "
          "crop_resize or homography.", choices=("none", "resize", "crop_resize", "homography")),
    Param("registration.homography", IDENTITY, "3x3 thermal->RGB pixel homography, row-major "
          "(homography mode)."),
    Param("registration.crop", [0, 0, 0, 0], "Thermal region x, y, width, height (crop_resize "
          "mode)."),
    Param("registration.calibration_file", "", "YAML calibration (mode, homography, crop, "
          "thermal_size); overrides the registration.* values above when set."),
    Param("sync.queue_size", 10, "Messages kept per topic while waiting for a partner.",
          range=(1, 100)),
    Param("sync.slop", 0.02, "Largest stamp difference of a pair (s).", range=(0.0, 1.0)),
    Param("sync.thermal_offset", 0.0, "Seconds added to thermal stamps before pairing.",
          range=(-1.0, 1.0)),
    Param("sync.reset_jump", 1.0, "A stamp this much older (s) than the newest clears the queues"
          " (bag loop, simulator reset).", range=(0.01, 3600.0)),
    Param("qos.input", "sensor_data", "Camera subscriptions: sensor_data (best effort) or "
          "reliable.", read_only=True, choices=("sensor_data", "reliable")),
    Param("qos.output", "default", "Fused publishers: default (reliable) or sensor_data.",
          read_only=True, choices=("default", "sensor_data")),
    Param("qos.depth", 5, "History depth of every subscription and publisher.", read_only=True,
          range=(1, 100)),
    Param("output_encoding", "", "Fused image encoding; empty: follow the visible input "
          "(rgba8/bgra8 become rgb8/bgr8).", choices=("", "rgb8", "bgr8", "mono8")),
    Param("publish_registered_thermal", False, "Also publish the 8-bit registered thermal "
          "image on thermal_registered/image (debugging the calibration).", read_only=True),
    Param("diagnostics.period", 0.5, "Seconds between /diagnostics messages.", read_only=True,
          range=(0.05, 10.0)),
    Param("diagnostics.input_timeout", 0.4, "A camera silent this long (s) is reported as an "
          "error (with the 0.5 s period: within 0.9 s).", range=(0.05, 60.0)),
    Param("status.period", 1.0, "Seconds between fused/status (FusionStatus) messages.",
          read_only=True, range=(0.05, 60.0)),
)
BY_NAME = {p.name: p for p in PARAMS}


def descriptor(p: Param):
    """The rclpy ``ParameterDescriptor`` of a parameter (type, range, choices, read-only)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    desc = p.description
    if p.choices:
        desc += " One of: " + ", ".join(repr(c) for c in p.choices) + "."
    d = ParameterDescriptor(name=p.name, description=desc, read_only=p.read_only)
    if p.range is not None:
        if isinstance(p.default, bool):
            pass
        elif isinstance(p.default, int):
            d.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]),
                                            step=0)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]),
                                                         to_value=float(p.range[1]), step=0.0)]
    return d


def check_choice(name: str, value: Any) -> str | None:
    """Reason a value is refused, or ``None`` (ranges are enforced by rclpy itself)."""
    p = BY_NAME.get(name)
    if p is not None and p.choices is not None and value not in p.choices:
        return f"{name} must be one of {p.choices}, got {value!r}"
    return None


def _yaml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_yaml_value(x) for x in v) + "]"
    return repr(v)


def to_yaml() -> str:
    """``config/fusion.yaml``: every parameter with its default and description."""
    import textwrap

    out = ["# lutfuse_ros fusion node parameters: every parameter with its default.",
           "# Generated from lutfuse_ros/ros/params.py (python -m lutfuse_ros.ros.params --yaml);",
           "# a test keeps the two equal. Copy this file to change values for a robot.",
           "/**:", "  ros__parameters:"]
    groups: dict[str, list[Param]] = {}
    for p in PARAMS:
        groups.setdefault(p.name.split(".")[0] if "." in p.name else "", []).append(p)
    for group, params in groups.items():
        indent = "    " if not group else "      "
        if group:
            out.append(f"    {group}:")
        for p in params:
            note = p.description + (" [read-only]" if p.read_only else "") + \
                (f" Range {p.range[0]:g}..{p.range[1]:g}." if p.range else "")
            out += [indent + "# " + line for line in textwrap.wrap(note, 92 - len(indent))]
            out.append(f"{indent}{p.name.split('.')[-1]}: {_yaml_value(p.default)}")
    return "\n".join(out) + "\n"


def to_markdown() -> str:
    """The README's parameter table."""
    rows = ["| parameter | default | description |", "|---|---|---|"]
    for p in PARAMS:
        note = p.description + (" Read-only." if p.read_only else "") + \
            (f" Range {p.range[0]:g}..{p.range[1]:g}." if p.range else "")
        rows.append(f"| `{p.name}` | `{_yaml_value(p.default)}` | {note} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    import sys

    print(to_markdown() if "--markdown" in sys.argv else to_yaml(), end="")
