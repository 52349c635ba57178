"""ROS-free fusion core: model file, forward pass, preprocessing, thermal scaling, metrics.

Pure functions and small classes over numpy arrays. Needs numpy, OpenCV, numba, SciPy,
scikit-image (metrics) and PyYAML; the context network runs on ONNX Runtime (or OpenCV DNN)
from the model file, and torch is imported only by the torch backend and the torch context
engine. Nothing of ROS, of the stream layer (``lutfuse_ros.stream``) or of training is
imported here.

Example:
    >>> from lutfuse_ros.core import Fuser, FusionConfig
    >>> from lutfuse_ros.core.synthetic import synthetic_pair
    >>> ir, vis = synthetic_pair(shape=(120, 160))
    >>> Fuser(config=FusionConfig(context_scale=0.125)).fuse(ir, vis).dtype
    dtype('uint8')
"""
from .errors import FusionInputError, InputError
from .fusion import Fuser, FusionConfig, check_pair
from .model import (
                    FusionModel,
                    ModelFormatError,
                    convert_official,
                    default_model_path,
                    load_model,
                    save_model,
)

__all__ = ["FusionConfig", "FusionInputError", "Fuser", "InputError", "check_pair",
           "FusionModel", "ModelFormatError", "convert_official", "default_model_path",
           "load_model", "save_model"]
