"""users.api.views: every endpoint, its permissions and its errors."""

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from users.models import User
from users.tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

ClientFor = Callable[[User], APIClient]
STRONG = "violet-harbour-lantern-42"
USER_FIELDS = {"id", "email", "display_name", "is_active", "is_staff", "date_joined", "updated_at"}


def url(user: User | uuid.UUID, suffix: str = "") -> str:
    user_id = user.pk if isinstance(user, User) else user
    return f"/api/v1/users/{user_id}/{suffix}"


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


class TestSignUp:
    def test_anonymous_sign_up(self, api_client: APIClient) -> None:
        response = api_client.post(
            "/api/v1/users/",
            {"email": "New@Example.com", "password": STRONG, "display_name": "New"},
            format="json",
        )

        assert response.status_code == 201
        body = response.json()
        assert set(body) == USER_FIELDS
        assert body["email"] == "new@example.com"
        assert body["is_staff"] is False
        assert response["Location"].endswith(url(uuid.UUID(body["id"])))
        assert User.objects.get(pk=body["id"]).check_password(STRONG)

    @pytest.mark.parametrize(
        "field", ["is_staff", "is_superuser", "is_active", "id", "date_joined"]
    )
    def test_privileged_fields_are_rejected_by_name(
        self, api_client: APIClient, field: str
    ) -> None:
        body = {"email": "new@example.com", "password": STRONG, field: True}
        error = assert_error(
            api_client.post("/api/v1/users/", body, format="json"), 400, "validation_error"
        )
        assert error["fields"] == {field: ["This field is not allowed."]}
        assert not User.objects.exists()

    def test_validation_errors_name_each_field(self, api_client: APIClient) -> None:
        response = api_client.post(
            "/api/v1/users/", {"email": "nope", "password": "123"}, format="json"
        )
        error = assert_error(response, 400, "validation_error")
        assert set(error["fields"]) == {"email"}

        response = api_client.post(
            "/api/v1/users/", {"email": "a@example.com", "password": "123"}, format="json"
        )
        error = assert_error(response, 400, "validation_error")
        assert set(error["fields"]) == {"password"}

    def test_duplicate_email_any_case(self, api_client: APIClient) -> None:
        UserFactory.create(email="taken@example.com")
        response = api_client.post(
            "/api/v1/users/", {"email": "TAKEN@example.com", "password": STRONG}, format="json"
        )
        assert "email" in assert_error(response, 400, "validation_error")["fields"]

    def test_staff_may_create_staff(self, staff: User, client_for: ClientFor) -> None:
        response = client_for(staff).post(
            "/api/v1/users/",
            {"email": "ops@example.com", "password": STRONG, "is_staff": True},
            format="json",
        )
        assert response.status_code == 201
        assert User.objects.get(email="ops@example.com").is_staff

    def test_sign_up_is_throttled_per_ip(self, api_client: APIClient, throttle_rates: Any) -> None:
        throttle_rates(signup="2/hour")
        statuses = [
            api_client.post(
                "/api/v1/users/", {"email": f"u{i}@example.com", "password": STRONG}, format="json"
            )
            for i in range(3)
        ]
        assert [r.status_code for r in statuses[:2]] == [201, 201]
        assert_error(statuses[2], 429, "throttled")
        assert int(statuses[2]["Retry-After"]) > 0
        assert User.objects.count() == 2


class TestRetrieve:
    def test_self(self, user: User, client_for: ClientFor) -> None:
        response = client_for(user).get(url(user))
        assert response.status_code == 200
        assert response.json()["id"] == str(user.pk)
        assert "password" not in response.json()

    def test_another_users_record_is_404_not_403(self, user: User, client_for: ClientFor) -> None:
        other = UserFactory.create()
        assert_error(client_for(user).get(url(other)), 404, "not_found")
        assert_error(client_for(user).get(url(uuid.uuid4())), 404, "not_found")

    def test_staff_read_anyone(self, staff: User, user: User, client_for: ClientFor) -> None:
        assert client_for(staff).get(url(user)).json()["email"] == user.email

    def test_anonymous_is_401(self, api_client: APIClient, user: User) -> None:
        assert_error(api_client.get(url(user)), 401, "not_authenticated")

    @pytest.mark.parametrize("shape", ["not-a-uuid", "upper", "hex-only", "short"])
    def test_only_a_canonical_uuid_names_a_user(
        self, user: User, client_for: ClientFor, shape: str
    ) -> None:
        malformed = {
            "not-a-uuid": "not-a-uuid",
            "upper": str(user.pk).upper(),
            "hex-only": user.pk.hex,
            "short": str(user.pk)[:-1],
        }[shape]
        client = client_for(user)

        assert client.get(f"/api/v1/users/{user.pk}/").status_code == 200
        assert_error(client.get(f"/api/v1/users/{malformed}/"), 404, "not_found")

    def test_query_count(
        self, user: User, client_for: ClientFor, django_assert_num_queries
    ) -> None:
        client = client_for(user)
        # A cold request: token lookup with its user, the read. Inside a test's
        # transaction nothing is cached (a rollback must not leave cached rows), so every
        # request here is cold; warm requests run no query at all, pinned in
        # users/tests/test_cache.py.
        with django_assert_num_queries(2):
            assert client.get(url(user)).status_code == 200

    def test_me(self, user: User, client_for: ClientFor, api_client: APIClient) -> None:
        assert client_for(user).get("/api/v1/users/me/").json()["id"] == str(user.pk)
        assert_error(api_client.get("/api/v1/users/me/"), 401, "not_authenticated")


