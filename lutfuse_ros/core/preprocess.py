"""Per-stream preprocessing shared by the ROS node and the training data loader.

A frame pair goes raw thermal -> :class:`ThermalAGC` (16-bit -> 8-bit, smoothed over time)
-> :class:`Registration` (into the RGB camera's pixel grid) -> fusion, whose visible-gradient
range comes from a :class:`GradientNormaliser`. Each class holds the state that lives across
frames, so a node and a bag reader that use the same objects feed the model the same inputs.
:class:`Preprocessor` bundles the three.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from . import agc_kernels
from .errors import ConfigError, InputError
from .fusion_kernels import writable
from .geometry import Size
from .thermal import (
    AGC_MODES,
    TAIL_FENCE,
    TAIL_LARGEST,
    TAIL_SHARE,
    check_thermal,
    compress_tails,
    equalization_table,
    histogram_percentiles,
    range_table,
)

REGISTRATION_MODES = ("none", "resize", "crop_resize", "homography")
GRADIENT_MODES = ("per_image", "stable")
IDENTITY_HOMOGRAPHY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


class RegistrationError(InputError):
    """A thermal frame does not fit the registration (size, calibration file)."""


# -- settings: the one place of every preprocessing default --------------------------------
@dataclass(frozen=True)
class AGCConfig:
    """Settings of :class:`ThermalAGC` (the node's ``agc.*`` parameters).

    Attributes:
        mode: one of :data:`~lutfuse_ros.core.thermal.AGC_MODES`.
        low, high: count range of ``"fixed"`` mode.
        percentile_low, percentile_high: percentiles of ``"percentile"`` mode.
        plateau: ``"plateau"`` mode: a count's histogram bin is clipped at this many times
            the mean occupied bin.
        max_gain: ``"percentile"`` and ``"plateau"``: at most this many grey levels per count,
            so sensor noise in a flat scene is not stretched over the whole range.
        smoothing: weight of the newest frame in the running mapping, in (0, 1].
    """

    mode: str = "plateau"
    low: float = 0.0
    high: float = 65535.0
    percentile_low: float = 1.0
    percentile_high: float = 99.0
    plateau: float = 1.0
    max_gain: float = 1.0
    smoothing: float = 0.2


@dataclass(frozen=True)
class RegistrationConfig:
    """Settings of :class:`Registration` (the node's ``registration.*`` parameters).

    Attributes:
        mode: one of :data:`REGISTRATION_MODES`.
        homography: 9 numbers, row-major 3x3 thermal -> RGB pixel map (``"homography"``).
        crop: thermal region (x, y, width, height) of ``"crop_resize"``.
        calibration_file: YAML calibration; when set it replaces the three fields above.
    """

    mode: str = "resize"
    homography: tuple[float, ...] = IDENTITY_HOMOGRAPHY
    crop: tuple[int, ...] = (0, 0, 0, 0)
    calibration_file: str = ""


@dataclass(frozen=True)
class GradientConfig:
    """Settings of :class:`GradientNormaliser` (the node's ``gradient.*`` parameters).

    Attributes:
        mode: one of :data:`GRADIENT_MODES`.
        quantile: quantile of the row maxima taken as the top of the range, in (0, 1].
        smoothing: weight of the newest frame, in (0, 1].
    """

    mode: str = "stable"
    quantile: float = 1.0
    smoothing: float = 0.1


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of a whole :class:`Preprocessor`.

    Example:
        >>> cfg = PreprocessConfig(agc=AGCConfig(mode="fixed", low=20000, high=30000))
        >>> Preprocessor.from_config(cfg).agc.range
        (20000, 30000)
    """

    agc: AGCConfig = field(default_factory=AGCConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    gradient: GradientConfig = field(default_factory=GradientConfig)


def _smooth(running: tuple[float, float] | None, new: tuple[float, float],
            weight: float) -> tuple[float, float]:
    """Exponential moving average of a (low, high) range; the first frame starts it."""
    if running is None:
        return new
    return (running[0] + weight * (new[0] - running[0]),
            running[1] + weight * (new[1] - running[1]))


# -- thermal AGC ---------------------------------------------------------------------------
class ThermalAGC:
    """16-bit thermal counts to the 8-bit IR input, with a mapping smoothed over time.

    Modes (:data:`~lutfuse_ros.core.thermal.AGC_MODES`):

    - ``"fixed"``: ``low``..``high`` counts, linear.
    - ``"percentile"``: linear between two percentiles of the frame, at most ``max_gain``
      levels per count.
    - ``"plateau"``: plateau histogram equalisation (what thermal cameras' own AGC does): each
      count's bin clipped at ``plateau`` times the mean occupied bin, so a large uniform
      region cannot take over the mapping; at most ``max_gain`` levels per count.
    - ``"equalize"``: plain histogram equalisation.

    In every mode but ``fixed`` the histogram leaves out stuck pixels' codes (0, 65535) and
    gives counts far outside the bulk of the scene (a hot object entering the view) at most
    0.5 % of its weight (:func:`~lutfuse_ros.core.thermal.compress_tails`), so the rest of the
    scene keeps its grey levels; the mapping (the range, or the equalisation table) is
    smoothed over frames, and a flat frame (a camera's flat-field correction, the shutter
    closed) or a repeated one leaves it unchanged.

    Args:
        mode: see above.
        low, high: the count range of ``"fixed"`` mode.
        percentiles: lower and upper percentile of ``"percentile"`` mode.
        plateau: bin clip of ``"plateau"`` mode, in mean occupied bins (> 0).
        max_gain: grey levels per count at most (> 0), ``"percentile"`` and ``"plateau"``.
        smoothing: weight of the newest frame in the running mapping, in (0, 1]; 1 follows
            every frame (flickers), 0.1 settles in ~10 frames (a third of a second at 30 Hz).
        flat_span: a frame whose 1-99 % range spans fewer counts is flat.

    8-bit thermal input (``mono8``) is already a display image and passes through unchanged.

    Example:
        >>> agc = ThermalAGC("percentile", smoothing=0.2)
        >>> frame = np.full((4, 6), 20000, np.uint16); frame[:, 3:] = 24000
        >>> agc(frame)                            # (H, W) uint16 -> (H, W) uint8
        array([[  0,   0,   0, 255, 255, 255],
               [  0,   0,   0, 255, 255, 255],
               [  0,   0,   0, 255, 255, 255],
               [  0,   0,   0, 255, 255, 255]], dtype=uint8)
        >>> agc.range
        (20000.0, 24000.0)
    """

    def __init__(self, mode: str = AGCConfig.mode, low: float = AGCConfig.low,
                 high: float = AGCConfig.high,
                 percentiles: tuple[float, float] = (AGCConfig.percentile_low,
                                                     AGCConfig.percentile_high),
                 plateau: float = AGCConfig.plateau, max_gain: float = AGCConfig.max_gain,
                 smoothing: float = AGCConfig.smoothing, flat_span: float = 4.0) -> None:
        if mode not in AGC_MODES:
            raise ConfigError(f"agc mode must be one of {AGC_MODES}, got {mode!r}")
        if mode == "fixed" and not high > low:
            raise ConfigError(f"fixed agc needs high > low, got low={low} high={high}")
        if not 0.0 <= percentiles[0] < percentiles[1] <= 100.0:
            raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        if not 0.0 < smoothing <= 1.0:
            raise ConfigError(f"smoothing must be in (0, 1], got {smoothing}")
        if not (plateau > 0 and max_gain > 0):
            raise ConfigError(f"plateau and max_gain must be > 0, got {plateau}, {max_gain}")
        self.mode, self.percentiles, self.smoothing = mode, tuple(percentiles), smoothing
        self.plateau, self.max_gain, self.flat_span = plateau, max_gain, flat_span
        # the count range mapped to 0..255 (for the table modes: where the table leaves 0
        # and reaches 255), reported in the node's status
        self.range: tuple[float, float] | None = (low, high) if mode == "fixed" else None
        self.frozen_frames = 0  # frames that left the mapping unchanged (flat or repeated)
        self._last: np.ndarray | None = None
        self._table: np.ndarray | None = None  # float32 (65536,) of the table modes
        self._lut: np.ndarray | None = None    # uint8 table applied to the frames
        self._lut_key: tuple[float, float] | None = None
        self._hist = np.zeros(65536, np.int64)  # the newest frame's, reused

    @classmethod
    def from_config(cls, config: AGCConfig) -> "ThermalAGC":
        return cls(config.mode, low=config.low, high=config.high,
                   percentiles=(config.percentile_low, config.percentile_high),
                   plateau=config.plateau, max_gain=config.max_gain,
                   smoothing=config.smoothing)

    @property
    def levels(self) -> tuple[int, int] | None:
        """The lowest and highest grey level of the current mapping (a gain limit can keep
        them off 0 and 255); ``None`` before the first 16-bit frame."""
        if self._lut is None:
            return None
        return int(self._lut.min()), int(self._lut.max())

    def reset(self) -> None:
        """Forget the running mapping (a new camera, a bag that loops)."""
        if self.mode != "fixed":
            self.range, self._table, self._lut_key = None, None, None
        self._last = None

    def __call__(self, img: np.ndarray) -> np.ndarray:
        """(H, W) uint16 or uint8 -> (H, W) uint8."""
        check_thermal(img)
        if img.dtype == np.uint8:
            return img
        img = writable(img)
        if self.mode != "fixed":
            self._update(img)
        if self.mode in ("fixed", "percentile"):
            # a 65,536-entry table, rebuilt only when the (rounded) range moves
            key = (round(self.range[0], 1), round(self.range[1], 1))
            if self._lut is None or self._lut_key != key:
                self._lut, self._lut_key = range_table(*key), key
        out = np.empty(img.shape, np.uint8)
        agc_kernels.apply_table(self._lut, img, out)  # = self._lut[img], ~2.5x faster
        return out

    def _update(self, img: np.ndarray) -> None:
        # compiled calls (no GIL: the node's executor thread runs Python meanwhile) on the
        # whole frame; the maths between them runs on the occupied counts only
        if self._last is None or self._last.shape != img.shape:
            self._last, repeated = img.copy(), False
        else:
            repeated = agc_kernels.same_else_keep(img, self._last)
        first, last = agc_kernels.count_histogram_u16(img, 2, self._hist)
        window = self._hist[first:last + 1]
        lo, hi = (first + v for v in histogram_percentiles(window, (1.0, 99.0)))
        flat = repeated or hi - lo < self.flat_span
        if flat:
            self.frozen_frames += 1
            if self.range is not None:  # keep the mapping we have
                return
        weight = 1.0 if self.range is None else self.smoothing
        if self.mode == "percentile":
            # a hot object's tail keeps less weight than the percentiles leave out, so the
            # range stays on the scene and the object saturates (a linear map cannot have both)
            share = 0.5 * min(self.percentiles[0], 100.0 - self.percentiles[1]) / 100.0
            lo, hi = (first + v for v in histogram_percentiles(
                compress_tails(window, share=share), self.percentiles))
            half = max(hi - lo, 255.0 / self.max_gain, self.flat_span) / 2.0
            mid = (lo + hi) / 2.0
            self.range = _smooth(self.range, (mid - half, mid + half), weight)
            return
        # the frame's table on the occupied counts (flat beyond them), then one pass that
        # smooths it into the running table and makes the uint8 one (= thermal.blend_table,
        # thermal.table_span; tested)
        if self.mode == "plateau" and last > first:  # = thermal.plateau_table, compiled
            start, table = first, agc_kernels.plateau_window_table(
                window, self.plateau, self.max_gain, TAIL_FENCE, TAIL_SHARE, TAIL_LARGEST)
        elif self.mode == "plateau":
            start, table = 0, np.full(1, 127.5, np.float32)
        else:
            start, table = 0, equalization_table(compress_tails(self._hist))
        new = self._table is None
        if new:
            self._table, self._lut = np.empty(65536, np.float32), np.empty(65536, np.uint8)
        span = agc_kernels.blend_window_table(self._table, table, start, weight, new, self._lut)
        self.range = (float(span[0]), float(span[1])) if span[0] >= 0 else (lo, hi)


def thermal_to_8bit(img: np.ndarray, mode: str = AGCConfig.mode, low: float = AGCConfig.low,
                    high: float = AGCConfig.high,
                    percentiles: tuple[float, float] = (AGCConfig.percentile_low,
                                                        AGCConfig.percentile_high),
                    plateau: float = AGCConfig.plateau,
                    max_gain: float = AGCConfig.max_gain) -> np.ndarray:
    """One thermal frame to the 8-bit IR input: the stream's mapping (:class:`ThermalAGC`)
    applied once, with nothing carried across frames. A mode name means the same mapping
    here, in the node and in training. (H, W) uint16/uint8 -> (H, W) uint8.

    Example:
        >>> frame = np.full((4, 6), 20000, np.uint16); frame[:, 3:] = 24000
        >>> thermal_to_8bit(frame, "fixed", low=20000, high=24000)[0]
        array([  0,   0,   0, 255, 255, 255], dtype=uint8)
    """
    return ThermalAGC(mode, low, high, percentiles, plateau, max_gain, smoothing=1.0)(img)


def warm_up_agc() -> None:
    """Compile (or load from numba's cache) the AGC's kernels for 16-bit frames, so the first
    camera frames do not wait: two frames, since the repeated-frame check
    (``agc_kernels.same_else_keep``) first runs on the second."""
    agc, counts = ThermalAGC(), np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    agc(counts)
    agc(counts)


# -- registration --------------------------------------------------------------------------
@dataclass
class Registration:
    """Maps the 8-bit thermal image into the RGB camera's pixel grid.

    Attributes:
        mode: ``"none"`` (sizes must already match), ``"resize"`` (stretch to the RGB size),
            ``"crop_resize"`` (crop ``crop`` = (x, y, w, h) from the thermal image, then
            stretch) or ``"homography"`` (3x3 ``homography`` from thermal to RGB pixels).
        homography: 3x3 row-major matrix, thermal pixel -> RGB pixel (homogeneous).
        crop: thermal region (x, y, width, height) for ``"crop_resize"``.
        thermal_size: expected thermal (width, height); frames of another size are refused,
            since a calibration is only valid for the resolution it was made at.
        rgb_size: the same for the RGB frames.
        estimate: what the calibration rests on (``lutfuse calibrate``), for reports.

    Pixels of the RGB image that the thermal camera does not see get IR value 0 (cold), so
    the fusion shows the visible image there.

    Example:
        >>> reg = Registration("crop_resize", crop=(0, 0, 2, 2))
        >>> reg(np.array([[0, 100, 7], [200, 50, 7]], np.uint8), rgb_size=(4, 4)).shape
        (4, 4)
    """

    mode: str = "resize"
    homography: np.ndarray | None = None
    crop: tuple[int, int, int, int] | None = None
    thermal_size: Size | None = None
    rgb_size: Size | None = None
    estimate: dict = field(default_factory=dict)
    _maps: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in REGISTRATION_MODES:
            raise RegistrationError(
                f"registration mode must be one of {REGISTRATION_MODES}, got {self.mode!r}")
        if self.mode == "homography":
            h = np.asarray(self.homography if self.homography is not None else [],
                           dtype=np.float64)
            if h.size != 9 or not np.all(np.isfinite(h)):
                raise RegistrationError("homography mode needs 9 finite numbers (3x3, row-major),"
                                        f" got {h.size} values")
            h = h.reshape(3, 3)
            if abs(np.linalg.det(h)) < 1e-12:
                raise RegistrationError("the homography is singular (determinant 0)")
            self.homography = h / h[2, 2] if h[2, 2] != 0 else h
        if self.mode == "crop_resize":
            if self.crop is None or len(self.crop) != 4 or min(self.crop[2:]) <= 0 or \
                    min(self.crop[:2]) < 0:
                raise RegistrationError(
                    f"crop_resize needs crop = (x, y, width, height) with width, height > 0, "
                    f"got {self.crop}")
            self.crop = tuple(int(v) for v in self.crop)
        if self.thermal_size is not None:
            self.thermal_size = Size(int(self.thermal_size[0]), int(self.thermal_size[1]))
        if self.rgb_size is not None:
            self.rgb_size = Size(int(self.rgb_size[0]), int(self.rgb_size[1]))

    @classmethod
    def from_config(cls, config: RegistrationConfig) -> "Registration":
        """From settings; a ``calibration_file`` replaces mode, homography and crop."""
        if config.calibration_file:
            return cls.from_yaml(config.calibration_file)
        return cls(mode=config.mode, homography=parse_homography(config.homography),
                   crop=tuple(int(c) for c in config.crop) if config.mode == "crop_resize"
                   else None)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Registration":
        """Read a calibration file.

        Format (YAML)::

            mode: homography          # or resize / crop_resize / none
            homography: [h00, h01, h02, h10, h11, h12, h20, h21, h22]
            crop: [x, y, width, height]     # crop_resize only
            thermal_size: [640, 512]        # optional: refuse frames of another size
            rgb_size: [1280, 1024]          # optional: refuse RGB frames of another size
            estimate: {...}                 # optional: what lutfuse calibrate measured
                                            # (kept as ``self.estimate``, not used to warp)
        """
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise RegistrationError(f"cannot read calibration file {path}: {exc}") from None
        if not isinstance(data, dict):
            raise RegistrationError(f"calibration file {path} must hold a mapping")
        unknown = set(data) - {"mode", "homography", "crop", "thermal_size", "rgb_size",
                               "estimate"}
        if unknown:
            raise RegistrationError(f"calibration file {path}: unknown keys {sorted(unknown)}")
        for key in ("thermal_size", "rgb_size"):
            v = data.get(key)
            if v is not None and not (isinstance(v, list) and len(v) == 2 and
                                      all(isinstance(x, int) and x > 0 for x in v)):
                raise RegistrationError(f"calibration file {path}: {key} must be [width, "
                                        f"height] in pixels, got {v!r}")
        if data.get("estimate") is not None and not isinstance(data["estimate"], dict):
            raise RegistrationError(f"calibration file {path}: estimate must be a mapping")
        mode = data.get("mode", "homography" if "homography" in data else "resize")
        try:
            return cls(mode=mode, homography=data.get("homography"), crop=data.get("crop"),
                       thermal_size=data.get("thermal_size"), rgb_size=data.get("rgb_size"),
                       estimate=data.get("estimate") or {})
        except RegistrationError as exc:
            raise RegistrationError(f"calibration file {path}: {exc}") from None

    def __call__(self, ir: np.ndarray, rgb_size: Size) -> np.ndarray:
        """Warp ``ir`` (H_t, W_t) uint8 into an (H, W) uint8 image, ``rgb_size`` = (W, H)."""
        th, tw = ir.shape[:2]
        w, h = rgb_size
        if self.thermal_size is not None and (tw, th) != self.thermal_size:
            raise RegistrationError(
                f"thermal frame is {tw}x{th} but the registration is calibrated for "
                f"{self.thermal_size[0]}x{self.thermal_size[1]} (a calibration holds for one "
                "pair of resolutions: run lutfuse calibrate for this rig)")
        if self.rgb_size is not None and (w, h) != self.rgb_size:
            raise RegistrationError(
                f"RGB frame is {w}x{h} but the registration is calibrated for "
                f"{self.rgb_size[0]}x{self.rgb_size[1]} (a calibration holds for one pair of "
                "resolutions: run lutfuse calibrate for this rig)")
        if self.mode == "none":
            if (tw, th) != (w, h):
                raise RegistrationError(
                    f"thermal {tw}x{th} and RGB {w}x{h} differ in size and registration mode is "
                    "'none' (use resize, crop_resize or homography, or a calibration file from "
                    "lutfuse calibrate)")
            return ir
        if self.mode == "resize":
            if (tw, th) == (w, h):
                return ir
            return cv2.resize(ir, (w, h), interpolation=cv2.INTER_LINEAR)
        if self.mode == "crop_resize":
            x, y, cw, ch = self.crop
            if x + cw > tw or y + ch > th:
                raise RegistrationError(f"crop {self.crop} exceeds the {tw}x{th} thermal frame")
            return cv2.resize(ir[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_LINEAR)
        # homography: remap tables cached per (thermal, RGB) size; one cv2.remap per frame.
        key = (tw, th, w, h)
        if key not in self._maps:
            inv = np.linalg.inv(self.homography)
            xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
            p = inv @ np.stack((xs.ravel(), ys.ravel(), np.ones(xs.size)))
            mx = (p[0] / p[2]).reshape(h, w).astype(np.float32)
            my = (p[1] / p[2]).reshape(h, w).astype(np.float32)
            self._maps = {key: cv2.convertMaps(mx, my, cv2.CV_16SC2)}
        m1, m2 = self._maps[key]
        return cv2.remap(ir, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=0)


# -- gradient normaliser -------------------------------------------------------------------
class GradientNormaliser:
    """The range that maps the visible Sobel magnitude to the LUT's gradient axis [0, 1].

    - ``"per_image"``: each frame's own min and max (the authors'). One bright edge entering
      the view rescales the gradient of the whole frame: the fused video flickers.
    - ``"stable"``: the range (min of the row minima, ``quantile`` of the row maxima)
      smoothed over frames with weight ``smoothing`` for the newest frame. With the default
      ``quantile`` = 1 a first frame gets exactly the per-image range, so single images fuse
      as the authors'; a lower quantile ignores a few rows of extreme edges, but it scored
      lower on the test sets and flickered more when a large object entered
      (``benchmarks/gradient_normaliser.py``).

    Args:
        mode: ``"per_image"`` or ``"stable"``.
        quantile: quantile of the per-row maxima taken as the range's top, in (0, 1].
        smoothing: weight of the newest frame, in (0, 1].

    Example:
        >>> norm = GradientNormaliser("stable", smoothing=0.5)
        >>> norm.update(np.array([0.0, 0.1]), np.array([0.8, 1.0]))   # first frame: its range
        (0.0, 1.0)
        >>> norm.update(np.array([0.0, 0.1]), np.array([0.5, 0.6]))   # then smoothed
        (0.0, 0.8)
        >>> # in a stream: fuser.fuse(ir, rgb, gradient=norm) for every frame
    """

    def __init__(self, mode: str = GradientConfig.mode, quantile: float = GradientConfig.quantile,
                 smoothing: float = GradientConfig.smoothing) -> None:
        if mode not in GRADIENT_MODES:
            raise ConfigError(f"gradient mode must be one of {GRADIENT_MODES}, got {mode!r}")
        if not 0.0 < quantile <= 1.0:
            raise ConfigError(f"quantile must be in (0, 1], got {quantile}")
        if not 0.0 < smoothing <= 1.0:
            raise ConfigError(f"smoothing must be in (0, 1], got {smoothing}")
        self.mode, self.quantile, self.smoothing = mode, quantile, smoothing
        self.range: tuple[float, float] | None = None

    @classmethod
    def from_config(cls, config: GradientConfig) -> "GradientNormaliser":
        return cls(config.mode, quantile=config.quantile, smoothing=config.smoothing)

    def reset(self) -> None:
        self.range = None

    def update(self, row_min: np.ndarray, row_max: np.ndarray) -> tuple[float, float]:
        """Fold in one frame's per-row gradient minima and maxima (H,) and return the range
        ``(g_min, g_max)`` to normalise this frame with."""
        lo = float(np.min(row_min))
        if self.mode == "per_image":
            self.range = (lo, float(np.max(row_max)))
            return self.range
        hi = float(np.quantile(row_max, self.quantile))
        self.range = _smooth(self.range, (lo, max(hi, lo + 1e-6)), self.smoothing)
        return self.range


# -- the bundle ----------------------------------------------------------------------------
@dataclass
class Preprocessor:
    """AGC, registration and gradient normaliser of one stream.

    Example:
        >>> pre = Preprocessor()
        >>> frame_u16 = np.random.default_rng(0).integers(20000, 30000, (512, 640), np.uint16)
        >>> pre.thermal(frame_u16, rgb_size=(640, 480)).shape     # AGC, then resize
        (480, 640)
        >>> # then: fuser.fuse(ir8, rgb, gradient=pre.gradient)
    """

    agc: ThermalAGC = field(default_factory=ThermalAGC)
    registration: Registration = field(default_factory=Registration)
    gradient: GradientNormaliser = field(default_factory=GradientNormaliser)

    @classmethod
    def from_config(cls, config: PreprocessConfig) -> "Preprocessor":
        """AGC, registration and gradient normaliser from settings.

        Raises:
            ValueError: a setting is out of range; RegistrationError: a bad calibration.
        """
        return cls(agc=ThermalAGC.from_config(config.agc),
                   registration=Registration.from_config(config.registration),
                   gradient=GradientNormaliser.from_config(config.gradient))

    def thermal(self, frame: np.ndarray, rgb_size: Size) -> np.ndarray:
        """Raw thermal (H_t, W_t) uint8/uint16 -> registered (H, W) uint8, ``rgb_size`` (W, H)."""
        return self.registration(self.agc(frame), rgb_size)

    def reset(self) -> None:
        """Forget state carried across frames (after a time jump or a camera restart)."""
        self.agc.reset()
        self.gradient.reset()


def parse_homography(values: Sequence[float]) -> np.ndarray | None:
    """A parameter list of 9 numbers -> 3x3 array; an empty list -> ``None``.

    Example:
        >>> parse_homography(IDENTITY_HOMOGRAPHY).shape
        (3, 3)
    """
    values = list(values)
    if not values:
        return None
    if len(values) != 9:
        raise RegistrationError(f"homography needs 9 numbers, got {len(values)}")
    return np.asarray(values, dtype=np.float64).reshape(3, 3)
