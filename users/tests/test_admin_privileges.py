"""Only superusers may change groups, permissions and superuser status in the admin,
their own included, whatever form, button or page a staff member uses."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from users.models import User
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

STRONG = "violet-harbour-lantern-42"
SAVE_BUTTONS = [{}, {"_continue": "1"}, {"_addanother": "1"}, {"_saveasnew": "1"}]


def staff_with(*codenames: str) -> tuple[Client, User]:
    staff = UserFactory.create(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(staff)
    return client, staff


def escalation(user: User, group: Group, **extra: str) -> dict:
    """A change form asking for every permission, a group and superuser status."""
    return {
        "email": user.email,
        "display_name": user.display_name,
        "is_active": "on",
        "is_staff": "on" if user.is_staff else "",
        "is_superuser": "on",
        "groups": [str(group.pk)],
        "user_permissions": [str(pk) for pk in Permission.objects.values_list("pk", flat=True)],
        **extra,
    }


def powers(user: User) -> tuple[bool, set[str], list[str]]:
    user = User.objects.get(pk=user.pk)
    return user.is_superuser, user.get_all_permissions(), list(user.groups.values_list("name"))


@pytest.fixture
def mighty_group() -> Group:
    group = Group.objects.create(name="mighty")
    group.permissions.set(Permission.objects.all())
    return group


@pytest.mark.parametrize("button", SAVE_BUTTONS, ids=["save", "continue", "addanother", "asnew"])
@pytest.mark.parametrize("whose", ["own", "another"])
def test_staff_cannot_grant_permissions_through_the_change_form(
    whose: str, button: dict, mighty_group: Group
) -> None:
    client, staff = staff_with("view_user", "change_user")
    target = staff if whose == "own" else UserFactory.create()
    before = powers(target)
    response = client.post(
        f"/admin/users/user/{target.pk}/change/", escalation(target, mighty_group, **button)
    )
    assert response.status_code in {200, 302, 403}
    assert powers(target) == before
    assert not powers(target)[0]


def test_the_change_form_shows_staff_no_privilege_inputs() -> None:
    client, staff = staff_with("view_user", "change_user")
    page = client.get(f"/admin/users/user/{staff.pk}/change/").content.decode()
    for field in ("is_superuser", "groups", "user_permissions"):
        assert f'name="{field}"' not in page


def test_staff_cannot_grant_permissions_when_adding_a_user(mighty_group: Group) -> None:
    client, _ = staff_with("view_user", "add_user", "change_user")
    data = {
        "email": "new@example.com",
        "display_name": "New",
        "password1": STRONG,
        "password2": STRONG,
        "usable_password": "true",
        **{
            k: v
            for k, v in escalation(UserFactory.build(), mighty_group).items()
            if k not in {"email", "display_name"}
        },
    }
    client.post("/admin/users/user/add/", data)
    created = User.objects.get(email="new@example.com")
    assert powers(created) == (False, set(), [])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/admin/auth/group/"),
        ("get", "/admin/auth/group/add/"),
        ("post", "/admin/auth/group/add/"),
        ("get", "/admin/auth/group/{pk}/change/"),
        ("post", "/admin/auth/group/{pk}/change/"),
        ("post", "/admin/auth/group/{pk}/delete/"),
    ],
)
def test_staff_cannot_edit_groups_even_with_group_permissions(
    method: str, path: str, mighty_group: Group
) -> None:
    client, staff = staff_with(
        "view_group", "add_group", "change_group", "delete_group", "change_user", "view_user"
    )
    weak = Group.objects.create(name="weak")
    staff.groups.add(weak)
    data = {
        "name": "weak",
        "permissions": [str(p) for p in Permission.objects.values_list("pk", flat=True)],
    }
    response = getattr(client, method)(path.format(pk=weak.pk), data if method == "post" else None)
    assert response.status_code == 403
    assert not weak.permissions.exists()
    assert Group.objects.filter(pk=weak.pk).exists()
    assert powers(staff)[1] == {
        "users.change_user",
        "users.view_user",
        "auth.view_group",
        "auth.add_group",
        "auth.change_group",
        "auth.delete_group",
    }


def test_superusers_can_change_groups_and_permissions(mighty_group: Group) -> None:
    client = Client()
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))
    target = UserFactory.create(is_staff=True)
    response = client.post(
        f"/admin/users/user/{target.pk}/change/", escalation(target, mighty_group)
    )
    assert response.status_code == 302
    is_superuser, _, groups = powers(target)
    assert is_superuser
    assert groups == [("mighty",)]
    assert client.get("/admin/auth/group/").status_code == 200
