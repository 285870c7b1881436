"""config.settings: production settings pass Django's deployment checks and refuse to run
with the development secret key."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    production = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("DJANGO_", "DATABASE_", "REDIS_", "CELERY_", "WEBHOOK_", "API_DOCS_")
        )
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**production, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def deploy_check(**env: str) -> subprocess.CompletedProcess[str]:
    """`check --deploy --fail-level WARNING` with production settings, plus `env`."""
    return run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY="a-production-like-secret-key-" + "x" * 40,
        DJANGO_ALLOWED_HOSTS="users.example.com",
        **env,
    )


def test_deploy_check_is_clean_with_production_settings() -> None:
    result = deploy_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_deploy_check_refuses_the_test_password_hasher() -> None:
    result = deploy_check(DJANGO_FAST_PASSWORD_HASHER="true")
    assert result.returncode != 0
    assert "core.W001" in result.stdout + result.stderr


def test_refuses_to_start_without_a_secret_key_when_not_debug() -> None:
    result = run_manage("check")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_refuses_an_empty_secret_key_when_not_debug() -> None:
    # A Secret whose value was left blank must stop the service, not run it keyless.
    result = run_manage("check", DJANGO_SECRET_KEY="")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr
