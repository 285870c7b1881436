"""The one place where errors become API responses.

Every 4xx/5xx body has the shape::

    {"error": {"code": "not_found", "message": "Not found.", "fields": {...}}}

`fields` appears only for validation errors and maps each input field to its messages.
DRF views reach `exception_handler`; everything else (unknown routes, CSRF failures,
crashes, oversized bodies) goes through the Django handlers below, so a client never
has to parse an HTML error page.
"""

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler


class ApplicationError(Exception):
    """A domain error raised by services; the API reports it with its status and code."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidCredentials(ApplicationError):
    """Email and password do not match an active user."""

    status_code = 400
    code = "invalid_credentials"


class Throttled(ApplicationError):
    """Too many attempts: try again in `wait` seconds (429 with Retry-After)."""

    status_code = 429
    code = "throttled"

    def __init__(self, wait: float) -> None:
        super().__init__("Request was throttled.")
        self.wait = wait


def error_body(*, code: str, message: str, fields: dict[str, Any] | None = None) -> dict:
    """Build the stable error body."""
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def error_response(
    *, status: int, code: str, message: str, fields: dict[str, Any] | None = None
) -> JsonResponse:
    """A plain Django response with the error body, for code outside DRF views."""
    return JsonResponse(error_body(code=code, message=message, fields=fields), status=status)


class _ApplicationAPIException(drf_exceptions.APIException):
    def __init__(self, error: ApplicationError) -> None:
        self.status_code = error.status_code
        super().__init__(detail=error.message, code=error.code)


def _as_drf_exception(exc: Exception) -> Exception:
    if isinstance(exc, DjangoValidationError):
        return drf_exceptions.ValidationError(detail=as_serializer_error(exc))
    if isinstance(exc, Throttled):
        return drf_exceptions.Throttled(wait=exc.wait)
    if isinstance(exc, ApplicationError):
        return _ApplicationAPIException(exc)
    if isinstance(exc, Http404):
        return drf_exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return drf_exceptions.PermissionDenied()
    return exc


def _validation_fields(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return {key: _plain(value) for key, value in detail.items()}
    return {"non_field_errors": _plain(detail)}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return str(value)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: domain and framework errors to the API's error shape."""
    exc = _as_drf_exception(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        # An unexpected exception: Django logs it and answers through `server_error`.
        return None
    if isinstance(exc, drf_exceptions.ValidationError):
        response.data = error_body(
            code="validation_error",
            message="The request has invalid fields.",
            fields=_validation_fields(exc.detail),
        )
    elif isinstance(exc, drf_exceptions.APIException):
        codes = exc.get_codes()
        response.data = error_body(
            code=codes if isinstance(codes, str) else exc.default_code,
            message=str(exc.detail),
        )
    return response


def bad_request(request: HttpRequest, exception: Exception) -> JsonResponse:
    """handler400: Django's suspicious or malformed requests."""
    return error_response(status=400, code="bad_request", message="Bad request.")


def permission_denied(request: HttpRequest, exception: Exception) -> JsonResponse:
    """handler403 outside DRF views."""
    return error_response(
        status=403,
        code="permission_denied",
        message="You do not have permission to perform this action.",
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> JsonResponse:
    """CSRF_FAILURE_VIEW: a session-authenticated write without a valid CSRF token."""
    return error_response(status=403, code="csrf_failed", message=f"CSRF check failed: {reason}")


def page_not_found(request: HttpRequest, exception: Exception) -> JsonResponse:
    """handler404: unknown routes."""
    return error_response(status=404, code="not_found", message="Not found.")


def database_unavailable() -> JsonResponse:
    """503 for a request the database cannot serve now (primary down, pool exhausted)."""
    response = error_response(
        status=503,
        code="service_unavailable",
        message="The database is unavailable; try again shortly.",
    )
    response["Retry-After"] = "1"
    return response


def route_not_found(request: HttpRequest) -> JsonResponse:
    """The catch-all route: the same answer as handler404."""
    return page_not_found(request, Http404())


def server_error(request: HttpRequest) -> JsonResponse:
    """handler500: the details stay in the server log, never in the response."""
    return error_response(status=500, code="server_error", message="Internal server error.")