class TestPartialUpdate:
    def test_self_update(self, user: User, client_for: ClientFor) -> None:
        response = client_for(user).patch(url(user), {"display_name": "Renamed"}, format="json")
        assert response.status_code == 200
        assert response.json()["display_name"] == "Renamed"
        user.refresh_from_db()
        assert user.display_name == "Renamed"

    def test_query_count(
        self, user: User, client_for: ClientFor, django_assert_num_queries
    ) -> None:
        client = client_for(user)
        # The token lookup with its user (cold: see TestRetrieve), then the write: a
        # savepoint (the test's transaction holds the real one), the row locked, updated,
        # the event inserted, the savepoint released. One's own record is not read first:
        # the authenticated user is the object the permissions check.
        with django_assert_num_queries(6):
            response = client.patch(url(user), {"display_name": "Counted"}, format="json")
        assert response.status_code == 200

    @pytest.mark.parametrize(
        "body",
        [
            {"is_staff": True},
            {"is_active": False},
            {"is_superuser": True},
            {"password": "x"},
            {"nonsense": 1},
        ],
    )
    def test_forbidden_and_unknown_fields_are_400_and_change_nothing(
        self, user: User, client_for: ClientFor, body: dict[str, Any]
    ) -> None:
        before = User.objects.get(pk=user.pk)
        response = client_for(user).patch(
            url(user), {**body, "display_name": "Sneaky"}, format="json"
        )
        error = assert_error(response, 400, "validation_error")
        assert set(error["fields"]) == set(body)
        after = User.objects.get(pk=user.pk)
        assert (after.display_name, after.is_staff, after.is_active, after.password) == (
            before.display_name,
            before.is_staff,
            before.is_active,
            before.password,
        )

    def test_cannot_change_another_user(self, user: User, client_for: ClientFor) -> None:
        other = UserFactory.create(display_name="Other")
        assert_error(
            client_for(user).patch(url(other), {"display_name": "X"}, format="json"),
            404,
            "not_found",
        )
        other.refresh_from_db()
        assert other.display_name == "Other"

    def test_staff_change_flags(self, staff: User, user: User, client_for: ClientFor) -> None:
        response = client_for(staff).patch(
            url(user), {"is_staff": True, "is_active": False}, format="json"
        )
        assert response.status_code == 200
        user.refresh_from_db()
        assert user.is_staff
        assert not user.is_active

    def test_staff_cannot_grant_superuser_through_the_api(
        self, staff: User, user: User, client_for: ClientFor
    ) -> None:
        response = client_for(staff).patch(url(user), {"is_superuser": True}, format="json")
        assert_error(response, 400, "validation_error")

    def test_put_is_not_allowed(self, user: User, client_for: ClientFor) -> None:
        assert_error(client_for(user).put(url(user), {}, format="json"), 405, "method_not_allowed")

    def test_non_object_body_is_400(self, user: User, client_for: ClientFor) -> None:
        assert_error(
            client_for(user).patch(url(user), [1, 2], format="json"), 400, "validation_error"
        )

    @pytest.mark.parametrize(
        "body",
        [{"display_name": 123}, {"email": ["a@example.com"]}, {"display_name": True}],
    )
    def test_values_of_the_wrong_json_type_are_400(
        self, body: dict[str, Any], user: User, client_for: ClientFor
    ) -> None:
        # DRF would coerce 123 to "123"; the schema promises a string.
        error = assert_error(
            client_for(user).patch(url(user), body, format="json"), 400, "validation_error"
        )
        assert set(error["fields"]) == set(body)


