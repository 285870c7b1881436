"""Conditional reads of users (core.http.conditional in users.api.views): ETags, 304s and
the caching headers, for the writer, another client of the same user and a staff reader
(real PostgreSQL and Redis of `make test`)."""

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from users.models import User
from users.tests.factories import DEFAULT_PASSWORD, UserFactory

# Caches are filled only outside transactions, so these tests commit.
pytestmark = pytest.mark.django_db(transaction=True)

ClientFor = Callable[[User], APIClient]
ME = "/api/v1/users/me/"
LIST = "/api/v1/users/"


def url(user: User) -> str:
    return f"/api/v1/users/{user.pk}/"


def revalidate(client: APIClient, path: str, etag: str) -> Any:
    return client.get(path, HTTP_IF_NONE_MATCH=etag)


def assert_not_modified(response: Any, etag: str) -> None:
    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag
    assert_per_user_headers(response)


def assert_per_user_headers(response: Any) -> None:
    cache_control = {part.strip() for part in response["Cache-Control"].split(",")}
    assert {"private", "no-cache"} <= cache_control
    vary = {part.strip().lower() for part in response["Vary"].split(",")}
    assert {"accept", "authorization", "cookie"} <= vary


def test_a_read_is_tagged_and_revalidates_without_a_query(
    services: dict[str, str], user: User, client_for: ClientFor, django_assert_num_queries: Any
) -> None:
    client = client_for(user)
    first = client.get(url(user))
    assert first.status_code == 200
    etag = first["ETag"]
    assert etag.startswith('"')
    assert not etag.startswith('W/"')
    assert_per_user_headers(first)
    with django_assert_num_queries(0):
        assert_not_modified(revalidate(client, url(user), etag), etag)
    # A tag that is not current gets the full answer.
    stale = revalidate(client, url(user), '"0"')
    assert stale.status_code == 200
    assert stale["ETag"] == etag


def test_a_write_changes_the_tag_for_the_writer_and_another_client(
    services: dict[str, str], user: User, client_for: ClientFor
) -> None:
    writer, other = client_for(user), client_for(user)
    etag = writer.get(url(user))["ETag"]
    assert other.get(ME)["ETag"] == etag
    assert_not_modified(revalidate(other, ME, etag), etag)

    changed = writer.patch(url(user), {"display_name": "Renamed"}, format="json")
    assert changed.status_code == 200

    for client, path in ((writer, url(user)), (other, url(user)), (other, ME)):
        response = revalidate(client, path, etag)
        assert response.status_code == 200
        assert response.json()["display_name"] == "Renamed"
        assert response["ETag"] != etag
        assert_not_modified(revalidate(client, path, response["ETag"]), response["ETag"])


def test_a_staff_reader_sees_a_users_write_at_once(
    services: dict[str, str], staff: User, user: User, client_for: ClientFor
) -> None:
    reader = client_for(staff)
    UserFactory.create_batch(3)
    detail_tag = reader.get(url(user))["ETag"]
    page = reader.get(LIST)
    assert page.status_code == 200
    page_tag = page["ETag"]
    assert_per_user_headers(page)
    assert_not_modified(revalidate(reader, LIST, page_tag), page_tag)

    client_for(user).patch(url(user), {"display_name": "Renamed"}, format="json")

    detail = revalidate(reader, url(user), detail_tag)
    assert detail.status_code == 200
    assert detail.json()["display_name"] == "Renamed"
    page = revalidate(reader, LIST, page_tag)
    assert page.status_code == 200
    assert "Renamed" in {row["display_name"] for row in page.json()["results"]}
    assert page["ETag"] != page_tag


def test_each_page_has_its_own_tag(
    services: dict[str, str], staff: User, client_for: ClientFor
) -> None:
    reader = client_for(staff)
    UserFactory.create_batch(4)
    first = reader.get(LIST, {"page_size": 2})
    second = reader.get(first.json()["next"])
    assert first["ETag"] != second["ETag"]
    assert revalidate(reader, first.json()["next"], first["ETag"]).status_code == 200


def test_tags_are_only_for_json(
    services: dict[str, str], user: User, client_for: ClientFor
) -> None:
    client = client_for(user)
    etag = client.get(url(user))["ETag"]
    page = client.get(url(user), HTTP_ACCEPT="text/html", HTTP_IF_NONE_MATCH=etag)
    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    assert not page.has_header("ETag")
    assert_per_user_headers(page)


def test_errors_are_private_too(
    services: dict[str, str], user: User, client_for: ClientFor, api_client: APIClient
) -> None:
    other = UserFactory.create()
    assert_per_user_headers(client_for(user).get(url(other)))
    assert_per_user_headers(api_client.get(url(user)))


def test_a_new_token_is_never_stored(services: dict[str, str], user: User) -> None:
    response = APIClient().post(
        "/api/v1/auth/token/",
        {"email": user.email, "password": DEFAULT_PASSWORD},
        format="json",
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert_per_user_headers(response)
