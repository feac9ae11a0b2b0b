"""The API's OpenAPI description is valid and matches the routes the worker serves."""

from __future__ import annotations

import re
from typing import Any, cast

from openapi_spec_validator import validate

from streams.config import load_settings
from streams.http.api_spec import ROUTES, openapi_spec
from streams.runtime.worker import create_app


def test_the_description_is_valid_openapi() -> None:
    validate(openapi_spec())  # raises with the first problem


def test_every_route_is_documented_and_every_document_has_a_route() -> None:
    spec = openapi_spec()
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert documented == set(ROUTES)


def test_every_path_parameter_is_declared_and_every_operation_has_errors() -> None:
    spec = openapi_spec()
    for path, operations in spec["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, op in operations.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)
            assert "200" in op["responses"]
            assert "500" in op["responses"], (method, path)
            assert op["operationId"]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves() -> None:
    spec = openapi_spec()
    for ref in _refs(spec):
        name = ref.removeprefix("#/components/schemas/")
        assert name in spec["components"]["schemas"], ref


def test_the_worker_registers_exactly_the_documented_routes() -> None:
    app = create_app(load_settings(topic_prefix="spec-test.", auth="off"))
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in cast(Any, app.web).web_app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/")
    }
    assert {(m, p) for m, p in served if m != "head"} == set(ROUTES)
