"""`GET /api/v1/users/{id}/` answered from the caches, outside DRF's request cycle.

The hottest route. Once the caches hold the token and the user, DRF's per-request
machinery (request wrapping, content negotiation, permission and throttle objects,
renderer context) costs more than the answer itself. This view answers the common case
(a bearer token, a JSON client, a user the caller may see) with the components DRF would
run for it — `TokenAuthentication`, the viewset's throttles, `users.selectors` — and
returns the rendered bytes. Anything else (another method, no token or an invalid one, a
session, another media type, a query string, a user the caller may not see, throttled,
not found) goes to the viewset unchanged, so every error keeps one shape and one path.
"""

import functools
from typing import Any, cast
from uuid import UUID

from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from users import selectors
from users.api.views import UserViewSet
from users.authentication import TokenAuthentication
from users.models import User

# What the viewset answers with for this route: the cached answer must not differ.
_ALLOW = "GET, PATCH, DELETE, HEAD, OPTIONS"
_JSON_ACCEPTS = frozenset({"", "*/*", "application/json"})
_renderer = JSONRenderer()

ANSWERS = Counter(
    "userservice_user_detail_answers_total",
    "GET /users/{id}/ requests by who answered: the cached answer or the viewset.",
    ["by"],
)
_BY_CACHE = ANSWERS.labels("cache")
_BY_VIEWSET = ANSWERS.labels("viewset")


def detail_view(viewset_detail: Any) -> Any:
    """The route's view: the cached answer when there is one, else `viewset_detail`."""

    # Keeps the viewset view's attributes (`cls`, `actions`, `csrf_exempt`: DRF's views
    # are exempt, SessionAuthentication enforces CSRF itself): the schema reads them.
    @functools.wraps(viewset_detail)
    def user_detail(request: HttpRequest, pk: str) -> HttpResponse:
        """One user, from the caches when they can vouch for everything; else the viewset."""
        if request.method == "GET":
            response = _cached_answer(request, UUID(pk))
            if response is not None:
                _BY_CACHE.inc()
                return response
            _BY_VIEWSET.inc()
        return cast(HttpResponse, viewset_detail(request, pk=pk))

    return user_detail


def _cached_answer(request: HttpRequest, user_id: UUID) -> HttpResponse | None:
    # A query string may ask for another format (`?format=api`): the viewset decides.
    if request.META.get("QUERY_STRING") or request.META.get("HTTP_ACCEPT", "") not in _JSON_ACCEPTS:
        return None
    try:
        authenticated = TokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        return None
    if authenticated is None:
        return None
    viewer: User = authenticated[0]
    # Before the throttles, so a request the viewset will refuse is counted once, there.
    if not selectors.user_visible(user_id=user_id, viewer=viewer):
        return None
    request.user = viewer
    # The throttles read only `user` and META, which a Django request has as DRF's does.
    drf_request = cast(Request, request)
    for throttle in (cls() for cls in UserViewSet.throttle_classes):
        if not throttle.allow_request(drf_request, cast(APIView, None)):
            return None
    data = selectors.user_representation_get(user_id=user_id, viewer=viewer)
    if data is None:
        return None
    response = HttpResponse(_renderer.render(data), content_type="application/json")
    response["Vary"] = "Accept"
    response["Allow"] = _ALLOW
    return response
