"""The fusion node's parameters: declared once here, read into typed settings.

Every default comes from the settings dataclasses of the core and the stream layer
(:class:`NodeSettings` nests them); this table adds what ROS needs: the description, the range,
read-only flags, choices (the core's own tuples) and what a change at run time rebuilds.
``config/fusion.yaml`` and the README's parameter tables are generated from it by
:mod:`.param_docs` (a test checks both, and that every declared name maps onto a settings
field). The recorder node's own parameters are declared here too (:data:`RECORDER_PARAMS`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..core.config import BACKENDS, GPU_KERNELS, PRECISIONS, RENAMED_BACKENDS, FusionConfig
from ..core.errors import ConfigError
from ..core.onnx_context import CONTEXT_ENGINES
from ..core.preprocess import (
    GRADIENT_MODES,
    REGISTRATION_MODES,
    AGCConfig,
    GradientConfig,
    PreprocessConfig,
    RegistrationConfig,
)
from ..core.thermal import AGC_MODES
from ..stream.pipeline import OUTPUT_ENCODINGS, PipelineConfig
from ..stream.sync import SyncConfig

# What a run-time change of a parameter rebuilds (read-only ones are never changed).
FUSER = "fuser"                   # model and forward pass: a new Fuser
PREPROCESSING = "preprocessing"   # AGC, registration, gradient range (their state restarts)
SYNC = "sync"                     # the sync policy (its queues restart)
OUTPUT = "output"                 # only the output step of the pipeline
LIVE = "live"                     # nothing: the value is read where it is used
REBUILDS = (FUSER, PREPROCESSING, SYNC, OUTPUT, LIVE)
QOS_INPUTS, QOS_OUTPUTS = ("sensor_data", "reliable"), ("default", "sensor_data")


@dataclass(frozen=True)
class QosSettings:
    """Quality of service: ``input`` of camera subscriptions, ``output`` of publishers."""

    input: str = "sensor_data"
    output: str = "default"
    depth: int = 5


@dataclass(frozen=True)
class DiagnosticsSettings:
    """``/diagnostics`` period, the silence (s) after which a camera is an error, and how
    often (s) the registration's fit is scored (0: never)."""

    period: float = 0.5
    input_timeout: float = 0.4
    registration_period: float = 5.0


@dataclass(frozen=True)
class CalibrationSettings:
    """The ``~/calibrate`` service: pairs to collect, seconds between them, output file."""

    pairs: int = 4
    interval: float = 0.5
    output_file: str = ""


@dataclass(frozen=True)
class StatusSettings:
    """``fused/status`` period (s)."""

    period: float = 1.0


@dataclass(frozen=True)
class NodeSettings:
    """Every setting of the fusion node, typed; parameter ``group.name`` is field
    ``group`` . ``name`` (``fusion.exact`` -> ``settings.fusion.exact``).

    Example:
        >>> s = NodeSettings.from_values({"fusion.context_scale": 0.25, "agc.mode": "fixed"})
        >>> s.fusion.context_scale, s.agc.mode, s.sync.slop
        (0.25, 'fixed', 0.02)
    """

    model_path: str = ""
    fusion: FusionConfig = field(default_factory=FusionConfig)
    gradient: GradientConfig = field(default_factory=GradientConfig)
    agc: AGCConfig = field(default_factory=AGCConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    qos: QosSettings = field(default_factory=QosSettings)
    output_encoding: str = ""
    publish_registered_thermal: bool = False
    diagnostics: DiagnosticsSettings = field(default_factory=DiagnosticsSettings)
    status: StatusSettings = field(default_factory=StatusSettings)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)

    @property
    def pipeline(self) -> PipelineConfig:
        """What the frame pipeline is built from."""
        return PipelineConfig(self.model_path, self.fusion,
                              PreprocessConfig(self.agc, self.registration, self.gradient),
                              self.output_encoding)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "NodeSettings":
        """Defaults with ``{parameter name: value}`` applied.

        Raises:
            KeyError: an unknown parameter name; ValueError: a value the settings refuse.
        """
        return cls().with_values(values)

    def with_values(self, values: Mapping[str, Any]) -> "NodeSettings":
        """A copy with ``{parameter name: value}`` applied (values as ROS gives them)."""
        groups: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        for name, value in values.items():
            group, _, key = name.rpartition(".")
            current = default_value(name)  # KeyError for an unknown name
            value = _like(current, value)
            if group:
                groups.setdefault(group, {})[key] = value
            else:
                top[name] = value
        for group, changes in groups.items():
            top[group] = dataclasses.replace(getattr(self, group), **changes)
        return dataclasses.replace(self, **top)


