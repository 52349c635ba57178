"""The context network's architecture without torch: its settings and its weights' layout.

One definition used by the model-file validator (:mod:`.model`), the plain-numpy reference
(:mod:`.onnx_context`) and, through the same names, :class:`~.context_net.ContextNet`
(a test checks that its state dict has exactly these names and shapes).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

HEAD_CONV = "head.1"  # the 3x3 conv after the head's dropout


@dataclass(frozen=True)
class ContextNetConfig:
    """Architecture hyper-parameters of ``ContextNet`` (stored in the model file)."""

    in_channels: int = 4
    width: int = 16
    num_blocks: int = 3
    negative_slope: float = 0.2
    dropout: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


def conv_norm_layers(config: ContextNetConfig) -> list[tuple[str, str]]:
    """``(conv, norm)`` state-dict prefixes of the stem and each block, in order.

    Example:
        >>> conv_norm_layers(ContextNetConfig(num_blocks=2))
        [('stem.0', 'stem.2'), ('blocks.0', 'blocks.2'), ('blocks.3', 'blocks.5')]
    """
    return [("stem.0", "stem.2")] + [(f"blocks.{3 * b}", f"blocks.{3 * b + 2}")
                                     for b in range(config.num_blocks)]


def context_state_shapes(config: ContextNetConfig) -> dict[str, tuple[int, ...]]:
    """Name and shape of every tensor of the network's state dict.

    Example:
        >>> shapes = context_state_shapes(ContextNetConfig())
        >>> len(shapes), shapes["stem.0.weight"], shapes["head.1.weight"]
        (18, (16, 4, 3, 3), (1, 16, 3, 3))
    """
    w = config.width
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (conv, norm) in enumerate(conv_norm_layers(config)):
        cin = config.in_channels if i == 0 else w
        shapes.update({f"{conv}.weight": (w, cin, 3, 3), f"{conv}.bias": (w,),
                       f"{norm}.weight": (w,), f"{norm}.bias": (w,)})
    shapes.update({f"{HEAD_CONV}.weight": (1, w, 3, 3), f"{HEAD_CONV}.bias": (1,)})
    return shapes
