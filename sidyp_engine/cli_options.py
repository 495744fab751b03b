"""`sidyp calibrate` options generated from CalibrationConfig's fields: one source of truth, as the API's
job params are. Name, type, choices, default and help all come from the field; values are checked by
CalibrationConfig itself, so the CLI refuses exactly what the engine refuses."""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any, Literal

from pydantic import ValidationError

from sidyp_engine.types import CalibrationConfig, InvalidInputError


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per CalibrationConfig field; an option left out keeps the engine's default."""
    for name, info in CalibrationConfig.model_fields.items():
        kind = _argparse_kind(info.annotation)
        help_text = f"{info.description or name.replace('_', ' ')} (default: {info.default})"
        parser.add_argument(option_name(name), dest=name, default=None, help=help_text, **kind)


def config_from_args(args: argparse.Namespace) -> CalibrationConfig:
    """The CalibrationConfig of the options given; a refused value is an InvalidInputError naming it."""
    fields = CalibrationConfig.model_fields
    values = {name: getattr(args, name) for name in fields if getattr(args, name, None) is not None}
    try:
        return CalibrationConfig(**values)
    except ValidationError as e:
        problems = "; ".join(
            f"{option_name('_'.join(map(str, err['loc'][:1])))}: {err['msg']}" for err in e.errors()
        )
        raise InvalidInputError(f"invalid option: {problems}") from None


def _argparse_kind(annotation: Any) -> dict[str, Any]:
    """argparse keywords for a field type: a flag pair for bool, choices for a Literal, else a parser."""
    options = [a for a in _union_members(annotation) if a is not type(None)]
    if options == [bool]:
        return {"action": argparse.BooleanOptionalAction}
    if all(typing.get_origin(a) is Literal for a in options):
        return {"choices": [v for a in options for v in typing.get_args(a)]}
    if len(options) == 1 and options[0] in (int, float, str):
        return {"type": options[0], "metavar": options[0].__name__.upper()}
    # a mix such as Literal["auto"] | float: the text goes to pydantic, which knows the union
    return {"type": str, "metavar": "VALUE"}


def _union_members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return list(typing.get_args(annotation))
    return [annotation]
