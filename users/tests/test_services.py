"""users.services: every write to a user."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from knox.models import AuthToken

from core.http.exceptions import InvalidCredentials
from events.models import OutboxEvent
from users import services
from users.models import User
from users.tasks import delete_expired_auth_tokens
from users.tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

STRONG = "violet-harbour-lantern-42"


class TestUserCreate:
    def test_creates_with_canonical_email_and_hashed_password(self) -> None:
        user = services.user_create(email="  Ann@Example.COM ", password=STRONG, display_name="Ann")

        stored = User.objects.get(pk=user.pk)
        assert stored.email == "ann@example.com"
        assert stored.display_name == "Ann"
        assert stored.check_password(STRONG)
        assert stored.password != STRONG
        assert stored.is_active
        assert not stored.is_staff
        assert not stored.is_superuser

    def test_email_is_unique_case_insensitively(self) -> None:
        services.user_create(email="ann@example.com", password=STRONG)

        with pytest.raises(ValidationError) as error:
            services.user_create(email="ANN@example.com", password=STRONG)

        assert "email" in error.value.message_dict
        assert User.objects.count() == 1

    @pytest.mark.parametrize("password", ["short", "password123", "12345678901"])
    def test_weak_passwords_are_refused(self, password: str) -> None:
        with pytest.raises(ValidationError):
            services.user_create(email="ann@example.com", password=password)
        assert not User.objects.exists()

    def test_password_similar_to_email_is_refused(self) -> None:
        with pytest.raises(ValidationError):
            services.user_create(email="lanternharbour@example.com", password="lanternharbour")

    def test_invalid_email_is_refused(self) -> None:
        with pytest.raises(ValidationError) as error:
            services.user_create(email="not-an-email", password=STRONG)
        assert "email" in error.value.message_dict

    def test_none_password_makes_an_unusable_one(self) -> None:
        user = services.user_create(email="sso@example.com", password=None)
        assert not user.has_usable_password()

    def test_database_refuses_a_mixed_case_email(self) -> None:
        with pytest.raises(IntegrityError), transaction.atomic():
            User.objects.bulk_create([User(email="Mixed@Example.com")])


class TestUserUpdate:
    def test_saves_only_changed_fields(self, django_assert_max_num_queries) -> None:
        user = UserFactory.create(display_name="Old")
        before = user.updated_at

        with django_assert_max_num_queries(10) as captured:
            services.user_update(user=user, data={"display_name": "New", "email": user.email})

        writes = [
            q["sql"]
            for q in captured.captured_queries
            if not q["sql"].startswith(("SELECT", "SAVEPOINT", "RELEASE"))
        ]
        # The user's UPDATE, then its user.updated event in the outbox.
        assert len(writes) == 2
        assert writes[1].startswith('INSERT INTO "events_outboxevent"')
        assert writes[0].startswith("UPDATE")
        assert '"display_name"' in writes[0]
        assert '"email"' not in writes[0]
        user.refresh_from_db()
        assert user.display_name == "New"
        assert user.updated_at > before

    def test_a_name_change_validates_without_queries(self, django_assert_num_queries) -> None:
        user = UserFactory.create(display_name="Old")
        # SAVEPOINT, the row read under lock, UPDATE, INSERT of the event, RELEASE: the
        # unchanged email's unique and lower-case checks are not run again, nor the new
        # event id's uniqueness.
        with django_assert_num_queries(5):
            services.user_update(user=user, data={"display_name": "New"})

    def test_an_email_change_is_validated(self) -> None:
        UserFactory.create(email="taken@example.com")
        user = UserFactory.create()
        with pytest.raises(ValidationError) as error:
            services.user_update(user=user, data={"email": "Taken@Example.com"})
        assert "email" in error.value.message_dict

    # The read locks the row: PostgreSQL's FOR UPDATE, which Django leaves out on SQLite.
    @pytest.mark.services
    def test_no_change_writes_nothing(self, django_assert_num_queries) -> None:
        user = UserFactory.create(display_name="Same")
        with django_assert_num_queries(3) as captured:  # SAVEPOINT, the locked read, RELEASE
            services.user_update(user=user, data={"display_name": "Same"})
        assert "FOR UPDATE" in captured.captured_queries[1]["sql"]
        assert not OutboxEvent.objects.exists()

    def test_a_change_starts_from_the_committed_row(self) -> None:
        # The caller's copy predates a demotion another writer committed: renaming from
        # it must not bring the old flag back, in the database or in what is cached.
        user = UserFactory.create(is_staff=True)
        User.objects.filter(pk=user.pk).update(is_staff=False)
        saved = services.user_update(user=user, data={"display_name": "Renamed"})
        assert saved.is_staff is False
        user.refresh_from_db()
        assert (user.display_name, user.is_staff) == ("Renamed", False)

    def test_a_stale_copy_does_not_skip_a_needed_write(self) -> None:
        user = UserFactory.create()
        User.objects.filter(pk=user.pk).update(is_active=False)
        services.user_reactivate(user=user)  # the copy says active already
        user.refresh_from_db()
        assert user.is_active

    def test_email_is_canonicalised_and_kept_unique(self) -> None:
        UserFactory.create(email="taken@example.com")
        user = UserFactory.create()

        with pytest.raises(ValidationError) as error:
            services.user_update(user=user, data={"email": "TAKEN@example.com"})
        assert "email" in error.value.message_dict

        services.user_update(user=user, data={"email": " Fresh@Example.com"})
        user.refresh_from_db()
        assert user.email == "fresh@example.com"

    def test_unknown_fields_are_refused(self) -> None:
        user = UserFactory.create()
        with pytest.raises(ValidationError) as error:
            services.user_update(user=user, data={"password": "x", "date_joined": None})
        assert set(error.value.message_dict) == {"password", "date_joined"}

    def test_deactivating_revokes_tokens(self) -> None:
        user = UserFactory.create()
        AuthToken.objects.create(user=user)

        services.user_update(user=user, data={"is_active": False})

        assert not AuthToken.objects.filter(user=user).exists()


class TestUserDeactivateAndReactivate:
    def test_deactivate_marks_inactive_and_revokes_all_tokens(self) -> None:
        user = UserFactory.create()
        other = UserFactory.create()
        AuthToken.objects.create(user=user)
        AuthToken.objects.create(user=user)
        AuthToken.objects.create(user=other)

        services.user_deactivate(user=user)

        user.refresh_from_db()
        assert not user.is_active
        assert not AuthToken.objects.filter(user=user).exists()
        assert AuthToken.objects.filter(user=other).count() == 1

    def test_deactivate_is_idempotent_and_reactivate_restores(self) -> None:
        user = UserFactory.create()
        services.user_deactivate(user=user)
        services.user_deactivate(user=user)
        services.user_reactivate(user=user)
        user.refresh_from_db()
        assert user.is_active


class TestUserSetPassword:
    def test_sets_password_and_revokes_other_tokens(self) -> None:
        user = UserFactory.create()
        kept, _ = AuthToken.objects.create(user=user)
        AuthToken.objects.create(user=user)

        services.user_set_password(user=user, password=STRONG, keep_token=kept)

        user.refresh_from_db()
        assert user.check_password(STRONG)
        assert list(AuthToken.objects.filter(user=user)) == [kept]

    def test_wrong_current_password_changes_nothing(self) -> None:
        user = UserFactory.create()
        with pytest.raises(ValidationError) as error:
            services.user_set_password(user=user, password=STRONG, current_password="wrong")
        assert "current_password" in error.value.message_dict
        user.refresh_from_db()
        assert user.check_password(DEFAULT_PASSWORD)

    def test_weak_password_is_refused(self) -> None:
        user = UserFactory.create()
        with pytest.raises(ValidationError):
            services.user_set_password(user=user, password="123")


class TestAuthTokens:
    def test_token_for_valid_credentials_stores_only_a_hash(self) -> None:
        user = UserFactory.create(email="ann@example.com")

        token, secret = services.auth_token_create(
            request=None, email="ANN@example.com", password=DEFAULT_PASSWORD
        )

        assert token.user == user
        assert secret not in {token.digest, token.token_key}
        assert len(secret) == 64
        assert token.expiry is not None
        assert token.expiry - token.created > timedelta(hours=1)

    @pytest.mark.parametrize(
        ("email", "password", "active"),
        [
            ("ann@example.com", "wrong-password", True),
            ("nobody@example.com", DEFAULT_PASSWORD, True),
            ("ann@example.com", DEFAULT_PASSWORD, False),
        ],
    )
    def test_bad_credentials_and_inactive_users_get_the_same_error(
        self, email: str, password: str, active: bool
    ) -> None:
        UserFactory.create(email="ann@example.com", is_active=active)
        with pytest.raises(InvalidCredentials):
            services.auth_token_create(request=None, email=email, password=password)
        assert not AuthToken.objects.exists()

    def test_revoke_deletes_only_that_token(self) -> None:
        user = UserFactory.create()
        first, _ = AuthToken.objects.create(user=user)
        second, _ = AuthToken.objects.create(user=user)

        services.auth_token_revoke(token=first)

        assert list(AuthToken.objects.all()) == [second]

    def test_expired_tokens_are_deleted_in_batches(self) -> None:
        user = UserFactory.create()
        expired = [AuthToken.objects.create(user=user)[0] for _ in range(5)]
        AuthToken.objects.filter(pk__in=[t.pk for t in expired]).update(
            expiry=timezone.now() - timedelta(seconds=1)
        )
        current, _ = AuthToken.objects.create(user=user)
        forever, _ = AuthToken.objects.create(user=user, expiry=None)

        assert services.auth_tokens_expired_delete(batch_size=2) == 5
        assert set(AuthToken.objects.all()) == {current, forever}
        assert services.auth_tokens_expired_delete(batch_size=2) == 0

    def test_the_scheduled_task_deletes_expired_tokens(self) -> None:
        token, _ = AuthToken.objects.create(user=UserFactory.create())
        AuthToken.objects.filter(pk=token.pk).update(expiry=timezone.now() - timedelta(seconds=1))
        assert delete_expired_auth_tokens.apply().get() == 1
        assert not AuthToken.objects.exists()
