"""lutfuse_ros: real-time infrared + visible image fusion with a learned 4-D look-up table."""

__version__ = "0.1.0"
