"""``sensor_msgs/Image`` straight from and to its serialized (CDR) bytes, without rclpy.

A 640x480 colour image is a megabyte: letting rclpy build a Python message of it, and
building one again to publish, costs about a millisecond per image and holds the GIL the
while. The node subscribes with ``raw=True`` and reads the bytes here: :func:`image_from_cdr`
returns a :class:`CdrImage` whose ``data`` is a view of the received buffer (decoded by
:func:`~.codec.image_to_numpy` like any message), and :func:`image_to_cdr` writes the fused
image with the input's header as the bytes ``Publisher.publish`` takes.

Layout (OMG CDR, XCDR1, as the ROS 2 middlewares send it): a 4-byte encapsulation header
(``00 01``: little endian, ``00 00``: big endian, then two option bytes), then the fields in
order, each aligned to its size counted from the end of the encapsulation header::

    int32 stamp.sec, uint32 stamp.nanosec, string frame_id,
    uint32 height, uint32 width, string encoding, uint8 is_bigendian, uint32 step,
    sequence<uint8> data            (strings: uint32 length with the NUL, chars, NUL)
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .codec import ENCODINGS, ImageDecodeError

_LE, _BE = b"\x00\x01", b"\x00\x00"


@dataclass(frozen=True)
class Stamp:
    """``builtin_interfaces/Time``: what :func:`~.sync.stamp_to_ns` reads."""

    sec: int
    nanosec: int


@dataclass(frozen=True)
class CdrHeader:
    """``std_msgs/Header`` as read from the bytes."""

    stamp: Stamp
    frame_id: str


@dataclass(frozen=True)
class CdrImage:
    """A ``sensor_msgs/Image`` read from CDR; ``data`` is a view of the received bytes (keep
    the object alive while arrays decoded from it are in use)."""

    header: CdrHeader
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: memoryview


class _Reader:
    def __init__(self, buf: bytes | memoryview) -> None:
        self.buf = memoryview(buf)
        if len(self.buf) < 4:
            raise ImageDecodeError(f"serialized image of {len(self.buf)} bytes: too short")
        kind = bytes(self.buf[:2])
        if kind not in (_LE, _BE):
            raise ImageDecodeError(f"serialized image with encapsulation {kind.hex()}: only "
                                   "plain CDR (0000 big, 0001 little endian) is read")
        self.order = "<" if kind == _LE else ">"
        self.pos = 4

    def _take(self, fmt: str, size: int):
        self.pos = 4 + ((self.pos - 4 + size - 1) // size) * size  # align from the body start
        end = self.pos + size
        if end > len(self.buf):
            raise ImageDecodeError("serialized image truncated in its header fields")
        value = struct.unpack_from(self.order + fmt, self.buf, self.pos)[0]
        self.pos = end
        return value

    def u32(self) -> int:
        return self._take("I", 4)

    def i32(self) -> int:
        return self._take("i", 4)

    def u8(self) -> int:
        return self._take("B", 1)

    def string(self) -> str:
        n = self.u32()
        if n == 0 or self.pos + n > len(self.buf):
            raise ImageDecodeError("serialized image truncated in a string field")
        text = bytes(self.buf[self.pos:self.pos + n - 1]).decode("utf-8", "replace")
        self.pos += n
        return text


def header_from_cdr(buf: bytes | memoryview) -> CdrHeader:
    """The ``std_msgs/Header`` at the start of a serialized message (an ``Image``, a
    ``CompressedImage``, ...), without reading the rest.

    Example:
        >>> import numpy as np
        >>> raw = image_to_cdr(np.zeros((2, 2), np.uint8), "mono8", CdrHeader(Stamp(3, 7), "f"))
        >>> header_from_cdr(raw)
        CdrHeader(stamp=Stamp(sec=3, nanosec=7), frame_id='f')

    Raises:
        ImageDecodeError: not plain CDR, or too short for a header.
    """
    r = _Reader(buf)
    return CdrHeader(Stamp(r.i32(), r.u32()), r.string())


def image_from_cdr(buf: bytes | memoryview) -> CdrImage:
    """Read a serialized ``sensor_msgs/Image`` (what a ``raw=True`` subscription delivers).

    Example:
        >>> import numpy as np
        >>> header = CdrHeader(Stamp(12, 5), "rgb_optical_frame")
        >>> msg = image_from_cdr(image_to_cdr(np.arange(6, dtype=np.uint8).reshape(2, 3),
        ...                                   "mono8", header))
        >>> msg.header.stamp.sec, msg.header.frame_id, msg.width, bytes(msg.data)
        (12, 'rgb_optical_frame', 3, b'\\x00\\x01\\x02\\x03\\x04\\x05')

    Raises:
        ImageDecodeError: not plain CDR, or truncated before the end of ``data``.
    """
    r = _Reader(buf)
    header = CdrHeader(Stamp(r.i32(), r.u32()), r.string())  # = header_from_cdr, read on
    height, width, encoding = r.u32(), r.u32(), r.string()
    is_bigendian, step, size = r.u8(), r.u32(), r.u32()
    if r.pos + size > len(r.buf):
        raise ImageDecodeError(f"serialized image truncated: data says {size} bytes, "
                               f"{len(r.buf) - r.pos} follow")
    return CdrImage(header, height, width, encoding, is_bigendian, step,
                    r.buf[r.pos:r.pos + size])


def _string(text: str, pos: int) -> tuple[bytes, int]:
    raw = text.encode() + b"\x00"
    return struct.pack("<I", len(raw)) + raw, pos + 4 + len(raw)


def image_to_cdr(arr: np.ndarray, encoding: str, header) -> bytes:
    """Serialize an array as a ``sensor_msgs/Image`` (little endian CDR, dense rows), with
    ``header`` (anything with ``stamp.sec``, ``stamp.nanosec`` and ``frame_id``, e.g. a
    :class:`CdrHeader` or a ``std_msgs/Header``) carried over unchanged.

    Args:
        arr: :math:`(H, W)` or :math:`(H, W, C)` matching ``encoding`` (one of
            :data:`~.codec.ENCODINGS`; 16-bit data is written little endian).
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported encoding {encoding!r}")
    channels, dtype = ENCODINGS[encoding]
    if arr.dtype != dtype or not ((channels == 1 and arr.ndim == 2) or
                                  (arr.ndim == 3 and arr.shape[2] == channels)):
        raise ValueError(f"{encoding} needs {dtype} with {channels} channel(s), got "
                         f"{arr.dtype} {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype.newbyteorder("<"))
    h, w = arr.shape[:2]
    parts = [b"\x00\x01\x00\x00", struct.pack("<iI", header.stamp.sec, header.stamp.nanosec)]
    frame_id, pos = _string(header.frame_id, 8)
    parts.append(frame_id)
    pad = -pos % 4
    enc, pos = _string(encoding, pos + pad + 8)
    parts += [b"\x00" * pad, struct.pack("<II", h, w), enc]
    pos += 1  # is_bigendian
    pad = -pos % 4
    parts += [b"\x00", b"\x00" * pad,
              struct.pack("<II", w * channels * dtype.itemsize, arr.nbytes), arr.data]
    return b"".join(parts)  # one copy of the pixels
