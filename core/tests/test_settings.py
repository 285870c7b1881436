"""config.settings: production settings pass Django's deployment checks and refuse to run
with the development secret key."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from core.secret_keys import weakness

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


def test_production_settings_hash_passwords_with_argon2_whatever_the_environment() -> None:
    # The suite's MD5 hasher is in config.test_settings alone: no variable, not even one an
    # old environment file still sets, brings it into production settings.
    result = settings_of("print(settings.PASSWORD_HASHERS[0])", DJANGO_FAST_PASSWORD_HASHER="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "users.password_hashing.BoundedArgon2PasswordHasher"


def test_the_suite_runs_its_own_settings_with_a_fast_hasher() -> None:
    # What pytest applies and processes the tests start inherit; production never loads it.
    assert os.environ["DJANGO_SETTINGS_MODULE"] == "config.test_settings"
    assert settings.PASSWORD_HASHERS == ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_refuses_to_start_without_a_secret_key_when_not_debug() -> None:
    result = run_manage("check")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_refuses_an_empty_secret_key_when_not_debug() -> None:
    # A Secret whose value was left blank must stop the service, not run it keyless.
    result = run_manage("check", DJANGO_SECRET_KEY="")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


# --- Published and weak secrets are refused ---------------------------------------------

PUBLISHED = [
    line.strip()
    for line in (ROOT / "core" / "published_secrets.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]
# A secret written as a literal anywhere in the repository: `KEY: value`, `KEY=value`,
# `"KEY": "value"`, or a `${KEY:-default}` in compose.
_SECRET_LITERAL = re.compile(
    r"(?:DJANGO_SECRET_KEY|METRICS_TOKEN)[\"']?\s*[:=]\s*[\"']?(?!\$)([^\"'\s}]+)"
    r"|\$\{(?:DJANGO_SECRET_KEY|METRICS_TOKEN):-([^}]+)\}"
)


@pytest.mark.parametrize("key", PUBLISHED)
def test_refuses_every_published_secret_key(key: str) -> None:
    result = run_manage("check", DJANGO_SECRET_KEY=key)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


@pytest.mark.parametrize(
    "key",
    ["short-but-random-Zx81", "a" * 80, "ab" * 40, "django-insecure-" + secrets.token_urlsafe(50)],
)
def test_refuses_short_or_simple_keys(key: str) -> None:
    result = run_manage("check", DJANGO_SECRET_KEY=key)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_refuses_a_published_metrics_token() -> None:
    result = run_manage(
        "check",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        METRICS_TOKEN="compose-metrics-token-change-me",
    )
    assert result.returncode != 0
    assert "METRICS_TOKEN" in result.stderr


def test_accepts_a_fresh_random_key() -> None:
    result = run_manage("check", DJANGO_SECRET_KEY=secrets.token_urlsafe(50))
    assert result.returncode == 0, result.stderr


def test_every_secret_literal_in_the_repository_would_be_refused() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"],  # noqa: S607 (git from PATH, in a test)
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    found = set()
    for name in tracked:
        try:
            text = (ROOT / name).read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for match in _SECRET_LITERAL.finditer(text):
            value = match.group(1) or match.group(2)
            # A call (a secrets manager reference, say) is code, not a written-down value.
            if value and not value.startswith(("<", "$", "secrets.")) and "(" not in value:
                found.add(value)
    # The image leaves docs, deploy files and tests out: what it must still refuse is
    # either too weak on its face or listed in core/published_secrets.txt, which it ships.
    unguarded = {value for value in found if weakness(value, root=ROOT / "core") is None}
    assert not unguarded, f"add these to core/published_secrets.txt: {unguarded}"


def test_a_key_in_any_project_file_is_found(tmp_path: Path) -> None:
    key = secrets.token_urlsafe(50)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "example.md").write_text(f"DJANGO_SECRET_KEY={key}\n")
    assert "appears in the repository (docs/example.md)" in str(weakness(key, root=tmp_path))


@pytest.mark.parametrize("local", [".venv/lib/x.py", ".env", "deploy/.env.production", "prod.env"])
def test_local_state_and_env_files_are_not_read(tmp_path: Path, local: str) -> None:
    key = secrets.token_urlsafe(50)
    path = tmp_path / local
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key)
    assert weakness(key, root=tmp_path) is None


PRODUCTION_KEY = "a-production-like-secret-key-" + "x" * 40


def settings_of(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh process after loading the settings with `env` (no I/O)."""
    production = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "REDIS_", "CELERY_", "WEBHOOK_"))
    }
    setup = "import django; django.setup(); from django.conf import settings\n"
    return subprocess.run(
        [sys.executable, "-c", setup + code],
        cwd=ROOT,
        env={
            **production,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_SECRET_KEY": PRODUCTION_KEY,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("name", ["REDIS_URL", "CELERY_BROKER_URL"])
@pytest.mark.parametrize(
    "url",
    ["redis://cache.example.com:6379/0", "rediss://cache.example.com:6380/0", "redis://user@h/0"],
)
def test_refuses_a_redis_url_without_a_password_when_not_debug(name: str, url: str) -> None:
    result = settings_of("print('loaded')", **{name: url})
    assert result.returncode != 0
    assert f"{name} must carry a password" in result.stderr


def test_takes_redis_over_tls_with_a_password() -> None:
    # Parsed settings only, no TLS server: the cache's pool is built for TLS from the URL,
    # and the broker gets the URL as given (kombu reads `rediss://` and ssl_cert_reqs).
    url = "rediss://default:s3cret@cache.example.com:6380/0?ssl_cert_reqs=required"
    code = (
        "import redis\n"
        "from django.core.cache import caches\n"
        "pool = caches['default'].client.get_client().connection_pool\n"
        "print(pool.connection_class.__name__, pool.connection_kwargs['password'],\n"
        "      pool.connection_kwargs['ssl_cert_reqs'], settings.CELERY_BROKER_URL)\n"
    )
    broker = "rediss://default:s3cret@cache.example.com:6380/1?ssl_cert_reqs=required"
    result = settings_of(code, REDIS_URL=url, CELERY_BROKER_URL=broker)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["SSLConnection", "s3cret", "required", broker]


def test_every_cache_and_celery_refuse_pickle() -> None:
    code = (
        "from django.core.cache import caches\n"
        "from config.celery import app\n"
        "for alias in settings.CACHES:\n"
        "    print(type(caches[alias].client._serializer).__name__)\n"
        "print(sorted(app.conf.accept_content), sorted(app.conf.result_accept_content or []),\n"
        "      app.conf.task_serializer, app.conf.result_serializer, app.conf.event_serializer)\n"
    )
    result = settings_of(
        code,
        REDIS_URL="redis://default:pw@127.0.0.1:1/0",
        CELERY_BROKER_URL="redis://default:pw@127.0.0.1:1/1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "SafeJSONSerializer",
        "['json'] ['json'] json json json",
    ]


def test_no_project_module_unpickles() -> None:
    # Whatever Redis or the broker holds is only ever read as JSON: no pickle, no
    # modules that wrap it, anywhere outside the tests.
    unpicklers = re.compile(r"^\s*(import|from)\s+(pickle|cPickle|dill|shelve|jsonpickle)\b", re.M)
    skipped = {"tests", "browser_tests", "staticfiles", "artifacts"}
    sources = [
        path.relative_to(ROOT)
        for path in ROOT.rglob("*.py")
        if not any(part.startswith(".") or part in skipped for part in path.relative_to(ROOT).parts)
    ]
    assert Path("core/cache/backend.py") in sources
    offenders = [str(name) for name in sources if unpicklers.search((ROOT / name).read_text())]
    assert offenders == []
