"""users.admin: staff manage users, and every change goes through the services."""

from typing import Any

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

    confirm = admin_client_.post(
        "/admin/users/user/", {"action": "deactivate_users", "_selected_action": ids, "index": 0}
    )
    # First a confirmation page that lists the users and changes nothing.
    assert confirm.status_code == 200
    assert "Deactivate 2 users?" in confirm.content.decode()
    assert all(user.email in confirm.content.decode() for user in users)
    assert User.objects.filter(pk__in=ids, is_active=True).count() == 2

    # The confirmation form posts back without `index`, with post=yes.
    done = admin_client_.post(
        "/admin/users/user/",
        {"action": "deactivate_users", "_selected_action": ids, "post": "yes"},
        follow=True,
    )
    assert "Deactivated 2 users." in done.content.decode()
    assert not User.objects.filter(pk__in=ids, is_active=True).exists()
    assert not AuthToken.objects.filter(user__in=users).exists()

    admin_client_.post(
        "/admin/users/user/",
        {"action": "reactivate_users", "_selected_action": ids, "post": "yes"},
    )
    assert User.objects.filter(pk__in=ids, is_active=True).count() == 2
    for user in users:
        history = admin_client_.get(f"/admin/users/user/{user.pk}/history/").content.decode()
        assert "Deactivated." in history
        assert "Reactivated." in history


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


# --- Search and the changelist ------------------------------------------------------------


def test_search_matches_prefixes_of_email_and_name_ignoring_case(admin_client_: Client) -> None:
    ann = UserFactory.create(email="ann.lovelace@example.com", display_name="Ann Lovelace")
    UserFactory.create(email="bob@example.com", display_name="Bob Annan")

    for term in ("ANN.LOVE", "ann lov", "Ann.Lovelace@Example.com", str(ann.pk)):
        found = admin_client_.get("/admin/users/user/", {"q": term})
        assert list(found.context["cl"].result_list) == [ann], term

    # Prefixes only (no `%term%` full scan): the middle of a name finds nothing.
    middle = admin_client_.get("/admin/users/user/", {"q": "ovelace"})
    assert list(middle.context["cl"].result_list) == []


def test_changelist_queries_are_pinned_and_fetch_only_listed_columns(
    admin_client_: Client, django_assert_num_queries
) -> None:
    UserFactory.create_batch(5)
    # Session, staff user, count of the search's matches, the page itself.
    with django_assert_num_queries(4) as captured:
        response = admin_client_.get("/admin/users/user/", {"q": "user"})
    assert response.status_code == 200
    page_query = captured.captured_queries[-1]["sql"]
    assert 'ORDER BY "users_user"."date_joined" DESC, "users_user"."id" DESC' in page_query
    assert '"users_user"."email"' in page_query
    assert '"users_user"."password"' not in page_query
    assert '"users_user"."updated_at"' not in page_query


# --- Deactivate and reactivate ------------------------------------------------------------


def staff_client(*codenames: str) -> tuple[Client, User]:
    """A logged-in staff member (not a superuser) with these `users` permissions."""
    from django.contrib.auth.models import Permission

    staff = UserFactory.create(is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="users", codename__in=codenames)
    )
    client = Client()
    client.force_login(staff)
    return client, staff


def test_bulk_deactivation_leaves_out_the_acting_staff_member() -> None:
    client, staff = staff_client("view_user", "change_user")
    other = UserFactory.create()
    ids = [str(staff.pk), str(other.pk)]

    response = client.post(
        "/admin/users/user/",
        {"action": "deactivate_users", "_selected_action": ids, "post": "yes"},
        follow=True,
    )

    assert "You cannot deactivate yourself. You were left out." in response.content.decode()
    staff.refresh_from_db()
    other.refresh_from_db()
    assert staff.is_active
    assert not other.is_active


def test_bulk_actions_refuse_selections_over_the_limit(
    admin_client_: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from users import admin as users_admin

    monkeypatch.setattr(users_admin, "BULK_ACTION_LIMIT", 2)
    ids = [str(user.pk) for user in UserFactory.create_batch(3)]

    response = admin_client_.post(
        "/admin/users/user/",
        {"action": "deactivate_users", "_selected_action": ids, "post": "yes"},
        follow=True,
    )

    assert "Select at most 2 users at a time" in response.content.decode()
    assert User.objects.filter(pk__in=ids, is_active=True).count() == 3


def test_single_deactivate_and_reactivate_pages(admin_client_: Client, user: User) -> None:
    AuthToken.objects.create(user=user)
    change_page = admin_client_.get(f"/admin/users/user/{user.pk}/change/").content.decode()
    assert f"/admin/users/user/{user.pk}/deactivate/" in change_page

    confirm = admin_client_.get(f"/admin/users/user/{user.pk}/deactivate/")
    assert confirm.status_code == 200
    assert f"Deactivate {user.email}?" in confirm.content.decode()
    user.refresh_from_db()
    assert user.is_active

    response = admin_client_.post(f"/admin/users/user/{user.pk}/deactivate/")
    assert response.status_code == 302
    user.refresh_from_db()
    assert not user.is_active
    assert not AuthToken.objects.filter(user=user).exists()

    change_page = admin_client_.get(f"/admin/users/user/{user.pk}/change/").content.decode()
    assert f"/admin/users/user/{user.pk}/reactivate/" in change_page
    admin_client_.post(f"/admin/users/user/{user.pk}/reactivate/")
    user.refresh_from_db()
    assert user.is_active
    history = admin_client_.get(f"/admin/users/user/{user.pk}/history/").content.decode()
    assert "Deactivated." in history
    assert "Reactivated." in history


def test_single_status_pages_need_change_permission(user: User) -> None:
    client, _ = staff_client("view_user")
    assert client.post(f"/admin/users/user/{user.pk}/deactivate/").status_code == 403
    user.refresh_from_db()
    assert user.is_active


def test_single_status_pages_answer_404_for_unknown_ids(admin_client_: Client) -> None:
    assert admin_client_.get("/admin/users/user/not-a-uuid/deactivate/").status_code == 404


def test_staff_cannot_deactivate_themselves_on_the_single_page() -> None:
    client, staff = staff_client("view_user", "change_user")

    response = client.post(f"/admin/users/user/{staff.pk}/deactivate/", follow=True)

    assert "You cannot deactivate yourself." in response.content.decode()
    staff.refresh_from_db()
    assert staff.is_active


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("is_active", "You cannot deactivate yourself."),
        ("is_staff", "You cannot remove your own staff status."),
    ],
)
def test_staff_cannot_lock_themselves_out_in_the_change_form(field: str, message: str) -> None:
    client, staff = staff_client("view_user", "change_user")

    response = client.post(
        f"/admin/users/user/{staff.pk}/change/", change_form_data(staff, **{field: ""})
    )

    assert response.status_code == 200
    assert message in response.context["adminform"].form.errors[field]
    staff.refresh_from_db()
    assert staff.is_active
    assert staff.is_staff


