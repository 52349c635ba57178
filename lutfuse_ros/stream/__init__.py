"""From camera messages and bags to preprocessed frame pairs, without rclpy.

``codec`` (sensor_msgs/Image <-> numpy), ``cdr`` (images and headers from/to their
serialized bytes), ``sync`` (pairing by stamp, the worker mailbox), ``pipeline`` (decode ->
AGC -> registration -> fuse -> encode), ``bagio`` (pairs out of rosbag2 files), ``stats``
(rates, latency and counters a node reports), ``calibration_job`` (a running node's
calibration: collect pairs, estimate, refuse or swap). The nodes in
``lutfuse_ros.ros`` and the training data loader both run this code; it imports the core
and never rclpy, so every part is tested on plain stamp sequences and message objects.
"""
