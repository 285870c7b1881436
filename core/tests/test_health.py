"""core.health: liveness answers without touching any dependency."""

import pytest
from django.test import Client


@pytest.mark.django_db
def test_healthz_answers_without_the_database(django_assert_num_queries) -> None:
    with django_assert_num_queries(0):
        response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
