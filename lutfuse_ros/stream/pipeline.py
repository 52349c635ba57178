"""One frame pair from messages to the fused array: decode -> preprocess -> fuse -> encode.

No rclpy here: the node, the bag reader and the tests run the very same path. Settings come
typed (:class:`PipelineConfig`: the core's dataclasses), never as dicts of parameter names.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..core import Fuser, FusionConfig, load_model
from ..core.errors import ConfigError
from ..core.geometry import Size
from ..core.preprocess import AGCConfig, PreprocessConfig, Preprocessor
from ..core.timing import StageTimer
from .codec import THERMAL_ENCODINGS, VISIBLE_ENCODINGS, ImageMessage, image_to_numpy

OUTPUT_ENCODINGS = ("", "rgb8", "bgr8", "mono8")  # "": follow the visible input
_ORDER = {"rgb8": "rgb", "rgba8": "rgb", "bgr8": "bgr", "bgra8": "bgr", "mono8": "gray"}
# an order's own output encoding: the same map read backwards (rgba8/bgra8 lose alpha)
_ENCODING = {order: enc for enc, order in _ORDER.items() if enc in OUTPUT_ENCODINGS}


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a :class:`FramePipeline` is built from.

    Attributes:
        model_path: model file (.npz); ``""`` loads the package's default model.
        fusion: forward-pass settings.
        preprocess: AGC, registration and gradient-range settings.
        output_encoding: one of :data:`OUTPUT_ENCODINGS`.
    """

    model_path: str = ""
    fusion: FusionConfig = field(default_factory=FusionConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    output_encoding: str = ""

    def __post_init__(self) -> None:
        if self.output_encoding not in OUTPUT_ENCODINGS:
            raise ConfigError(f"output_encoding must be one of {OUTPUT_ENCODINGS}, got "
                             f"{self.output_encoding!r}")


def make_fuser(model_path: str, config: FusionConfig) -> Fuser:
    """Load the model of ``model_path`` (empty: the default) and build the engine.

    Raises:
        ModelFormatError: the model file is missing or invalid (the message names it).
        ValueError: an invalid fusion setting.
    """
    return Fuser(load_model(model_path or None), config)


def agc_mismatch(model_metadata: dict, agc: AGCConfig) -> str | None:
    """Why a model may see other 16-bit thermal inputs than it was trained on, or ``None``.

    A model trained from bags or 16-bit folders records the AGC its thermal frames went
    through (``metadata["training"]["agc"]``); a node mapping 16-bit frames otherwise feeds it
    a different look of the IR.

    Example:
        >>> agc_mismatch({"training": {"agc": {"mode": "plateau"}}}, AGCConfig(mode="plateau"))
        >>> agc_mismatch({"training": {"agc": {"mode": "plateau"}}}, AGCConfig(mode="fixed"))
        "model trained with agc.mode 'plateau', this node maps 16-bit thermal with 'fixed'"
    """
    trained = (model_metadata.get("training") or {}).get("agc")
    if not isinstance(trained, dict) or trained.get("mode") in (None, agc.mode):
        return None
    return (f"model trained with agc.mode {trained['mode']!r}, this node maps 16-bit thermal "
            f"with {agc.mode!r}")


@dataclass
class FusedFrame:
    """The result of one pair.

    Attributes:
        image: :math:`(H, W, 3)` or :math:`(H, W)` uint8, in ``encoding``.
        encoding: a sensor_msgs encoding (``rgb8``, ``bgr8``, ``mono8``).
        thermal_8bit: :math:`(H, W)` uint8, the thermal image registered into the RGB frame.
        visible: the decoded visible image (a view of the message's buffer).
        thermal_unregistered: :math:`(h, w)` uint8 thermal after AGC, before registration
            (what a calibration is estimated from).
        timings: milliseconds per stage: decode, agc, registration, the fusion's own
            (colour, gradient, context, lookup+to_rgb) and output conversion.
    """

    image: np.ndarray
    encoding: str
    thermal_8bit: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    visible: np.ndarray | None = None
    thermal_unregistered: np.ndarray | None = None


def convert_output(img: np.ndarray, order: str, encoding: str) -> tuple[np.ndarray, str]:
    """The fused image (in the visible input's channel ``order``) in the requested encoding;
    empty ``encoding`` keeps the input's colour type (rgba/bgra lose alpha)."""
    if not encoding:
        return img, _ENCODING[order]
    if encoding == "mono8":
        if order == "gray":
            return img, encoding
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY if order == "rgb" else cv2.COLOR_BGR2GRAY), \
            encoding
    want = encoding[:3]
    if order == "gray":
        return np.repeat(img[:, :, None], 3, axis=2), encoding
    if want == order:
        return img, encoding
    return np.ascontiguousarray(img[:, :, ::-1]), encoding


