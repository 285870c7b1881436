"""OWASP API Security Top 10 (2023): the checks that apply across the whole API.

Routes are discovered from config.urls, so a new route is covered, or fails here until
someone says how it must be protected. Item-by-item mapping, including the tests that
live elsewhere: docs/security.md.
"""

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver
from knox.models import AuthToken
from rest_framework.permissions import IsAdminUser
from rest_framework.test import APIClient
from rest_framework.views import APIView

from core.tests.test_settings import run_manage
from events.models import WebhookSubscription
from events.tests.factories import WebhookSubscriptionFactory
from users.models import User
from users.tests.factories import DEFAULT_PASSWORD, UserFactory
from users.topics import USER_CREATED

pytestmark = pytest.mark.django_db

ClientFor = Callable[[User], APIClient]
API_PREFIX = "api/"
ID_KWARGS = {"pk", "id"}
STRONG = "violet-harbour-lantern-42"
# What a response may say about a user; never a password hash or superuser flag.
USER_FIELDS = {"id", "email", "display_name", "is_active", "is_staff", "date_joined", "updated_at"}
WEBHOOK_FIELDS = {"id", "url", "topics", "is_active", "created_at", "breaker_open"}

# Whose object each `{id}` route names, and how to make one. "self" objects belong to a
# user: anyone else but staff gets 404. "staff" objects belong to no user: only staff
# reach them at all. A route with an id that is missing here fails test_every_id_route_is_mapped.
OWNED_BY_A_USER = "self"
STAFF_ONLY = "staff"
ID_ROUTES: dict[str, str] = {
    "user-detail": OWNED_BY_A_USER,
    "user-password": OWNED_BY_A_USER,
    "webhook-detail": STAFF_ONLY,
}
# A harmless body for each method, valid enough to reach the object lookup.
BODIES: dict[str, dict[str, Any] | None] = {
    "get": None,
    "delete": None,
    "patch": {"display_name": "Changed"},
    "post": {"password": STRONG, "current_password": DEFAULT_PASSWORD},
}


def api_routes() -> Iterator[tuple[str, URLPattern]]:
    """(route, pattern) for every URL pattern of the API, walking config.urls."""

    def walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, URLPattern]]:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            elif route.startswith(API_PREFIX):
                yield route, pattern

    yield from walk(get_resolver().url_patterns, "")


def view_methods(pattern: URLPattern) -> dict[str, str | None]:
    """HTTP method -> viewset action (None for a plain APIView), excluding HEAD/OPTIONS."""
    callback: Any = pattern.callback
    actions = getattr(callback, "actions", None)
    if actions:
        return {method: action for method, action in actions.items() if method != "options"}
    view_class = callback.cls
    return {
        method: None
        for method in view_class.http_method_names
        if method not in {"head", "options"} and hasattr(view_class, method)
    }


def id_routes() -> list[Any]:
    """(name, route, method) for every API route with an id in its path."""
    return [
        pytest.param(str(pattern.name), route, method, id=f"{method} {pattern.name}")
        for route, pattern in api_routes()
        if ID_KWARGS & set(pattern.pattern.regex.groupindex)
        for method in view_methods(pattern)
    ]


def staff_only_operations() -> list[Any]:
    """(route, method) of every API operation whose view requires IsAdminUser."""
    found = []
    for route, pattern in api_routes():
        callback: Any = pattern.callback
        for method, action in view_methods(pattern).items():
            view: APIView = callback.cls(**getattr(callback, "initkwargs", {}))
            view.action = action  # type: ignore[attr-defined]
            view.request = None  # type: ignore[assignment]
            if any(isinstance(p, IsAdminUser) for p in view.get_permissions()):
                found.append(pytest.param(route, method, id=f"{method} {pattern.name}"))
    return found


def concrete(route: str, object_id: Any) -> str:
    """The URL of `route` for one object id (routes under api/ name ids with converters)."""
    path = route.replace("^", "").replace("$", "")
    return "/" + re.sub(
        r"<(?:\w+:)?(\w+)>",
        lambda found: str(object_id) if found[1] in ID_KWARGS else found[0],
        path,
    )


