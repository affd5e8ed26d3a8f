"""The OpenAPI 3.1 document, generated from the registered endpoints and their pydantic models (so it cannot
drift from what the API validates and returns).  Served at /api/v1/openapi.json."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from console.api.framework import ENDPOINTS, BinaryFile, EndpointSpec
from console.runtime import ConsoleRuntime

_REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                "required": ["field", "message"],
            },
        },
    },
    "required": ["type", "title", "status"],
}
_ERRORS = {
    "400": "Invalid input (the errors list says which field and why)",
    "401": "Not signed in, or the access token is not valid",
    "403": "Not a member of this clinic, the role does not allow it, or the CSRF check failed",
    "404": "Not found in this clinic",
}


def _schemas() -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    models: list[tuple[type[BaseModel], Any]] = []
    for spec in ENDPOINTS:
        if spec.response_model is not BinaryFile:  # a file, not a JSON document
            models.append((spec.response_model, "serialization"))
        if spec.body_model is not None:
            models.append((spec.body_model, "validation"))
    unique = list(dict.fromkeys(models))
    refs, top = models_json_schema(unique, ref_template=_REF)  # type: ignore[arg-type]
    return refs, top.get("$defs", {})


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _operation(spec: EndpointSpec, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
        for name in _PATH_PARAM.findall(spec.path)
    ]
    if spec.query_model is not None:
        parameters += _query_parameters(spec.query_model)
    content = (
        {"image/*": {"schema": {"type": "string", "format": "binary"}}}
        if spec.response_model is BinaryFile
        else {"application/json": {"schema": refs[(spec.response_model, "serialization")]}}
    )
    responses: dict[str, Any] = {str(spec.status_code): {"description": spec.summary, "content": content}}
    for status, description in _ERRORS.items():
        responses[status] = {
            "description": description,
            "content": {"application/problem+json": {"schema": {"$ref": _REF.format(model="Problem")}}},
        }
    operation: dict[str, Any] = {
        "operationId": spec.operation_id,
        "summary": spec.summary,
        "tags": [spec.tag],
        "parameters": parameters,
        "responses": responses,
        "security": [{"bearerAuth": []}, {"sessionCookie": [], "csrfToken": []}]
        if spec.method != "GET"
        else [{"bearerAuth": []}, {"sessionCookie": []}],
    }
    if spec.description:
        operation["description"] = spec.description
    if spec.permission is not None:
        operation["x-permission"] = spec.permission.value
    if spec.body_model is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(spec.body_model, "validation")]}},
        }
    return operation


def openapi_document(runtime: ConsoleRuntime) -> dict[str, Any]:
    refs, schemas = _schemas()
    schemas = {**schemas, "Problem": PROBLEM_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for spec in ENDPOINTS:
        path = _PATH_PARAM.sub(r"{\1}", spec.path)
        paths.setdefault(path, {})[spec.method.lower()] = _operation(spec, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "MedSpa Agent staff console API",
            "version": "1",
            "description": "Staff-facing API. Every path under /clinics/{clinic_id} runs in that clinic's tenant "
            "scope for a member of it; roles and token scopes decide the rest (x-permission). Errors are RFC 9457 "
            "problem details; lists are paged with opaque cursors (next_cursor → cursor).",
        },
        "servers": [{"url": runtime.public_url + "/api/v1"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": runtime.cookies.session},
                "csrfToken": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
        },
    }