class TestPassword:
    def test_own_change_needs_current_password_and_keeps_this_token(
        self, user: User, client_for: ClientFor
    ) -> None:
        client = client_for(user)
        _other_token, other_secret = AuthToken.objects.create(user=user)

        missing = client.post(url(user, "password/"), {"password": STRONG}, format="json")
        assert set(assert_error(missing, 400, "validation_error")["fields"]) == {"current_password"}
        wrong = client.post(
            url(user, "password/"), {"current_password": "nope", "password": STRONG}, format="json"
        )
        assert set(assert_error(wrong, 400, "validation_error")["fields"]) == {"current_password"}

        ok = client.post(
            url(user, "password/"),
            {"current_password": DEFAULT_PASSWORD, "password": STRONG},
            format="json",
        )
        assert ok.status_code == 204
        user.refresh_from_db()
        assert user.check_password(STRONG)
        assert client.get("/api/v1/users/me/").status_code == 200
        stolen = APIClient()
        stolen.credentials(HTTP_AUTHORIZATION=f"Bearer {other_secret}")
        assert_error(stolen.get("/api/v1/users/me/"), 401, "authentication_failed")

    def test_staff_set_another_users_password_without_current(
        self, staff: User, user: User, client_for: ClientFor
    ) -> None:
        response = client_for(staff).post(
            url(user, "password/"), {"password": STRONG}, format="json"
        )
        assert response.status_code == 204
        user.refresh_from_db()
        assert user.check_password(STRONG)

    def test_cannot_change_another_users_password(self, user: User, client_for: ClientFor) -> None:
        other = UserFactory.create()
        response = client_for(user).post(
            url(other, "password/"),
            {"current_password": DEFAULT_PASSWORD, "password": STRONG},
            format="json",
        )
        assert_error(response, 404, "not_found")


class TestDestroy:
    def test_deactivates_and_tokens_stop_working(self, user: User, client_for: ClientFor) -> None:
        client = client_for(user)
        assert client.delete(url(user)).status_code == 204
        user.refresh_from_db()
        assert not user.is_active
        assert_error(client.get("/api/v1/users/me/"), 401, "authentication_failed")

    def test_cannot_delete_another_user(self, user: User, client_for: ClientFor) -> None:
        other = UserFactory.create()
        assert_error(client_for(user).delete(url(other)), 404, "not_found")
        other.refresh_from_db()
        assert other.is_active

    def test_staff_deactivate_anyone(self, staff: User, user: User, client_for: ClientFor) -> None:
        assert client_for(staff).delete(url(user)).status_code == 204
        user.refresh_from_db()
        assert not user.is_active

    def test_a_revocation_redis_cannot_record_is_a_503_that_changes_nothing(
        self, staff: User, user: User, client_for: ClientFor, redis_down: None, settings: Any
    ) -> None:
        settings.AUTH_REVOCATION_TIMEOUT = 0.2
        client = client_for(staff)
        AuthToken.objects.create(user=user)
        assert_error(client.delete(url(user)), 503, "service_unavailable")
        user.refresh_from_db()
        assert user.is_active
        assert AuthToken.objects.filter(user=user).exists()


