"""ROS-free fusion core: model file, forward pass, thermal scaling, metrics.

Imports numpy, OpenCV, numba and torch only; nothing of ROS and nothing of training.
"""
from .fusion import FusionConfig, FusionInputError, Fuser, check_pair
from .model import (FusionModel, ModelFormatError, convert_official, default_model_path,
                    load_model, save_model)

__all__ = ["FusionConfig", "FusionInputError", "Fuser", "check_pair", "FusionModel",
           "ModelFormatError", "convert_official", "default_model_path", "load_model",
           "save_model"]
