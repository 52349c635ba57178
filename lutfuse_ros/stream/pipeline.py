"""One frame pair from messages to the fused array: decode -> preprocess -> fuse -> encode.

No rclpy here: the node, the bag reader and the tests run the very same path. Settings come
as a ``{parameter name: value}`` mapping with the names of :mod:`.params`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import cv2
import numpy as np

from ..core import FusionConfig, Fuser, load_model
from ..core.preprocess import (GradientNormaliser, Preprocessor, Registration, ThermalAGC,
                               parse_homography)
from .codec import THERMAL_ENCODINGS, VISIBLE_ENCODINGS, image_to_numpy
from ..ros.params import PARAMS

DEFAULTS: dict[str, Any] = {p.name: p.default for p in PARAMS}
_ORDER = {"rgb8": "rgb", "rgba8": "rgb", "bgr8": "bgr", "bgra8": "bgr", "mono8": "gray"}


def fusion_config(v: Mapping[str, Any]) -> FusionConfig:
    return FusionConfig(exact=bool(v["fusion.exact"]), context_scale=float(v["fusion.context_scale"]),
                        backend=v["fusion.backend"], device=v["fusion.device"],
                        threads=int(v["fusion.threads"]),
                        context_engine=v["fusion.context_engine"],
                        precision=v["fusion.precision"])


def make_fuser(v: Mapping[str, Any]) -> Fuser:
    """Load the model of ``model_path`` (empty: the default) and build the engine.

    Raises:
        ModelFormatError: the model file is missing or invalid (the message names it).
        ValueError: an invalid fusion setting.
    """
    model = load_model(v["model_path"] or None)
    return Fuser(model, fusion_config(v))


def make_preprocessor(v: Mapping[str, Any]) -> Preprocessor:
    """AGC, registration and gradient normaliser from settings (raises ValueError)."""
    agc = ThermalAGC(v["agc.mode"], low=float(v["agc.low"]), high=float(v["agc.high"]),
                     percentiles=(float(v["agc.percentile_low"]), float(v["agc.percentile_high"])),
                     smoothing=float(v["agc.smoothing"]))
    if v["registration.calibration_file"]:
        reg = Registration.from_yaml(v["registration.calibration_file"])
    else:
        crop = [int(c) for c in v["registration.crop"]]
        reg = Registration(mode=v["registration.mode"],
                           homography=parse_homography(v["registration.homography"]),
                           crop=tuple(crop) if v["registration.mode"] == "crop_resize" else None)
    grad = GradientNormaliser(v["gradient.mode"], quantile=float(v["gradient.quantile"]),
                              smoothing=float(v["gradient.smoothing"]))
    return Preprocessor(agc=agc, registration=reg, gradient=grad)


@dataclass
class FusedFrame:
    image: np.ndarray       # (H, W, 3) or (H, W) uint8, in ``encoding``
    encoding: str
    thermal_8bit: np.ndarray  # (H, W) uint8, registered into the RGB frame
    timings: dict[str, float] = field(default_factory=dict)


def convert_output(img: np.ndarray, order: str, encoding: str) -> tuple[np.ndarray, str]:
    """The fused image (in the visible input's channel ``order``) in the requested encoding;
    empty ``encoding`` keeps the input's colour type (rgba/bgra lose alpha)."""
    if not encoding:
        return img, {"rgb": "rgb8", "bgr": "bgr8", "gray": "mono8"}[order]
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
        ImageDecodeError, RegistrationError, FusionInputError: the pair cannot be fused; the
        message says why. State is unchanged for a pair that fails to decode.
    """

    def __init__(self, fuser: Fuser, pre: Preprocessor, output_encoding: str = "") -> None:
        self.fuser, self.pre, self.output_encoding = fuser, pre, output_encoding

    @classmethod
    def from_settings(cls, v: Mapping[str, Any]) -> "FramePipeline":
        return cls(make_fuser(v), make_preprocessor(v), v["output_encoding"])

    def __call__(self, thermal_msg, rgb_msg) -> FusedFrame:
        vis = image_to_numpy(rgb_msg, VISIBLE_ENCODINGS)
        raw = image_to_numpy(thermal_msg, THERMAL_ENCODINGS)
        order = _ORDER[rgb_msg.encoding]
        timings: dict[str, float] = {}
        ir8 = self.pre.thermal(raw, (vis.shape[1], vis.shape[0]))
        fused = self.fuser.fuse(ir8, vis, vis_order="rgb" if order == "gray" else order,
                                timings=timings, gradient=self.pre.gradient)
        image, encoding = convert_output(fused, order, self.output_encoding)
        return FusedFrame(image, encoding, ir8, timings)
