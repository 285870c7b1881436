"""events.api.views: /api/v1/webhooks/, staff only, the secret shown once."""

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from events.models import WebhookSubscription
from users.models import User
from users.topics import USER_CREATED, USER_UPDATED

pytestmark = pytest.mark.django_db

ClientFor = Callable[[User], APIClient]
URL = "/api/v1/webhooks/"
FIELDS = {"id", "url", "topics", "is_active", "created_at", "breaker_open"}


def error_code(response: Any, status: int) -> str:
    assert response.status_code == status, response.content
    return str(response.json()["error"]["code"])


def create(client: APIClient, **body: Any) -> Any:
    data = {"url": "https://hooks.example.com/in", "topics": [USER_CREATED], **body}
    return client.post(URL, data, format="json")


def test_only_staff_may_use_it(api_client: APIClient, user: User, client_for: ClientFor) -> None:
    assert error_code(api_client.get(URL), 401) == "not_authenticated"
    assert error_code(client_for(user).get(URL), 403) == "permission_denied"
    assert error_code(create(client_for(user)), 403) == "permission_denied"
    assert not WebhookSubscription.objects.exists()


def test_create_shows_the_generated_secret_once(staff: User, client_for: ClientFor) -> None:
    client = client_for(staff)
    response = create(client)

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == FIELDS | {"secret"}
    stored = WebhookSubscription.objects.get(pk=body["id"])
    assert body["secret"] == stored.secret
    assert len(stored.secret) >= 32

    listed = client.get(URL).json()["results"]
    assert [set(item) for item in listed] == [FIELDS]
    detail = client.get(f"{URL}{body['id']}/").json()
    assert "secret" not in detail
    assert stored.secret not in str(listed) + str(detail)


def test_a_given_secret_is_kept(staff: User, client_for: ClientFor) -> None:
    response = create(client_for(staff), secret="my-own-secret-of-length")
    assert response.json()["secret"] == "my-own-secret-of-length"


def test_invalid_input_names_each_field(staff: User, client_for: ClientFor) -> None:
    client = client_for(staff)
    response = client.post(
        URL,
        {"url": "not a url", "topics": ["user.renamed"], "secret": "short", "extra": 1},
        format="json",
    )
    assert error_code(response, 400) == "validation_error"
    assert set(response.json()["error"]["fields"]) == {"extra"}

    response = client.post(
        URL, {"url": "not a url", "topics": ["user.renamed"], "secret": "short"}, format="json"
    )
    assert error_code(response, 400) == "validation_error"
    assert set(response.json()["error"]["fields"]) == {"url", "topics", "secret"}


@override_settings(WEBHOOK_ALLOW_PRIVATE_TARGETS=False)
def test_internal_targets_are_a_validation_error(staff: User, client_for: ClientFor) -> None:
    response = create(client_for(staff), url="http://169.254.169.254/latest/meta-data")
    assert error_code(response, 400) == "validation_error"
    assert "url" in response.json()["error"]["fields"]


def test_update_and_delete(staff: User, client_for: ClientFor) -> None:
    client = client_for(staff)
    sub_id = create(client).json()["id"]

    response = client.patch(
        f"{URL}{sub_id}/", {"topics": [USER_UPDATED], "is_active": False}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["topics"] == [USER_UPDATED]
    assert response.json()["is_active"] is False
    response = client.patch(f"{URL}{sub_id}/", {"secret": "a-rotated-secret-value"}, format="json")
    assert "secret" not in response.json()
    assert WebhookSubscription.objects.get(pk=sub_id).secret == "a-rotated-secret-value"
    assert error_code(client.patch(f"{URL}{sub_id}/", {"id": "x"}, format="json"), 400) == (
        "validation_error"
    )

    assert client.delete(f"{URL}{sub_id}/").status_code == 204
    assert error_code(client.get(f"{URL}{sub_id}/"), 404) == "not_found"
    assert error_code(client.get(f"{URL}{uuid.uuid4()}/"), 404) == "not_found"


def test_the_list_is_paginated_oldest_first(staff: User, client_for: ClientFor) -> None:
    client = client_for(staff)
    created = [create(client, url=f"https://hooks.example.com/{n}").json()["id"] for n in range(3)]

    first = client.get(URL, {"page_size": 2}).json()
    second = client.get(first["next"]).json()

    assert [item["id"] for item in first["results"] + second["results"]] == created
    assert second["next"] is None
    assert error_code(client.get(URL, {"page_size": "0"}), 400) == "validation_error"


def test_only_a_canonical_uuid_names_a_subscription(staff: User, client_for: ClientFor) -> None:
    client = client_for(staff)
    sub_id = create(client).json()["id"]

    assert client.get(f"{URL}{sub_id}/").status_code == 200
    assert error_code(client.get(f"{URL}{sub_id.upper()}/"), 404) == "not_found"
    assert error_code(client.get(f"{URL}{sub_id[:-1]}/"), 404) == "not_found"
