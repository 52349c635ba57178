"""``sensor_msgs/Image`` <-> numpy, without cv_bridge.

cv_bridge's Python side breaks with NumPy 2 and clashes with JetPack's OpenCV; these two
functions are all the node needs. Decoding returns a zero-copy view of the message buffer
whenever the data is in native byte order (rows padded by ``step`` included), so keep the
message alive while the array is in use.
"""
from __future__ import annotations

import sys
from typing import Protocol

import numpy as np

from ..core.errors import InputError

# encoding -> (channels, numpy dtype of one channel)
ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    "rgb8": (3, np.dtype(np.uint8)), "bgr8": (3, np.dtype(np.uint8)),
    "rgba8": (4, np.dtype(np.uint8)), "bgra8": (4, np.dtype(np.uint8)),
    "mono8": (1, np.dtype(np.uint8)), "8UC1": (1, np.dtype(np.uint8)),
    "mono16": (1, np.dtype(np.uint16)), "16UC1": (1, np.dtype(np.uint16)),
}
VISIBLE_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
THERMAL_ENCODINGS = ("mono8", "mono16", "8UC1", "16UC1")
_NATIVE_BIG = sys.byteorder == "big"


class ImageMessage(Protocol):
    """What decoding reads of a ``sensor_msgs/Image`` (rosbags' and rclpy's both have it)."""

    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: int
    data: bytes


class ImageDecodeError(InputError):
    """A message cannot be read as an image (encoding, step, size, truncated data)."""


def image_to_numpy(msg: ImageMessage, allowed: tuple[str, ...] | None = None) -> np.ndarray:
    """Decode a ``sensor_msgs/Image``.

    Args:
        msg: the message (anything with height, width, encoding, is_bigendian, step, data).
        allowed: encodings accepted here; ``None`` accepts every one in :data:`ENCODINGS`.

    Example:
        >>> from types import SimpleNamespace
        >>> msg = SimpleNamespace(height=2, width=3, encoding="mono16", is_bigendian=1,
        ...                       step=8, data=bytes(range(16)))   # 2 bytes of row padding
        >>> image_to_numpy(msg)
        array([[   1,  515, 1029],
               [2057, 2571, 3085]], dtype=uint16)

    Returns:
        :math:`(H, W)` for one channel or :math:`(H, W, C)`, uint8 or native-order uint16.

    Raises:
        ImageDecodeError: naming the problem.
    """
    enc = msg.encoding
    if enc not in ENCODINGS or (allowed is not None and enc not in allowed):
        raise ImageDecodeError(f"unsupported encoding {enc!r} (expected one of "
                               f"{', '.join(allowed or ENCODINGS)})")
    channels, dtype = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageDecodeError(f"empty image {w}x{h}")
    row_bytes = w * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError(f"step {step} is shorter than a row of {w} {enc} pixels "
                               f"({row_bytes} bytes)")
    data = msg.data
    size = len(data)
    if size != step * h:
        raise ImageDecodeError(f"data holds {size} bytes, expected step*height = {step}*{h} = "
                               f"{step * h}" + (" (truncated)" if size < step * h else ""))
    big = bool(msg.is_bigendian)
    dt = dtype.newbyteorder(">" if big else "<") if dtype.itemsize > 1 else dtype
    shape = (h, w) if channels == 1 else (h, w, channels)
    strides = (step, dtype.itemsize) if channels == 1 else \
        (step, channels * dtype.itemsize, dtype.itemsize)
    arr = np.ndarray(shape, dtype=dt, buffer=data, strides=strides)
    if dtype.itemsize > 1 and big != _NATIVE_BIG:
        arr = arr.astype(dtype)  # byte swap into native order (a copy)
    return arr


def numpy_to_image(arr: np.ndarray, encoding: str, header=None):
    """Encode an array as a ``sensor_msgs/Image`` (dense rows, native byte order).

    Args:
        arr: :math:`(H, W)` or :math:`(H, W, C)` matching ``encoding``.
        encoding: one of :data:`ENCODINGS`.
        header: ``std_msgs/Header`` to carry over (stamp and frame_id of the source).
    """
    from sensor_msgs.msg import Image

    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported encoding {encoding!r}")
    channels, dtype = ENCODINGS[encoding]
    expected = (channels == 1 and arr.ndim == 2) or (arr.ndim == 3 and arr.shape[2] == channels)
    if arr.dtype != dtype or not expected:
        raise ValueError(f"{encoding} needs {dtype} with {channels} channel(s), got "
                         f"{arr.dtype} {arr.shape}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 1 if (_NATIVE_BIG and dtype.itemsize > 1) else 0
    msg.step = int(arr.shape[1] * channels * dtype.itemsize)
    # bytes, not the array: rclpy copies an array element by element (~300x slower).
    msg.data = np.ascontiguousarray(arr).tobytes()
    return msg
