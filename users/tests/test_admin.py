"""users.admin: staff manage users, and every change goes through the services."""

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from knox.models import AuthToken

from users.models import User
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

STRONG = "violet-harbour-lantern-42"


@pytest.fixture
def admin_client_() -> Client:
    client = Client()
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))
    return client


def change_form_data(user: User, **overrides: str) -> dict[str, str]:
    data = {
        "email": user.email,
        "display_name": user.display_name,
        "is_active": "on" if user.is_active else "",
        "is_staff": "on" if user.is_staff else "",
        "is_superuser": "on" if user.is_superuser else "",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value != ""}


def test_changelist_and_search(admin_client_: Client) -> None:
    UserFactory.create(email="needle@example.com", display_name="Needle")
    UserFactory.create_batch(3)

    page = admin_client_.get("/admin/users/user/")
    assert page.status_code == 200

    found = admin_client_.get("/admin/users/user/", {"q": "needle@"})
    assert found.status_code == 200
    assert list(found.context["cl"].result_list.values_list("email", flat=True)) == [
        "needle@example.com"
    ]


def test_non_staff_are_sent_to_login(user: User) -> None:
    client = Client()
    client.force_login(user)
    response = client.get("/admin/users/user/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_add_goes_through_the_service(admin_client_: Client) -> None:
    response = admin_client_.post(
        "/admin/users/user/add/",
        {
            "email": "Added@Example.com",
            "display_name": "Added",
            "password1": STRONG,
            "password2": STRONG,
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    created = User.objects.get(email="added@example.com")
    assert created.check_password(STRONG)
    assert LogEntry.objects.filter(object_id=str(created.pk)).exists()


def test_add_refuses_a_weak_password(admin_client_: Client) -> None:
    response = admin_client_.post(
        "/admin/users/user/add/",
        {"email": "weak@example.com", "password1": "123", "password2": "123"},
    )
    assert response.status_code == 200
    assert not User.objects.filter(email="weak@example.com").exists()


def test_deactivating_in_the_change_form_revokes_tokens(admin_client_: Client, user: User) -> None:
    AuthToken.objects.create(user=user)
    response = admin_client_.post(
        f"/admin/users/user/{user.pk}/change/", change_form_data(user, is_active="")
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert not user.is_active
    assert not AuthToken.objects.filter(user=user).exists()
    assert LogEntry.objects.filter(object_id=str(user.pk)).exists()


def test_deactivate_and_reactivate_actions(admin_client_: Client) -> None:
    users = UserFactory.create_batch(2)
    for user in users:
        AuthToken.objects.create(user=user)
    ids = [str(user.pk) for user in users]

    admin_client_.post(
        "/admin/users/user/", {"action": "deactivate_users", "_selected_action": ids}
    )
    assert not User.objects.filter(pk__in=ids, is_active=True).exists()
    assert not AuthToken.objects.filter(user__in=users).exists()

    admin_client_.post(
        "/admin/users/user/", {"action": "reactivate_users", "_selected_action": ids}
    )
    assert User.objects.filter(pk__in=ids, is_active=True).count() == 2


def test_password_change_revokes_tokens(admin_client_: Client, user: User) -> None:
    AuthToken.objects.create(user=user)
    response = admin_client_.post(
        f"/admin/users/user/{user.pk}/password/", {"password1": STRONG, "password2": STRONG}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(STRONG)
    assert not AuthToken.objects.filter(user=user).exists()


def test_users_cannot_be_deleted(admin_client_: Client, user: User) -> None:
    response = admin_client_.post(f"/admin/users/user/{user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert User.objects.filter(pk=user.pk).exists()


def test_only_superusers_may_grant_superuser(user: User) -> None:
    client = Client()
    staff = UserFactory.create(is_staff=True)
    staff.user_permissions.add(*_user_permissions())
    client.force_login(staff)

    client.post(f"/admin/users/user/{user.pk}/change/", change_form_data(user, is_superuser="on"))

    user.refresh_from_db()
    assert not user.is_superuser


def _user_permissions() -> list:
    from django.contrib.auth.models import Permission

    return list(Permission.objects.filter(content_type__app_label="users"))


def test_password_login_can_be_disabled(admin_client_: Client, user: User) -> None:
    AuthToken.objects.create(user=user)
    response = admin_client_.post(
        f"/admin/users/user/{user.pk}/password/",
        {"usable_password": "false", "unset-password": "1"},
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert not user.has_usable_password()
    assert not AuthToken.objects.filter(user=user).exists()
