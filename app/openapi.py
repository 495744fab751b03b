"""The OpenAPI document, corrected where FastAPI's defaults do not describe this API: request validation
fails with our problem+json (not FastAPI's HTTPValidationError body), so every 422 points at Problem."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.errors import PROBLEM_JSON, problems
from app.schemas import Problem

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def install_openapi(app: FastAPI) -> None:
    def build() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for item in doc.get("paths", {}).values():
            for op in item.values():
                invalid = op.get("responses", {}).get("422")
                if invalid is not None:
                    invalid["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}
                    invalid["description"] = problems(422)[422]["description"]
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(problem.pop("$defs", {}))
        schemas["Problem"] = problem
        app.openapi_schema = doc
        return doc

    app.openapi = build
