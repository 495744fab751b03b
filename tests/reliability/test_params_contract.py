"""The API's job params are the engine's CalibrationConfig fields (one source of truth): same defaults, same
bounds, and every value one side refuses the other refuses too."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.schemas import CLIENT_PARAMS, JobParams
from sidyp_engine.types import CalibrationConfig


def _bounds(info) -> dict:
    out = {}
    for m in info.metadata:
        for name in ("ge", "gt", "le", "lt"):
            if getattr(m, name, None) is not None:
                out[name] = getattr(m, name)
    return out


@pytest.mark.parametrize("name", CLIENT_PARAMS)
def test_defaults_and_bounds_are_the_engines(name):
    api, engine = JobParams.model_fields[name], CalibrationConfig.model_fields[name]
    assert api.default == engine.default
    assert _bounds(api) == _bounds(engine)


def _edges(name: str) -> list:
    b = _bounds(CalibrationConfig.model_fields[name])
    values = []
    for key, v in b.items():
        step = 1 if isinstance(v, int) else v * 1e-3
        values += [v - step, v, v + step] if key in ("ge", "le") else [v, v - step, v + step]
    return values


@pytest.mark.parametrize("name", [n for n in CLIENT_PARAMS if _bounds(CalibrationConfig.model_fields[n])])
def test_values_at_and_past_every_bound_get_the_same_verdict(name):
    for value in _edges(name):
        try:
            CalibrationConfig(**{name: value})
            engine_ok = True
        except ValidationError:
            engine_ok = False
        try:
            JobParams(**{name: value})
            api_ok = True
        except ValidationError:
            api_ok = False
        assert api_ok == engine_ok, (name, value)


@pytest.mark.parametrize("value", ["auto", 0.3, 0.0, 1.0, -0.1, 1.5, float("nan"), "sometimes"])
def test_noise_fraction_same_verdict(value):
    def ok(model) -> bool:
        try:
            model(noise_fraction=value)
            return True
        except ValidationError:
            return False

    assert ok(JobParams) == ok(CalibrationConfig)