def test_staff_may_still_edit_the_rest_of_their_own_record() -> None:
    client, staff = staff_client("view_user", "change_user")

    response = client.post(
        f"/admin/users/user/{staff.pk}/change/", change_form_data(staff, display_name="Me")
    )

    assert response.status_code == 302
    staff.refresh_from_db()
    assert staff.display_name == "Me"


# --- Permissions and history --------------------------------------------------------------


def test_staff_without_permissions_are_forbidden() -> None:
    client, _ = staff_client()
    assert client.get("/admin/users/user/").status_code == 403


def test_view_permission_shows_the_list_but_no_actions(user: User) -> None:
    client, _ = staff_client("view_user")

    page = client.get("/admin/users/user/")
    assert page.status_code == 200
    assert "deactivate_users" not in page.content.decode()
    client.post(
        "/admin/users/user/",
        {"action": "deactivate_users", "_selected_action": [str(user.pk)], "post": "yes"},
    )
    user.refresh_from_db()
    assert user.is_active


def test_change_form_edits_are_on_the_history_page(admin_client_: Client, user: User) -> None:
    admin_client_.post(
        f"/admin/users/user/{user.pk}/change/", change_form_data(user, display_name="Renamed")
    )

    entry = LogEntry.objects.get(object_id=str(user.pk))
    assert entry.is_change()
    history = admin_client_.get(f"/admin/users/user/{user.pk}/history/")
    assert history.status_code == 200
    assert "Changed Display name." in history.content.decode()


def test_facet_counts_are_never_computed(admin_client_: Client) -> None:
    page = admin_client_.get("/admin/users/user/", {"_facets": "True"})
    assert page.status_code == 200
    assert "Show counts" not in page.content.decode()


def test_pages_beyond_the_cap_are_neither_linked_nor_served(
    admin_client_: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from users import admin as users_admin

    monkeypatch.setattr(users_admin, "MAX_PAGES", 2)
    monkeypatch.setattr(users_admin.UserAdmin, "list_per_page", 2)
    UserFactory.create_batch(7)  # 8 users with the admin: 4 pages without the cap

    first = admin_client_.get("/admin/users/user/")
    assert first.context["cl"].paginator.num_pages == 2
    assert "?p=2" in first.content.decode()
    assert "?p=3" not in first.content.decode()
    assert admin_client_.get("/admin/users/user/", {"p": 2}).status_code == 200
    beyond = admin_client_.get("/admin/users/user/", {"p": 3})
    assert beyond.status_code == 302
    assert beyond["Location"].endswith("?e=1")


def test_staff_cannot_change_superusers_by_any_door() -> None:
    client, _ = staff_client("view_user", "change_user")
    boss = UserFactory.create(is_staff=True, is_superuser=True)
    other = UserFactory.create()

    assert client.post(f"/admin/users/user/{boss.pk}/deactivate/").status_code == 403
    password = client.post(
        f"/admin/users/user/{boss.pk}/password/", {"password1": STRONG, "password2": STRONG}
    )
    assert password.status_code == 403
    change = client.post(
        f"/admin/users/user/{boss.pk}/change/", change_form_data(boss, is_active="")
    )
    assert change.status_code == 403
    selected = [str(boss.pk), str(other.pk)]
    bulk = client.post(
        "/admin/users/user/",
        {"action": "deactivate_users", "_selected_action": selected, "post": "yes"},
        follow=True,
    )
    assert "Only superusers may change superusers" in bulk.content.decode()

    boss.refresh_from_db()
    other.refresh_from_db()
    assert boss.is_active
    assert not boss.check_password(STRONG)
    assert not other.is_active


def test_superusers_can_change_superusers(admin_client_: Client) -> None:
    boss = UserFactory.create(is_staff=True, is_superuser=True)
    assert admin_client_.post(f"/admin/users/user/{boss.pk}/deactivate/").status_code == 302
    boss.refresh_from_db()
    assert not boss.is_active


def test_a_deactivation_redis_cannot_record_is_reported_and_changes_nothing(
    admin_client_: Client, user: User, redis_down: None, settings: Any
) -> None:
    settings.AUTH_REVOCATION_TIMEOUT = 0.2
    AuthToken.objects.create(user=user)
    response = admin_client_.post(f"/admin/users/user/{user.pk}/deactivate/", follow=True)
    assert response.status_code == 200
    assert "nothing was changed" in response.content.decode()
    user.refresh_from_db()
    assert user.is_active
    assert AuthToken.objects.filter(user=user).exists()
