"""Request middleware shared by every app."""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from core.exceptions import error_response


class RequestBodyLimitMiddleware:
    """Refuse bodies larger than MAX_REQUEST_BODY_BYTES with 413 before anything reads them.

    Django's DATA_UPLOAD_MAX_MEMORY_SIZE only guards `request.body`; DRF's parsers read
    the raw stream and would parse a body of any size, so the limit is enforced here on
    the declared Content-Length (the WSGI server never hands over more than that).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Answer 413 for an oversized or unreadable Content-Length, else pass on."""
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(
                status=400, code="bad_request", message="Invalid Content-Length header."
            )
        if length > settings.MAX_REQUEST_BODY_BYTES:
            return error_response(
                status=413,
                code="payload_too_large",
                message=f"Request body exceeds {settings.MAX_REQUEST_BODY_BYTES} bytes.",
            )
        return self.get_response(request)
