"""Offline training for lutfuse_ros: the MM-Net teacher and its distillation into an MM-LUT.

Installed with the package (``pip install '.[training]'`` adds its dependencies) as
``lutfuse_training``; the runtime (``lutfuse_ros``) never imports it. It imports the runtime's
core: the same forward pass (``core.torch_ops``), preprocessing (``core.preprocess``), model
file and metrics, so a trained model is what the node runs.
"""
