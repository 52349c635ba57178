"""The node's parameter table against the core: one vocabulary, one set of defaults.

Each parameter ``group.name`` is a field of the typed settings (:class:`NodeSettings`, made of
the core's and the stream layer's dataclasses); its default is that field's default, its
choices are the core's own tuples, and it says what a run-time change rebuilds.
"""
from __future__ import annotations

import dataclasses

import pytest

from lutfuse_ros.core import Fuser, FusionConfig
from lutfuse_ros.core.onnx_context import CONTEXT_ENGINES
from lutfuse_ros.core.preprocess import (
    GRADIENT_MODES,
    REGISTRATION_MODES,
    AGCConfig,
    GradientConfig,
    GradientNormaliser,
    Registration,
    RegistrationConfig,
    ThermalAGC,
)
from lutfuse_ros.core.thermal import AGC_MODES
from lutfuse_ros.ros.params import (
    BY_NAME,
    FUSER,
    LIVE,
    PARAMS,
    PREPROCESSING,
    REBUILDS,
    SYNC,
    NodeSettings,
    default_value,
    rebuilt_by,
)
from lutfuse_ros.stream.sync import ApproximateTimePolicy, SyncConfig


def leaf_fields(obj, prefix=""):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from leaf_fields(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value


def test_every_setting_is_a_declared_parameter_and_back():
    settings = dict(leaf_fields(NodeSettings()))
    assert set(settings) == set(BY_NAME)
    for p in PARAMS:
        want = settings[p.name]
        assert p.default == (list(want) if isinstance(want, tuple) else want), p.name


def test_parameter_defaults_are_the_core_defaults():
    fusion, agc, reg, grad, sync = (FusionConfig(), AGCConfig(), RegistrationConfig(),
                                    GradientConfig(), SyncConfig())
    assert BY_NAME["fusion.context_scale"].default == fusion.context_scale == 0.0625
    assert BY_NAME["fusion.context_engine"].default == fusion.context_engine
    assert BY_NAME["sync.slop"].default == sync.slop
    # The runtime classes built without arguments use the same values.
    a, g, pol = ThermalAGC(), GradientNormaliser(), ApproximateTimePolicy()
    assert (a.mode, a.percentiles, a.plateau, a.max_gain, a.smoothing) == (
        agc.mode, (agc.percentile_low, agc.percentile_high), agc.plateau, agc.max_gain,
        agc.smoothing)
    assert (g.mode, g.quantile, g.smoothing) == (grad.mode, grad.quantile, grad.smoothing)
    assert pol.slop_ns == round(sync.slop * 1e9) and pol.queue_size == sync.queue_size
    assert Registration().mode == reg.mode


def test_choices_are_the_cores_own_tuples():
    assert BY_NAME["fusion.context_engine"].choices is CONTEXT_ENGINES
    assert BY_NAME["agc.mode"].choices is AGC_MODES
    assert BY_NAME["gradient.mode"].choices is GRADIENT_MODES
    assert BY_NAME["registration.mode"].choices is REGISTRATION_MODES
    for p in PARAMS:
        if p.choices is not None:
            assert p.default in p.choices, p.name


def test_every_writable_parameter_says_what_it_rebuilds():
    for p in PARAMS:
        assert p.rebuilds in REBUILDS, p.name
        group = p.name.split(".")[0]
        if p.read_only:
            continue
        expected = {"model_path": FUSER, "fusion": FUSER, "agc": PREPROCESSING,
                    "registration": PREPROCESSING, "gradient": PREPROCESSING,
                    "sync": SYNC}.get(group)
        if expected is not None:
            assert p.rebuilds == expected, p.name
    assert rebuilt_by(["diagnostics.input_timeout"]) == {LIVE}


def test_settings_from_ros_values_are_typed_and_validated():
    s = NodeSettings.from_values({"registration.homography": [1, 0, 5, 0, 1, 0, 0, 0, 1],
                                  "agc.low": 20000, "fusion.context_scale": 0.25})
    assert s.registration.homography == (1, 0, 5, 0, 1, 0, 0, 0, 1)
    assert isinstance(s.agc.low, float) and s.fusion.stride == 4
    assert s.pipeline.preprocess.registration is s.registration
    with pytest.raises(ValueError, match="1/k"):
        NodeSettings.from_values({"fusion.context_scale": 0.3})
    with pytest.raises(KeyError, match="fusion.colour"):
        NodeSettings.from_values({"fusion.colour": 1})
    with pytest.raises(KeyError):
        default_value("use_sim_time")


def test_with_values_changes_only_what_it_is_given():
    base = NodeSettings.from_values({"sync.slop": 0.05})
    new = base.with_values({"model_path": "/data/site1.npz"})
    assert new.sync.slop == 0.05 and new.model_path == "/data/site1.npz"
    assert base.model_path == ""


def test_default_settings_build_the_default_pipeline():
    from lutfuse_ros.stream.pipeline import FramePipeline

    pipeline = FramePipeline.from_config(NodeSettings().pipeline)
    assert pipeline.fuser.model_id == Fuser().model_id
    assert pipeline.fuser.config == FusionConfig()
