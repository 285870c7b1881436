"""The OpenAPI schema documents the error responses each operation can give.

drf-spectacular describes only the success response of an operation. Clients (and the
Schemathesis run in core/tests/test_api_fuzz.py) need the errors too, in the one shape of
core/http/exceptions.py, so each operation here also lists the error statuses that its
authentication, permissions, throttles, parameters and request body can produce.
"""

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# Every 4xx and 5xx body (core.http.exceptions.error_body). Written out rather than declared
# as a serializer: a serializer cannot have a field named `fields`.
ERROR_COMPONENT = ResolvedComponent(
    name="Error",
    type=ResolvedComponent.SCHEMA,
    object="Error",
    schema={
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "Stable, machine-readable."},
                    "message": {"type": "string"},
                    "fields": {
                        "type": "object",
                        "description": "Validation errors only: messages by input field.",
                        "additionalProperties": {},
                    },
                },
            }
        },
    },
)


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's AutoSchema, plus the error responses of each operation."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        """The operation as drf-spectacular builds it, with its possible errors added."""
        operation: dict[str, Any] | None = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        self.registry.register_on_missing(ERROR_COMPONENT)
        error = ERROR_COMPONENT.ref
        responses = operation.setdefault("responses", {})
        for status, description in self._error_statuses(operation).items():
            responses.setdefault(
                status,
                {"description": description, "content": {"application/json": {"schema": error}}},
            )
        return operation

    def _error_statuses(self, operation: dict[str, Any]) -> dict[str, str]:
        parameters = operation.get("parameters", [])
        query = [p["name"] for p in parameters if p["in"] == "query"]
        has_path_parameters = any(p["in"] == "path" for p in parameters)
        has_body = "requestBody" in operation
        authenticators = self.view.get_authenticators()
        permissions = self.view.get_permissions()
        statuses: dict[str, str] = {}
        if has_body or query:
            statuses["400"] = "Invalid input: a body that does not parse, or invalid fields."
        if authenticators:
            statuses["401"] = "Missing, malformed, expired or revoked credentials."
        restricted = any(not isinstance(p, (AllowAny, IsAuthenticated)) for p in permissions)
        csrf = self.method in UNSAFE_METHODS and any(
            isinstance(a, SessionAuthentication) for a in authenticators
        )
        if restricted or csrf:
            statuses["403"] = "Not allowed for this caller (or a session request without CSRF)."
        if has_path_parameters or "cursor" in query:
            statuses["404"] = "No such object the caller may see (or an invalid cursor)."
        if has_body:
            statuses["413"] = "The request body is larger than MAX_REQUEST_BODY_BYTES."
            statuses["415"] = "The request body is not JSON."
        if self.view.get_throttles():
            statuses["429"] = "Too many requests; the Retry-After header says when to retry."
        return statuses


def add_links(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: OpenAPI links from responses to `{id}` routes.

    A 2xx response whose body is an object with an `id` (a created user, `/users/me/`, a
    new webhook) links to every operation on that resource's `{id}` routes, so clients,
    and Schemathesis's stateful tests, can follow from one call to the next.
    """
    schemas = result.get("components", {}).get("schemas", {})
    paths = result["paths"]
    for source_path, operations in paths.items():
        if "{" in source_path:
            continue
        for operation in operations.values():
            for status, response in operation["responses"].items():
                body = response.get("content", {}).get("application/json", {}).get("schema", {})
                component = schemas.get(body.get("$ref", "").rpartition("/")[2], {})
                if not status.startswith("2") or "id" not in component.get("properties", {}):
                    continue
                links = {
                    target["operationId"]: {
                        "operationId": target["operationId"],
                        "parameters": {"id": "$response.body#/id"},
                    }
                    for target_path, targets in paths.items()
                    if "{id}/" in target_path
                    and source_path.startswith(target_path.partition("{id}/")[0])
                    for target in targets.values()
                }
                if links:
                    response["links"] = links
    return result
