# Sourced by the scripts that start ROS 2 processes: keep all DDS traffic on this machine,
# on a domain of its own (the caller's ROS_DOMAIN_ID if set).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( $$ % 90 + 10 ))}"
# The PyPI wheels scripts/setup.sh installs are Kilted; a sourced ROS install names its own.
# (Which Fast DDS profile variable to set depends on it: lutfuse_ros.resources.dds_profile_env.)
export ROS_DISTRO="${ROS_DISTRO:-kilted}"
