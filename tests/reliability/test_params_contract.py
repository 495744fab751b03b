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


# ---------------------------------------------------------------------------------------------- the CLI
def _cli_config(argv: list[str]) -> CalibrationConfig | None:
    """The config `sidyp calibrate` builds from these options, or None when it refuses them."""
    import argparse

    from sidyp_engine.cli_options import add_config_options, config_from_args
    from sidyp_engine.types import InvalidInputError

    parser = argparse.ArgumentParser(exit_on_error=False)
    add_config_options(parser)
    try:
        return config_from_args(parser.parse_args(argv))
    except (argparse.ArgumentError, InvalidInputError, SystemExit):
        return None


def test_the_cli_has_an_option_for_every_engine_field_and_its_defaults():
    import argparse

    from sidyp_engine.cli_options import add_config_options

    parser = argparse.ArgumentParser()
    add_config_options(parser)
    assert {a.dest for a in parser._actions} >= set(CalibrationConfig.model_fields)
    assert _cli_config([]) == CalibrationConfig()


@pytest.mark.parametrize(
    "name", [n for n in CalibrationConfig.model_fields if _bounds(CalibrationConfig.model_fields[n])]
)
def test_cli_values_at_and_past_every_bound_get_the_engines_verdict(name):
    flag = "--" + name.replace("_", "-")
    for value in _edges(name):
        try:
            CalibrationConfig(**{name: value})
            engine_ok = True
        except ValidationError:
            engine_ok = False
        cli = _cli_config([flag, str(value)])
        assert (cli is not None) == engine_ok, (name, value)
        if cli is not None:
            assert getattr(cli, name) == pytest.approx(value)


@pytest.mark.parametrize("value", ["auto", 0.3, 0.0, 1.0, -0.1, 1.5, float("nan"), "sometimes"])
def test_cli_noise_fraction_same_verdict(value):
    try:
        CalibrationConfig(noise_fraction=value)
        engine_ok = True
    except ValidationError:
        engine_ok = False
    assert (_cli_config(["--noise-fraction", str(value)]) is not None) == engine_ok


def test_cli_sets_the_switches_and_choices_the_engine_has():
    assert _cli_config(["--class-balanced"]).class_balanced is True
    assert _cli_config(["--no-class-balanced"]).class_balanced is False
    assert _cli_config(["--valid-fraction", "0.2"]).valid_fraction == 0.2
    assert _cli_config(["--knn-space", "encoder"]).knn_space == "encoder"
    assert _cli_config(["--knn-space", "nowhere"]) is None
    assert _cli_config(["--k", "7"]).k == 7
