"""What the OpenAPI description says about errors: every answer a route can give, with the
body it has. FastAPI documents only the success and a JSON 422; the routes also answer
problem+json 401/403/404/413/422/503 (the gate, the handlers in ``shared.http``), and
command routes 202 (queued) and 409 (refused by the owner's rules)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PROBLEM_JSON = "application/problem+json"

PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "Per-field validation errors",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    "example": {
        "type": "https://doorstep.dev/problems/validation",
        "title": "Invalid request",
        "status": 422,
        "detail": "1 field(s) failed validation",
        "instance": "/v1/orders",
        "errors": [{"field": "category", "message": "Input should be ...", "type": "enum"}],
    },
}
QUEUED = {
    "type": "object",
    "required": ["command_id", "status"],
    "properties": {
        "command_id": {"type": "string"},
        "status": {"type": "string", "enum": ["queued"]},
        "outcome": {"type": "string", "description": "GET it for the outcome"},
    },
}

EVERY_ROUTE = {
    "400": "Malformed request (e.g. its Content-Length)",
    "401": "No valid bearer token (WWW-Authenticate says which scheme)",
    "403": "Your role or scope may not do this",
    "404": "Not found, or not yours to see",
    "413": "Body over this route's limit",
    "422": "Invalid request: per-field errors",
    "503": "A backing service is away; try again after Retry-After",
}
COMMAND_ROUTE = {
    "409": "Refused by the community's rules (the detail says why)",
    "423": "Locked (e.g. a delivery after too many wrong handoff codes)",
}


SIGN_IN_ROUTE = {  # /auth/*: no bearer token, no queue (a slow decision is a 503 to retry)
    "400": "Malformed request (e.g. its Content-Length)",
    "401": "Wrong, expired or used code; a refresh token spent, ended or not ours",
    "403": "Not this phone's, or not registered",
    "409": "More than one person: choose who to act as",
    "413": "Body over this route's limit",
    "422": "Invalid request: per-field errors",
    "429": "Too many codes for this phone or address: try again after Retry-After",
    "503": "A backing service is away, or busy; try again after Retry-After",
}


def problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def describe_errors(app: FastAPI) -> None:
    """Replace ``app.openapi`` with one that documents every status and error body."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = PROBLEM
        schemas["Queued"] = QUEUED
        for path, operations in schema.get("paths", {}).items():
            if not path.startswith(("/v1/", "/auth/")):
                continue
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                if path.startswith("/auth/"):
                    for status, description in SIGN_IN_ROUTE.items():
                        if status == "422" or status not in responses:
                            responses[status] = problem(description)
                    continue
                statuses = dict(EVERY_ROUTE)
                if method in ("post", "put") and path != "/v1/commands/{command_id}":
                    statuses |= COMMAND_ROUTE
                    responses.setdefault(
                        "202",
                        {
                            "description": "Accepted and queued: the outcome will be at its link",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Queued"}
                                }
                            },
                        },
                    )
                for status, description in statuses.items():
                    if status == "422" or status not in responses:
                        responses[status] = problem(description)
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