class TestList:
    def test_non_staff_and_anonymous_cannot_list(
        self, user: User, client_for: ClientFor, api_client: APIClient
    ) -> None:
        assert_error(client_for(user).get("/api/v1/users/"), 403, "permission_denied")
        assert_error(api_client.get("/api/v1/users/"), 401, "not_authenticated")

    def test_default_page_and_cap(self, staff: User, client_for: ClientFor) -> None:
        UserFactory.create_batch(210)
        client = client_for(staff)

        assert len(client.get("/api/v1/users/").json()["results"]) == 50
        assert len(client.get("/api/v1/users/?page_size=10").json()["results"]) == 10
        assert len(client.get("/api/v1/users/?page_size=100000").json()["results"]) == 200

    def test_cursor_is_stable_while_rows_are_inserted(
        self, staff: User, client_for: ClientFor
    ) -> None:
        start = timezone.now() - timedelta(days=1)
        for i in range(6):
            UserFactory.create(date_joined=start + timedelta(minutes=i))
        client = client_for(staff)
        seen: list[str] = []

        page = client.get("/api/v1/users/?page_size=3").json()
        seen += [u["id"] for u in page["results"]]
        UserFactory.create_batch(2)
        while page["next"]:
            page = client.get(page["next"]).json()
            seen += [u["id"] for u in page["results"]]
            UserFactory.create()

        ordered = list(User.objects.order_by("date_joined", "id").values_list("id", flat=True))
        assert len(seen) == len(set(seen))
        assert seen == [str(i) for i in ordered[: len(seen)]]
        assert len(seen) >= 7

    def test_filters(self, staff: User, client_for: ClientFor) -> None:
        target = UserFactory.create(email="find@example.com")
        UserFactory.create(is_active=False)
        client = client_for(staff)

        found = client.get("/api/v1/users/?email=FIND@example.com").json()["results"]
        assert [u["id"] for u in found] == [str(target.pk)]
        inactive = client.get("/api/v1/users/?is_active=false").json()["results"]
        assert [u["is_active"] for u in inactive] == [False]

    @pytest.mark.parametrize(
        "query",
        [
            "is_active=maybe",
            "joined_after=yesterday",
            "joined_before=2026-02-30",
            # Found by Schemathesis (core/tests/test_api_fuzz.py):
            "joined_before=",  # empty: was ignored, listing everyone
            "email=",
            "joined_after=0001-01-01T00:00:00%2B05:00",  # before year 1 in UTC
            "page_size=null",  # was ignored, the default used
            "page_size=0",
            "page_size=-5",
        ],
    )
    def test_invalid_filters_are_400(self, staff: User, client_for: ClientFor, query: str) -> None:
        error = assert_error(
            client_for(staff).get(f"/api/v1/users/?{query}"), 400, "validation_error"
        )
        assert set(error["fields"]) == {query.split("=")[0]}

    def test_offsets_postgresql_refuses_are_converted_to_utc(
        self, staff: User, client_for: ClientFor
    ) -> None:
        # ISO 8601 allows +18:03; PostgreSQL refuses offsets past 15:59 (this was a 500).
        response = client_for(staff).get("/api/v1/users/?joined_before=4184-04-16T12:36:01%2B18:03")
        assert response.status_code == 200
        assert len(response.json()["results"]) == 1

    def test_query_count_does_not_grow_with_page(
        self, staff: User, client_for: ClientFor, django_assert_num_queries
    ) -> None:
        UserFactory.create_batch(60)
        client = client_for(staff)
        # Token lookup (cached once warm, see users/tests/test_cache.py), one page
        # query: no COUNT, no N+1.
        with django_assert_num_queries(2):
            assert len(client.get("/api/v1/users/?page_size=60").json()["results"]) == 60