def read_params_file(path: str | Path) -> dict[str, Any]:
    """``{parameter name: value}`` of a ROS 2 parameter file (``config/fusion.yaml``, a
    robot's copy): the first node entry's ``ros__parameters``, groups joined with dots.

    Example:
        >>> from lutfuse_ros.resources import config_file
        >>> read_params_file(config_file("fusion.yaml"))["fusion.context_scale"]
        0.0625

    Raises:
        ConfigError: unreadable, or not a parameter file.
    """
    import yaml

    def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                out.update(flatten(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    try:
        tree = yaml.safe_load(Path(path).read_text())
        return flatten(next(iter(tree.values()))["ros__parameters"])
    except (OSError, yaml.YAMLError, AttributeError, KeyError, StopIteration,
            TypeError) as exc:
        raise ConfigError(f"{path}: not a ROS 2 parameter file of the fusion node "
                          f"({type(exc).__name__}: {exc})") from None


def default_value(name: str) -> Any:
    """The default of parameter ``name``, read from :class:`NodeSettings` (KeyError if none)."""
    obj: Any = _DEFAULTS
    for part in name.split("."):
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in
                                                             dataclasses.fields(obj)}:
            raise KeyError(f"no setting for parameter {name!r}")
        obj = getattr(obj, part)
    return obj


def _like(default: Any, value: Any) -> Any:
    """``value`` in the type of ``default`` (ROS lists become tuples; ints become floats)."""
    if isinstance(default, tuple):
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


_DEFAULTS = NodeSettings()


@dataclass(frozen=True)
class Param:
    """One declared parameter (its default comes from :class:`NodeSettings`).

    Attributes:
        name: ROS parameter name, ``group.field`` of :class:`NodeSettings`.
        description: for ``ros2 param describe`` and the generated YAML/README.
        rebuilds: what a run-time change rebuilds, one of :data:`REBUILDS`.
        read_only: fixed after start-up.
        range: inclusive (low, high) of an int or double parameter.
        choices: the allowed strings.
    """

    name: str
    description: str
    rebuilds: str = LIVE
    read_only: bool = False
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None

    @property
    def default(self) -> Any:
        """The default as a ROS parameter value (tuples become lists)."""
        value = default_value(self.name)
        return list(value) if isinstance(value, tuple) else value


PARAMS: tuple[Param, ...] = (
    Param("model_path", "Model file (.npz); empty: the package's default model. Setting it "
          "at run time loads, validates and swaps the model; a bad file is refused.",
          rebuilds=FUSER),
    Param("fusion.exact", "Authors' exact forward pass (context network at full "
          "resolution, ~15x slower) instead of the fast mode.", rebuilds=FUSER),
    Param("fusion.context_scale", "Fast mode: context network resolution, 1/k of the "
          "image (1, 1/2, 1/4, ...).", rebuilds=FUSER, range=(0.015625, 1.0)),
    Param("fusion.backend", "numba (compiled CPU kernels) or torch; numpy is numba's old, "
          "deprecated name.", read_only=True, choices=BACKENDS + tuple(RENAMED_BACKENDS)),
    Param("fusion.device", "torch device of the torch backend (cpu, cuda, cuda:1); a device "
          "this machine lacks stops the node at start with the reason.", read_only=True),
    Param("fusion.cuda_graph", "torch backend on a GPU: capture the pass as a CUDA graph "
          "per frame size (from the second frame) and replay it; false runs it eagerly.",
          read_only=True),
    Param("fusion.gpu_kernels", "torch backend on a GPU: cupy (three fused CUDA kernels, "
          "needs CuPy), torch (torch ops) or auto (cupy when CuPy sees the GPU).",
          read_only=True, choices=GPU_KERNELS),
    Param("fusion.context_engine", "What runs the context network of the numba "
          "backend: auto (onnxruntime, else opencv, when the model file carries its ONNX graph;"
          " else torch), onnxruntime, opencv or torch. The ONNX engines need no torch.",
          rebuilds=FUSER, choices=CONTEXT_ENGINES),
    Param("fusion.precision", "torch backend: fp16 runs the context network in half "
          "precision (GPUs); the lookup stays fp32.", read_only=True, choices=PRECISIONS),
    Param("fusion.threads", "CPU threads for fusion; 0: every core.", read_only=True,
          range=(0, 256)),
    Param("gradient.mode", "Visible-gradient range: stable (smoothed over frames: "
          "a bright edge entering the view no longer makes the whole frame jump; single images "
          "fuse as per_image) or per_image (the authors').", rebuilds=PREPROCESSING,
          choices=GRADIENT_MODES),
    Param("gradient.quantile", "stable mode: quantile of the row maxima taken as the top "
          "of the range (1: the maximum, as the authors; lower ignores rare extreme edges but "
          "costs quality on the test sets).", rebuilds=PREPROCESSING, range=(0.5, 1.0)),
    Param("gradient.smoothing", "stable mode: weight of the newest frame in the range.",
          rebuilds=PREPROCESSING, range=(0.001, 1.0)),
    Param("agc.mode", "16-bit thermal to 8 bit: plateau (plateau histogram equalisation, "
          "gain-limited, as thermal cameras do), percentile (linear between two percentiles),"
          " fixed (agc.low..agc.high counts) or equalize. All but fixed ignore stuck pixels, "
          "keep a hot object from darkening the rest and hold the mapping over a flat frame. "
          "8-bit thermal passes through.", rebuilds=PREPROCESSING, choices=AGC_MODES),
    Param("agc.low", "fixed mode: count mapped to 0.", rebuilds=PREPROCESSING,
          range=(0.0, 65535.0)),
    Param("agc.high", "fixed mode: count mapped to 255.", rebuilds=PREPROCESSING,
          range=(0.0, 65535.0)),
    Param("agc.percentile_low", "percentile mode: lower percentile.", rebuilds=PREPROCESSING,
          range=(0.0, 100.0)),
    Param("agc.percentile_high", "percentile mode: upper percentile.", rebuilds=PREPROCESSING,
          range=(0.0, 100.0)),
    Param("agc.plateau", "plateau mode: a count's histogram bin is clipped at this many "
          "times the mean occupied bin (lower: more linear, a large uniform area takes less "
          "of the grey range).", rebuilds=PREPROCESSING, range=(0.1, 100.0)),
    Param("agc.max_gain", "plateau and percentile modes: at most this many grey levels per "
          "count, so sensor noise of a flat scene is not blown up.", rebuilds=PREPROCESSING,
          range=(0.01, 256.0)),
    Param("agc.smoothing", "weight of the newest frame in the AGC mapping (range or table), "
          "all modes but fixed.", rebuilds=PREPROCESSING, range=(0.001, 1.0)),
    Param("registration.mode", "Thermal into the RGB frame: none, resize, "
          "crop_resize or homography.", rebuilds=PREPROCESSING, choices=REGISTRATION_MODES),
    Param("registration.homography", "3x3 thermal->RGB pixel homography, row-major "
          "(homography mode).", rebuilds=PREPROCESSING),
    Param("registration.crop", "Thermal region x, y, width, height (crop_resize "
          "mode).", rebuilds=PREPROCESSING),
    Param("registration.calibration_file", "YAML calibration (mode, homography, crop, "
          "thermal_size); overrides the registration.* values above when set.",
          rebuilds=PREPROCESSING),
    Param("sync.queue_size", "Messages kept per topic while waiting for a partner.",
          rebuilds=SYNC, range=(1, 100)),
    Param("sync.slop", "Largest stamp difference of a pair (s).", rebuilds=SYNC,
          range=(0.0, 1.0)),
    Param("sync.thermal_offset", "Seconds added to thermal stamps before pairing.",
          rebuilds=SYNC, range=(-1.0, 1.0)),
    Param("sync.reset_jump", "A stamp this much older (s) than the newest clears the queues"
          " (bag loop, simulator reset).", rebuilds=SYNC, range=(0.01, 3600.0)),
    Param("qos.input", "Camera subscriptions: sensor_data (best effort) or "
          "reliable.", read_only=True, choices=QOS_INPUTS),
    Param("qos.output", "Fused publishers: default (reliable) or sensor_data.",
          read_only=True, choices=QOS_OUTPUTS),
    Param("qos.depth", "History depth of every subscription and publisher.", read_only=True,
          range=(1, 100)),
    Param("output_encoding", "Fused image encoding; empty: follow the visible input "
          "(rgba8/bgra8 become rgb8/bgr8).", rebuilds=OUTPUT, choices=OUTPUT_ENCODINGS),
    Param("publish_registered_thermal", "Also publish the 8-bit registered thermal "
          "image on thermal_registered/image (debugging the calibration).", read_only=True),
    Param("diagnostics.period", "Seconds between /diagnostics messages.", read_only=True,
          range=(0.05, 10.0)),
    Param("diagnostics.input_timeout", "A camera silent this long (s) is reported as an "
          "error (with the 0.5 s period: within 0.9 s).", range=(0.05, 60.0)),
    Param("diagnostics.registration_period", "Seconds between checks of how well the "
          "registered thermal fits the visible image (the score of lutfuse calibrate, ~40 ms "
          "per check at 640x480 on a thread of its own); it warns below half the calibrated "
          "score. 0: off.",
          range=(0.0, 3600.0)),
    Param("status.period", "Seconds between fused/status (FusionStatus) messages.",
          read_only=True, range=(0.05, 60.0)),
    Param("calibration.pairs", "Pairs the ~/calibrate service (std_srvs/Trigger) collects "
          "before it estimates the thermal->RGB homography.", range=(1, 20)),
    Param("calibration.interval", "Seconds between the pairs it collects (move the rig or "
          "wait for the scene to change between them).", range=(0.0, 60.0)),
    Param("calibration.output_file", "Calibration file the service writes (and then loads "
          "through registration.calibration_file); empty: $ROS_HOME/lutfuse_calibration.yaml"
          " (~/.ros when ROS_HOME is not set)."),
)
BY_NAME = {p.name: p for p in PARAMS}


# -- the recorder node ------------------------------------------------------------------------
STORAGES = ("mcap", "sqlite3")


@dataclass(frozen=True)
class RecorderSettings:
    """The recorder node's own settings (it also declares the fusion node's, see
    :data:`PARAMS`, so one params file serves both).

    Example:
        >>> RecorderSettings.from_values({"bag_path": "/data/b1", "max_pairs": 50}).max_pairs
        50
    """

    bag_path: str = ""
    storage: str = "mcap"
    rgb_compressed: bool = False
    thermal_compressed: bool = False
    min_interval: float = 0.0
    min_change: float = 0.0
    max_pairs: int = 0
    max_duration: float = 0.0
    max_bytes: int = 0
    split_bytes: int = 0
    split_duration: float = 0.0
    record_status: bool = True

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "RecorderSettings":
        """Defaults with ``{parameter name: value}`` applied (unknown names: TypeError)."""
        return dataclasses.replace(cls(), **values)


@dataclass(frozen=True)
class RecorderParam(Param):
    """A parameter of the recorder node; its default comes from :class:`RecorderSettings`."""

    @property
    def default(self) -> Any:
        return getattr(RecorderSettings(), self.name)


RECORDER_PARAMS: tuple[RecorderParam, ...] = (
    RecorderParam("bag_path", "Folder of the new bag (required; must not exist yet).",
                  read_only=True),
    RecorderParam("storage", "rosbag2 storage: mcap or sqlite3.", read_only=True,
                  choices=STORAGES),
    RecorderParam("rgb_compressed", "Subscribe rgb/image/compressed instead of rgb/image.",
                  read_only=True),
    RecorderParam("thermal_compressed", "Subscribe thermal/image/compressed (e.g. 16-bit "
                  "PNG) instead of thermal/image.", read_only=True),
    RecorderParam("min_interval", "Seconds between recorded pairs at least (0: every pair).",
                  read_only=True, range=(0.0, 3600.0)),
    RecorderParam("min_change", "Skip a pair whose RGB image differs from the last recorded "
                  "one by less than this mean grey level at 1/8 size (a robot standing "
                  "still); 0: off.", read_only=True, range=(0.0, 255.0)),
    RecorderParam("max_pairs", "Stop after this many pairs (0: no limit).", read_only=True,
                  range=(0, 10_000_000)),
    RecorderParam("max_duration", "Stop after this many seconds (0: no limit).",
                  read_only=True, range=(0.0, 1e7)),
    RecorderParam("max_bytes", "Stop once the bag holds this many bytes of images (0: no "
                  "limit).", read_only=True, range=(0, 2 ** 62)),
    RecorderParam("split_bytes", "Start a new piece once the open one holds this many bytes "
                  "of messages (0: one bag). bag_path is then a folder of bags NAME_0000, "
                  "_0001, ... (ros2 bag record --max-bag-size).", read_only=True,
                  range=(0, 2 ** 62)),
    RecorderParam("split_duration", "Start a new piece once the open one spans this many "
                  "seconds of message stamps (0: one bag); as split_bytes "
                  "(ros2 bag record --max-bag-duration).", read_only=True, range=(0.0, 1e7)),
    RecorderParam("record_status", "Also record the fusion node's fused/status (where the "
                  "messages were built by colcon).", read_only=True),
)
RECORDER_BY_NAME = {p.name: p for p in RECORDER_PARAMS}


def rebuilt_by(names: set[str] | list[str]) -> set[str]:
    """What changing the parameters ``names`` rebuilds (a subset of :data:`REBUILDS`).

    Example:
        >>> sorted(rebuilt_by(["model_path", "agc.mode", "diagnostics.input_timeout"]))
        ['fuser', 'live', 'preprocessing']
    """
    return {BY_NAME[n].rebuilds for n in names if n in BY_NAME}


def descriptor(p: Param) -> "ParameterDescriptor":  # noqa: F821 - imported lazily
    """The rclpy ``ParameterDescriptor`` of a parameter (type, range, choices, read-only)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    desc = p.description
    if p.choices:
        desc += " One of: " + ", ".join(repr(c) for c in p.choices) + "."
    d = ParameterDescriptor(name=p.name, description=desc, read_only=p.read_only)
    if p.range is not None and not isinstance(p.default, bool):
        if isinstance(p.default, int):
            d.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]),
                                            step=0)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]),
                                                         to_value=float(p.range[1]), step=0.0)]
    return d


def check_choice(name: str, value: Any,
                 params: Mapping[str, Param] | None = None) -> str | None:
    """Reason a value is refused, or ``None`` (ranges are enforced by rclpy itself);
    ``params``: the table it is declared in (default: the fusion node's)."""
    p = (BY_NAME if params is None else params).get(name)
    if p is not None and p.choices is not None and value not in p.choices:
        return f"{name} must be one of {p.choices}, got {value!r}"
    return None
