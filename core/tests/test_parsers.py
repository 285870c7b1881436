"""core.http.parsers: deeply nested JSON is a 400 `parse_error` on every JSON endpoint."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from core.http.parsers import nesting_depth_exceeds
from core.tests.test_owasp_api import ID_ROUTES, api_routes, concrete, make_object, view_methods
from users.models import User
from users.tests.factories import UserFactory

BODY_METHODS = {"post", "put", "patch"}
# Operations that take no body never parse one: whatever is sent is ignored.
IGNORES_BODY = {"auth-logout"}
# The attack (100,000 brackets, past the interpreter's recursion limit), one just below
# that limit, and one just past the configured depth; arrays, objects and a mix of both.
DEEP_BODIES = {
    "arrays-100000": "[" * 100_000 + "]" * 100_000,
    "objects-100000": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "mixed-900": '{"email":' + '[{"a":' * 450 + "1" + "}]" * 450 + "}",
    "arrays-33": '{"topics":' + "[" * 32 + "]" * 32 + "}",
}


def body_operations() -> list[Any]:
    """(route name, route, method) of every API operation that takes a body."""
    return [
        pytest.param(str(pattern.name), route, method, id=f"{method} {pattern.name}")
        for route, pattern in api_routes()
        for method in view_methods(pattern)
        if method in BODY_METHODS
    ]


def url_for(name: str, route: str, staff: User) -> str:
    """A URL of the route that staff may use: their own record, or a staff-only object."""
    if name not in ID_ROUTES:
        return concrete(route, None)
    if name.startswith("user-"):
        return concrete(route, staff.pk)
    object_id, _ = make_object(ID_ROUTES[name])
    return concrete(route, object_id)


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
@pytest.mark.parametrize("body", DEEP_BODIES.values(), ids=DEEP_BODIES.keys())
@pytest.mark.parametrize(("name", "route", "method"), body_operations())
def test_deep_nesting_is_a_parse_error(
    name: str,
    route: str,
    method: str,
    body: str,
    debug: bool,
    settings: Any,
    client_for: Any,
    throttle_rates: Any,
) -> None:
    settings.DEBUG = debug
    throttle_rates(signup="1000/minute", login_ip="1000/minute")
    staff = UserFactory.create(is_staff=True)
    response = getattr(client_for(staff), method)(
        url_for(name, route, staff), body, content_type="application/json"
    )
    if name in IGNORES_BODY:
        assert response.status_code < 400, response.content[:300]
        return
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["code"] == "parse_error"


def test_anonymous_sign_up_with_deep_nesting_is_a_parse_error(db: None) -> None:
    response = APIClient().post(
        "/api/v1/users/", DEEP_BODIES["arrays-100000"], content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


@pytest.mark.parametrize(
    ("data", "limit", "exceeds"),
    [
        ({}, 1, False),
        ({"a": []}, 1, True),
        ({"a": [1, {"b": 2}]}, 3, False),
        ({"a": [1, {"b": {}}]}, 3, True),
        ("scalar", 0, False),
    ],
)
def test_nesting_depth_exceeds(data: Any, limit: int, exceeds: bool) -> None:
    assert nesting_depth_exceeds(data, limit=limit) is exceeds