def make_object(kind: str) -> tuple[Any, Callable[[], Any]]:
    """An object of `kind`, and a snapshot function to prove it unchanged."""
    if kind == OWNED_BY_A_USER:
        victim = UserFactory.create(display_name="Victim")
        return victim.pk, lambda: User.objects.filter(pk=victim.pk).values().get()
    subscription = WebhookSubscriptionFactory.create()
    return (
        subscription.pk,
        lambda: WebhookSubscription.objects.filter(pk=subscription.pk).values().first(),
    )


# --- API1: broken object-level authorization -------------------------------------------


def test_every_id_route_is_mapped() -> None:
    names = {param.values[0] for param in id_routes()}
    assert names, "no {id} routes found: is the URL walk broken?"
    unmapped = names - set(ID_ROUTES)
    assert not unmapped, f"{unmapped}: say whose objects these are in ID_ROUTES"


@pytest.mark.parametrize(("name", "route", "method"), id_routes())
def test_another_users_object_is_out_of_reach(
    name: str, route: str, method: str, client_for: ClientFor, throttle_rates: Any
) -> None:
    kind = ID_ROUTES[name]
    object_id, snapshot = make_object(kind)
    before = snapshot()
    attacker = client_for(UserFactory.create())

    response = getattr(attacker, method)(concrete(route, object_id), BODIES[method], format="json")

    # Objects of other users: 404, so ids cannot be probed. Staff-only ones: 403 for all.
    expected = 404 if kind == OWNED_BY_A_USER else 403
    assert response.status_code == expected, response.content
    assert snapshot() == before


@pytest.mark.parametrize(("name", "route", "method"), id_routes())
def test_anonymous_reaches_no_object(name: str, route: str, method: str) -> None:
    object_id, snapshot = make_object(ID_ROUTES[name])
    before = snapshot()
    response = getattr(APIClient(), method)(
        concrete(route, object_id), BODIES[method], format="json"
    )
    assert response.status_code == 401, response.content
    assert snapshot() == before


# --- API2: broken authentication ----------------------------------------------------------


def test_revoked_token_is_refused(user: User, api_client: APIClient) -> None:
    token, secret = AuthToken.objects.create(user=user)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api_client.get("/api/v1/users/me/").status_code == 200  # now cached as valid
    token.delete()  # revoked elsewhere (another client's logout, a password change)
    assert api_client.get("/api/v1/users/me/").status_code == 401


def test_login_brute_force_is_locked_out_with_redis_down(
    redis_down: None, api_client: APIClient, settings: Any
) -> None:
    # Guesses spread over many addresses reach the per-email back-off: once there, even
    # the right password waits.
    UserFactory.create(email="target@example.com")
    settings.LOGIN_FREE_FAILURES_PER_EMAIL = 3
    guesses = [
        api_client.post(
            "/api/v1/auth/token/",
            {"email": "target@example.com", "password": f"guess-{i}"},
            format="json",
            REMOTE_ADDR=f"203.0.113.{i}",
        )
        for i in range(4)
    ]
    assert [r.status_code for r in guesses] == [400, 400, 400, 429]
    assert int(guesses[-1]["Retry-After"]) > 0
    assert guesses[-1].json()["error"]["code"] == "throttled"

    right = api_client.post(
        "/api/v1/auth/token/",
        {"email": "target@example.com", "password": DEFAULT_PASSWORD},
        format="json",
    )
    assert right.status_code == 429
    assert int(right["Retry-After"]) > 0
    assert not AuthToken.objects.exists()


# --- API3: broken object property-level authorization -------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("is_staff", True),
        ("is_superuser", True),
        ("id", "00000000-0000-0000-0000-000000000001"),
        ("password", STRONG),
        ("date_joined", "2000-01-01T00:00:00Z"),
    ],
)
@pytest.mark.parametrize("as_staff", [False, True], ids=["user", "staff"])
def test_protected_properties_cannot_be_written(
    field: str, value: Any, as_staff: bool, client_for: ClientFor
) -> None:
    caller = UserFactory.create(is_staff=as_staff)
    target = UserFactory.create() if as_staff else caller
    before = User.objects.filter(pk=target.pk).values().get()

    response = client_for(caller).patch(
        f"/api/v1/users/{target.pk}/", {field: value, "display_name": "Changed"}, format="json"
    )

    if as_staff and field == "is_staff":
        assert response.status_code == 200  # staff may grant staff; nothing else here
        return
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert User.objects.filter(pk=target.pk).values().get() == before


