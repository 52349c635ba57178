"""Where the package's shared files are: ``launch/``, ``config/`` and ``msg/``.

Looked up in this order:

1. the source checkout this module runs from (``pip install -e .``, tests): edits there take
   effect without reinstalling;
2. the ament index (a colcon install space or an apt install: ``share/lutfuse_ros``);
3. ``<sys.prefix>/share/lutfuse_ros`` (``pip install .``, which installs ``data_files`` there).

The default models ship inside the Python package (``lutfuse_ros/models``, see
:func:`lutfuse_ros.core.model.default_model_path`) and are also installed to
``share/lutfuse_ros/models`` for launch files that name a model explicitly.
"""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "lutfuse_ros"
_SOURCE_ROOT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def share_dir() -> Path:
    """The directory holding ``config/`` and ``launch/`` (see the module docstring)."""
    if (_SOURCE_ROOT / "package.xml").is_file() and (_SOURCE_ROOT / "config").is_dir():
        return _SOURCE_ROOT
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            return Path(get_package_share_directory(PACKAGE))
        except PackageNotFoundError:
            pass
    except ImportError:  # no ROS 2 here: a plain pip install
        pass
    candidate = Path(sys.prefix) / "share" / PACKAGE
    if (candidate / "config").is_dir():
        return candidate
    raise FileNotFoundError(
        f"cannot find the {PACKAGE} share directory (config/, launch/): not a source checkout, "
        f"not in the ament index (AMENT_PREFIX_PATH), not in {candidate}")


def config_file(name: str) -> Path:
    """``share/lutfuse_ros/config/<name>``, e.g. ``fusion.yaml`` or ``fastdds_shm.xml``."""
    path = share_dir() / "config" / name
    if not path.is_file():
        raise FileNotFoundError(f"no config file {name!r} in {path.parent}")
    return path


# Fast DDS 2 (these distributions) reads only FASTRTPS_DEFAULT_PROFILES_FILE; Fast DDS 3
# (Kilted and later) reads FASTDDS_DEFAULT_PROFILES_FILE and warns that the old name is
# deprecated. The launch files apply the same rule.
FAST_DDS_2_DISTROS = ("humble", "iron", "jazzy")


def dds_profile_env(profile: str | Path, ros_distro: str | None = None) -> dict[str, str]:
    """The environment variables that make this distribution's Fast DDS read ``profile``.

    ``ros_distro`` defaults to ``$ROS_DISTRO``; unset, both names are set (safe everywhere).

    Example:
        >>> sorted(dds_profile_env("/p.xml", "kilted"))
        ['FASTDDS_DEFAULT_PROFILES_FILE']
        >>> sorted(dds_profile_env("/p.xml", "jazzy"))
        ['FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE']
    """
    import os

    distro = os.environ.get("ROS_DISTRO", "") if ros_distro is None else ros_distro
    env = {"FASTDDS_DEFAULT_PROFILES_FILE": str(profile)}
    if distro in ("", *FAST_DDS_2_DISTROS):
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(profile)
    return env