class FramePipeline:
    """Messages of a synchronised pair -> :class:`FusedFrame`.

    Args:
        fuser: the fusion engine (model + forward pass settings).
        pre: the stream's preprocessing state (AGC, registration, gradient normaliser).
        output_encoding: ``""`` (follow the visible input), ``rgb8``, ``bgr8`` or ``mono8``.

    Raises (from :meth:`__call__`):
        InputError (ImageDecodeError, ThermalInputError, RegistrationError,
        FusionInputError): the pair cannot be fused; the message says why. State is
        unchanged for a pair that fails to decode.

    Example:
        >>> from types import SimpleNamespace
        >>> from lutfuse_ros.core.synthetic import synthetic_pair
        >>> def message(a, encoding):   # anything shaped like sensor_msgs/Image
        ...     return SimpleNamespace(encoding=encoding, height=a.shape[0], width=a.shape[1],
        ...                            step=a.strides[0], is_bigendian=0, data=a.tobytes())
        >>> ir, rgb = synthetic_pair(shape=(240, 320))
        >>> pipeline = FramePipeline.from_config(PipelineConfig())
        >>> frame = pipeline(message(ir[::2, ::2].copy(), "mono8"),   # 160x120 thermal
        ...                  message(rgb, "rgb8"))
        >>> frame.image.shape, frame.encoding
        ((240, 320, 3), 'rgb8')
    """

    def __init__(self, fuser: Fuser, pre: Preprocessor, output_encoding: str = "") -> None:
        self.fuser, self.pre, self.output_encoding = fuser, pre, output_encoding

    @classmethod
    def from_config(cls, config: PipelineConfig) -> "FramePipeline":
        """Load the model and build the preprocessing (raises ModelFormatError, ValueError)."""
        return cls(make_fuser(config.model_path, config.fusion),
                   Preprocessor.from_config(config.preprocess), config.output_encoding)

    def __call__(self, thermal_msg: ImageMessage, rgb_msg: ImageMessage) -> FusedFrame:
        """Decode, preprocess and fuse one synchronised pair of ``sensor_msgs/Image``-like
        messages (anything with ``encoding``, ``height``, ``width``, ``step``,
        ``is_bigendian`` and ``data``)."""
        timings: dict[str, float] = {}
        stage = StageTimer(timings).stage
        with stage("decode"):
            vis = image_to_numpy(rgb_msg, VISIBLE_ENCODINGS)
            raw = image_to_numpy(thermal_msg, THERMAL_ENCODINGS)
            order = _ORDER[rgb_msg.encoding]
        return self.fuse_arrays(raw, vis, order, timings)

    def fuse_arrays(self, raw: np.ndarray, vis: np.ndarray, order: str = "rgb",
                    timings: dict[str, float] | None = None) -> FusedFrame:
        """A decoded pair through the same steps (AGC, registration, fusion with the
        stream's gradient range, output encoding): what ``lutfuse fuse`` runs on files.

        Args:
            raw: :math:`(H_t, W_t)` uint16 counts or uint8 thermal image.
            vis: :math:`(H, W, 3|4)` uint8 in ``order`` (``"rgb"`` or ``"bgr"``), or
                :math:`(H, W)` uint8 with ``order="gray"``.
        """
        timings = {} if timings is None else timings
        stage = StageTimer(timings).stage
        with stage("agc"):  # = pre.thermal(), in two steps to keep the unregistered image
            agc8 = self.pre.agc(raw)
        with stage("registration"):
            ir8 = self.pre.registration(agc8, Size.of(vis))
        fused = self.fuser.fuse(ir8, vis, vis_order="rgb" if order == "gray" else order,
                                timings=timings, gradient=self.pre.gradient)
        with stage("output"):
            image, encoding = convert_output(fused, order, self.output_encoding)
        return FusedFrame(image, encoding, ir8, timings, vis, agc8)
