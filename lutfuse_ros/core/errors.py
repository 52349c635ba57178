"""The one base class of "this input cannot be fused" errors.

Decode, thermal, registration and fusion-input errors all derive from :class:`InputError`, so
a stream worker catches exactly a bad frame (count it, go on) and lets a programming error
fail loudly. It is a ``ValueError`` so that callers that caught those keep working.
"""
from __future__ import annotations


class InputError(ValueError):
    """An image (or message) given to the runtime cannot be processed; the text says why.

    Example:
        >>> from lutfuse_ros.core.fusion import FusionInputError
        >>> issubclass(FusionInputError, InputError)
        True
    """


class FusionInputError(InputError):
    """The images given to :meth:`~lutfuse_ros.core.fusion.Fuser.fuse` cannot be fused
    (type, dtype, channels, sizes)."""
