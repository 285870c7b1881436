"""users/management/commands/seed_users.py: many valid users, fast."""

import pytest
from django.core.management import call_command

from users.models import User

pytestmark = pytest.mark.django_db


def test_seeds_valid_users_that_share_one_password(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("seed_users", 250, "--password", "seeded-harbour-lantern-7", "--seed", "3")

    users = list(User.objects.using("default").all())
    assert len(users) == 250
    assert "Seeded 250 users" in capsys.readouterr().out
    assert len({user.password for user in users}) == 1
    assert users[0].check_password("seeded-harbour-lantern-7")
    for user in users[:20]:
        user.full_clean()  # canonical email, valid fields
        assert not user.is_staff
        assert " " in user.display_name


def test_repeated_runs_add_users_without_collisions() -> None:
    call_command("seed_users", 30, "--seed", "1")
    call_command("seed_users", 30, "--seed", "1")

    assert User.objects.using("default").count() == 60
    assert not User.objects.using("default").earliest("date_joined").has_usable_password()
