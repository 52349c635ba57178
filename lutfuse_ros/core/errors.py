"""The errors a user can cause, under one root.

:class:`LutfuseError` is the base of every error that a file, a setting or an input can
cause; the command-line tools and the nodes catch it (one line, exit 2) and nothing broader,
so a bug keeps its traceback. It is a ``ValueError`` so that callers that caught those keep
working. Below it:

- :class:`InputError`: an image (or message) cannot be processed; a stream worker catches
  exactly this (count the frame, go on). Decode, thermal, registration, calibration and
  fusion-input errors derive from it.
- :class:`ConfigError`: a setting is unknown, out of range, or needs what this machine lacks
  (a GPU, a package).
- elsewhere: ``ModelFormatError`` (model files), ``BagError`` (rosbag2 files), training's
  ``DataError`` (data folders).
"""
from __future__ import annotations


class LutfuseError(ValueError):
    """Something a user can cause (a file, a setting, an input); the text says what.

    Example:
        >>> from lutfuse_ros.core.model import ModelFormatError
        >>> all(issubclass(e, LutfuseError) for e in (InputError, ConfigError,
        ...                                            ModelFormatError))
        True
    """


class InputError(LutfuseError):
    """An image (or message) given to the runtime cannot be processed; the text says why.

    Example:
        >>> from lutfuse_ros.core.fusion import FusionInputError
        >>> issubclass(FusionInputError, InputError)
        True
    """


class ConfigError(LutfuseError):
    """A setting (parameter, option, config file entry) is unknown, out of range, or needs
    what this machine lacks; the text names it."""


class FusionInputError(InputError):
    """The images given to :meth:`~lutfuse_ros.core.fusion.Fuser.fuse` cannot be fused
    (type, dtype, channels, sizes)."""
