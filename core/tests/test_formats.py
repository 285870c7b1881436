"""Every route and method, in every format the API renders, answers without a 500.

Formats: the default, `?format=json`, `?format=api` (the browsable API) and each other
renderer a view declares (the schema's YAML and JSON), plus `Accept: text/html`. Each is
tried as a normal user and as staff, on the user's own record and on someone else's.
"""

from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from knox.models import AuthToken
from rest_framework.test import APIClient

from core.tests.test_owasp_api import ID_KWARGS, ID_ROUTES, concrete, make_object
from users.models import User
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
BODIES: dict[str, Any] = {
    "post": {"display_name": "Walker", "password": "violet-harbour-lantern-42"},
    "put": {"display_name": "Walker"},
    "patch": {"display_name": "Walker"},
}


def all_routes() -> list[tuple[str, URLPattern]]:
    """(route, pattern) for every URL pattern the project serves, except the admin's."""
    found: list[tuple[str, URLPattern]] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if route.startswith("admin/"):
                continue  # HTML pages with their own tests (users/tests/test_admin.py)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif route:
                found.append((route, pattern))

    walk(get_resolver().url_patterns, "")
    return found


def formats_of(pattern: URLPattern) -> list[str | None]:
    """None (the default), and each `?format=` the view's renderers answer to."""
    view_class = getattr(pattern.callback, "cls", None)
    if view_class is None:
        return [None, "json", "api"]  # plain Django views must ignore it
    renderers = view_class().get_renderers() if hasattr(view_class, "get_renderers") else []
    return [None, *sorted({"api", "json", *(renderer.format for renderer in renderers)})]


def cases() -> list[Any]:
    """(name, route, has_id, method, format, other) for every combination; `other` (another
    user's object) only for routes with an id."""
    found = []
    for route, pattern in all_routes():
        has_id = bool(ID_KWARGS & set(pattern.pattern.regex.groupindex))
        for fmt in formats_of(pattern):
            for method in METHODS:
                for other in (False, True) if has_id else (False,):
                    whose = "others" if other else "own"
                    found.append(
                        pytest.param(
                            str(pattern.name),
                            route,
                            has_id,
                            method,
                            fmt,
                            other,
                            id=f"{method} {pattern.name or route} {fmt} {whose}",
                        )
                    )
    return found


def url_of(*, name: str, route: str, has_id: bool, caller: User, other: bool) -> str:
    """A concrete URL: the caller's own record, another user's, or a staff-only object."""
    if not has_id:
        return concrete(route, None)
    if ID_ROUTES.get(name) == "self":
        target = UserFactory.create() if other else caller
        return concrete(route, target.pk)
    object_id, _ = make_object(ID_ROUTES[name])
    return concrete(route, object_id)


@pytest.mark.parametrize("as_staff", [False, True], ids=["user", "staff"])
@pytest.mark.parametrize(("name", "route", "has_id", "method", "fmt", "other"), cases())
def test_no_route_method_or_format_answers_500(
    name: str,
    route: str,
    has_id: bool,
    method: str,
    fmt: str | None,
    as_staff: bool,
    other: bool,
    throttle_rates: Any,
) -> None:
    throttle_rates(signup="10000/minute", user="10000/minute", login_ip="10000/minute")
    caller = UserFactory.create(is_staff=as_staff)
    url = url_of(name=name, route=route, has_id=has_id, caller=caller, other=other)
    if fmt:
        url += f"?format={fmt}"
    # The JSON API is used with tokens, the browsable API with the session: both.
    _, secret = AuthToken.objects.create(user=caller)
    token_client = APIClient()
    token_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    session_client = APIClient()
    session_client.force_login(caller)
    for client in (token_client, session_client):
        response = getattr(client, method)(url, BODIES.get(method), format="json")
        assert response.status_code < 500, (url, response.content[:500])
        html = client.generic(method.upper(), url, HTTP_ACCEPT="text/html")
        assert html.status_code < 500, (url, "text/html", html.content[:500])