class TestTokens:
    def test_login_read_logout(self, api_client: APIClient) -> None:
        user = UserFactory.create(email="ann@example.com")
        response = api_client.post(
            "/api/v1/auth/token/",
            {"email": "Ann@Example.com", "password": DEFAULT_PASSWORD},
            format="json",
        )
        assert response.status_code == 200
        body = response.json()
        assert body["user"]["id"] == str(user.pk)
        assert body["expiry"]
        stored = AuthToken.objects.get(user=user)
        assert body["token"] not in (stored.digest, stored.token_key)

        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
        assert api_client.get("/api/v1/users/me/").status_code == 200
        assert api_client.post("/api/v1/auth/logout/").status_code == 204
        assert_error(api_client.get("/api/v1/users/me/"), 401, "authentication_failed")
        assert not AuthToken.objects.exists()

    def test_wrong_password_and_unknown_email_look_alike(self, api_client: APIClient) -> None:
        UserFactory.create(email="ann@example.com")
        wrong = api_client.post(
            "/api/v1/auth/token/", {"email": "ann@example.com", "password": "x"}, format="json"
        )
        unknown = api_client.post(
            "/api/v1/auth/token/",
            {"email": "who@example.com", "password": DEFAULT_PASSWORD},
            format="json",
        )
        assert assert_error(wrong, 400, "invalid_credentials") == assert_error(
            unknown, 400, "invalid_credentials"
        )

    def test_just_signed_up_user_can_log_in(self, api_client: APIClient) -> None:
        api_client.post(
            "/api/v1/users/", {"email": "fresh@example.com", "password": STRONG}, format="json"
        )
        response = api_client.post(
            "/api/v1/auth/token/", {"email": "fresh@example.com", "password": STRONG}, format="json"
        )
        assert response.status_code == 200

    def test_expired_token_fails(self, user: User, api_client: APIClient) -> None:
        token, secret = AuthToken.objects.create(user=user, expiry=timedelta(seconds=60))
        AuthToken.objects.filter(pk=token.pk).update(expiry=timezone.now() - timedelta(seconds=1))
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert_error(api_client.get("/api/v1/users/me/"), 401, "authentication_failed")
        assert not AuthToken.objects.filter(pk=token.pk).exists()

    def test_token_lifetime_comes_from_settings(self, api_client: APIClient, settings: Any) -> None:
        UserFactory.create(email="ann@example.com")
        settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_TTL": timedelta(minutes=5)}
        before = timezone.now()
        api_client.post(
            "/api/v1/auth/token/",
            {"email": "ann@example.com", "password": DEFAULT_PASSWORD},
            format="json",
        )
        expiry = AuthToken.objects.get().expiry
        assert expiry is not None
        assert before + timedelta(minutes=4) < expiry <= timezone.now() + timedelta(minutes=5)

    def test_deactivated_users_token_fails(self, user: User, api_client: APIClient) -> None:
        _, secret = AuthToken.objects.create(user=user)
        User.objects.filter(pk=user.pk).update(is_active=False)
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert_error(api_client.get("/api/v1/users/me/"), 401, "authentication_failed")

    @pytest.mark.parametrize(
        "header", ["Bearer", "Bearer a b", "Bearer not-a-real-token", "Bearer \u00e9"]
    )
    def test_malformed_tokens_are_401(self, api_client: APIClient, header: str) -> None:
        api_client.credentials(HTTP_AUTHORIZATION=header)
        assert_error(api_client.get("/api/v1/users/me/"), 401, "authentication_failed")

    def test_login_backs_off_per_email_across_ips(
        self, api_client: APIClient, settings: Any
    ) -> None:
        UserFactory.create(email="ann@example.com")
        settings.LOGIN_FREE_FAILURES_PER_EMAIL = 3
        body = {"email": "ann@example.com", "password": "wrong"}
        for i in range(3):
            response = api_client.post(
                "/api/v1/auth/token/", body, format="json", REMOTE_ADDR=f"10.0.0.{i}"
            )
            assert response.status_code == 400
        blocked = api_client.post(
            "/api/v1/auth/token/",
            {**body, "email": "ANN@example.com"},
            format="json",
            REMOTE_ADDR="10.0.0.9",
        )
        assert_error(blocked, 429, "throttled")
        other = api_client.post(
            "/api/v1/auth/token/", {**body, "email": "bob@example.com"}, format="json"
        )
        assert other.status_code == 400

    def test_login_is_throttled_per_ip(self, api_client: APIClient, throttle_rates: Any) -> None:
        throttle_rates(login_ip="2/minute")
        for i in range(2):
            api_client.post(
                "/api/v1/auth/token/",
                {"email": f"u{i}@example.com", "password": "x"},
                format="json",
            )
        blocked = api_client.post(
            "/api/v1/auth/token/", {"email": "u9@example.com", "password": "x"}, format="json"
        )
        assert_error(blocked, 429, "throttled")


class TestSuperusersAreChangedOnlyBySuperusers:
    @pytest.fixture
    def superuser(self, db: None) -> User:
        return UserFactory.create(is_staff=True, is_superuser=True, display_name="Root")

    @pytest.mark.parametrize(
        ("method", "suffix", "body"),
        [
            ("patch", "", {"display_name": "Owned"}),
            ("delete", "", None),
            ("post", "password/", {"password": STRONG}),
        ],
    )
    def test_staff_cannot_take_over_a_superuser(
        self,
        staff: User,
        superuser: User,
        client_for: ClientFor,
        method: str,
        suffix: str,
        body: dict[str, Any] | None,
    ) -> None:
        before = User.objects.get(pk=superuser.pk)
        response = getattr(client_for(staff), method)(url(superuser, suffix), body, format="json")
        assert_error(response, 403, "permission_denied")
        after = User.objects.get(pk=superuser.pk)
        assert (after.display_name, after.is_active, after.password) == (
            before.display_name,
            before.is_active,
            before.password,
        )

    def test_staff_still_read_a_superuser(
        self, staff: User, superuser: User, client_for: ClientFor
    ) -> None:
        assert client_for(staff).get(url(superuser)).status_code == 200

    def test_a_superuser_may_change_another(self, superuser: User, client_for: ClientFor) -> None:
        other = UserFactory.create(is_staff=True, is_superuser=True)
        response = client_for(superuser).patch(url(other), {"display_name": "Ok"}, format="json")
        assert response.status_code == 200