def all_keys(value: Any) -> Iterator[str]:
    """Every key at any depth of a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from all_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from all_keys(item)


def test_responses_carry_only_allow_listed_fields(staff: User, client_for: ClientFor) -> None:
    client = client_for(staff)
    anonymous = APIClient()
    created = anonymous.post(
        "/api/v1/users/", {"email": "new@example.com", "password": STRONG}, format="json"
    )
    login = anonymous.post(
        "/api/v1/auth/token/", {"email": "new@example.com", "password": STRONG}, format="json"
    )
    user_id = created.json()["id"]
    hook = client.post(
        "/api/v1/webhooks/",
        {"url": "https://hooks.example.com/in", "topics": [USER_CREATED]},
        format="json",
    )
    user_bodies = [
        created.json(),
        login.json()["user"],
        client.get("/api/v1/users/me/").json(),
        client.get(f"/api/v1/users/{user_id}/").json(),
        client.patch(f"/api/v1/users/{user_id}/", {"display_name": "X"}, format="json").json(),
        *client.get("/api/v1/users/").json()["results"],
    ]
    for body in user_bodies:
        assert set(body) == USER_FIELDS
    assert set(login.json()) == {"token", "expiry", "user"}
    assert set(hook.json()) == WEBHOOK_FIELDS | {"secret"}  # shown once, on creation
    for body in [
        client.get(f"/api/v1/webhooks/{hook.json()['id']}/").json(),
        *client.get("/api/v1/webhooks/").json()["results"],
    ]:
        assert set(body) == WEBHOOK_FIELDS
    everything = json.dumps([user_bodies, hook.json(), login.json()])
    hashes = [user.password for user in User.objects.all()]
    assert not any(h in everything for h in hashes)
    assert "password" not in set(all_keys(json.loads(everything)))


# --- API5: broken function-level authorization --------------------------------------------


def test_staff_only_operations_are_found() -> None:
    operations = {tuple(param.values) for param in staff_only_operations()}
    assert ("api/v1/users/", "get") in operations
    assert any(route.startswith("api/v1/webhooks") for route, _ in operations)


@pytest.mark.parametrize(("route", "method"), staff_only_operations())
def test_staff_only_operations_refuse_a_normal_user(
    route: str, method: str, client_for: ClientFor
) -> None:
    object_id, snapshot = make_object(STAFF_ONLY)
    before = snapshot()
    body = {"url": "https://hooks.example.com/x", "topics": [USER_CREATED]}
    response = getattr(client_for(UserFactory.create()), method)(
        concrete(route, object_id), body if method in {"post", "patch"} else None, format="json"
    )
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "permission_denied"
    assert snapshot() == before
    assert WebhookSubscription.objects.count() == 1


# --- API8: security misconfiguration -------------------------------------------------------


def test_security_headers_and_cookies(api_client: APIClient) -> None:
    # The tests run the production settings (DJANGO_DEBUG=false), bar the HTTPS redirect.
    response = api_client.get("/api/v1/users/me/", secure=True)
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    hsts = response["Strict-Transport-Security"]
    assert "max-age=31536000" in hsts
    assert "includeSubDomains" in hsts
    assert settings.SESSION_COOKIE_SECURE
    assert settings.CSRF_COOKIE_SECURE
    assert settings.SESSION_COOKIE_HTTPONLY


def production_setting(name: str) -> Any:
    """A setting's value under production settings, from a fresh process."""
    result = run_manage(
        "shell",
        "-c",
        f"import json; from django.conf import settings; print(json.dumps(settings.{name}))",
        DJANGO_SECRET_KEY="a-production-like-secret-key-" + "x" * 40,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_settings_redirect_to_https_and_refuse_private_webhooks() -> None:
    assert production_setting("SECURE_SSL_REDIRECT") is True
    assert production_setting("SESSION_COOKIE_SECURE") is True
    # API7 (SSRF): private, loopback and link-local webhook targets refused (events.ssrf).
    assert production_setting("WEBHOOK_ALLOW_PRIVATE_TARGETS") is False
