"""Caching headers and conditional GETs for per-user API responses.

Per-user data must never be stored by a shared cache, and a client's copy must be
revalidated before each use: `Cache-Control: private, no-cache`, and `Vary` naming what
besides the URL changes a response (the format asked for, and who asks). A GET whose
content has a cheap name (a user row's version, a page's rows and their versions) carries
it as a strong ETag; a request whose If-None-Match holds the current tag gets 304 with no
body, before anything is serialized.

Django's `condition` decorator and ConditionalGetMiddleware do not fit: the decorator runs
before DRF has authenticated, authorized and throttled the request (a 304 must answer only
a caller who may read the resource, and count against its rate), and the middleware
computes its tag from the body, after the serialization a 304 is meant to save.
"""

from collections.abc import Callable
from hashlib import blake2b
from typing import Any

from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.http import parse_etags
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

# What changes a per-user response besides its URL: the format negotiated, and the
# credentials (a bearer token or a session cookie) that say who asks.
PER_USER_VARY = ("Accept", "Authorization", "Cookie")


def strong_etag(*parts: object) -> str:
    """A strong entity tag for the content made from `parts` (their `str`s, in order)."""
    text = "\x1f".join(str(part) for part in parts)
    return f'"{blake2b(text.encode(), digest_size=16).hexdigest()}"'


def conditional_response(
    request: Request, *, etag_parts: tuple[object, ...], data: Callable[[], Any]
) -> Response:
    """`Response(data())` with a strong ETag made from `etag_parts`, or a bodiless 304 if
    the request's If-None-Match names that tag (and `data` is never called).

    Only JSON answers are tagged: the browsable API's page carries a CSRF token and the
    caller's name, which the parts do not cover. The media type is part of the tag, so
    the tag of one format never validates another's copy.
    """
    renderer = getattr(request, "accepted_renderer", None)
    if renderer is None or renderer.format != "json":
        return Response(data())
    etag = strong_etag(request.accepted_media_type, *etag_parts)
    if _none_match_fails(request.headers.get("If-None-Match"), etag):
        return Response(status=304, headers={"ETag": etag})
    response = Response(data())
    response["ETag"] = etag
    return response


def _none_match_fails(header: str | None, etag: str) -> bool:
    # If-None-Match compares weakly (RFC 9110, 13.1.2): `W/"x"` names "x" too.
    if not header:
        return False
    if header.strip() == "*":
        return True
    return etag in {tag.removeprefix("W/") for tag in parse_etags(header)}


class PerUserCacheHeadersMixin(APIView):
    """For views of per-user data: every response, errors and 304s included, is
    `Cache-Control: private, no-cache` and varies by format and credentials."""

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        """DRF's response, with the per-user caching headers."""
        response = super().finalize_response(request, response, *args, **kwargs)
        patch_cache_control(response, private=True, no_cache=True)
        patch_vary_headers(response, PER_USER_VARY)
        return response
