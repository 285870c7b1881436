"""The startup guard against weak or published secrets (DJANGO_SECRET_KEY, METRICS_TOKEN).

A key that has ever been written into the repository (a compose default, a placeholder in
a manifest, a test fixture) must be treated as public: anyone holding it can forge
sessions, CSRF tokens and signed links. Rather than list the published values (the next
one added would be missed), the guard reads the project's own files at startup and
refuses a key found in any of them, along with keys too short or too simple to be
random (Django's own check, security.W009, uses the same bounds but only warns under
`check --deploy`).

The project's files are the tracked ones: local state (virtualenvs, caches, collected
static files) and local environment files (`.env`, `*.env`), where a real key may
rightly live, are not read. Django is not imported here: settings use it while loading.
"""

import os
from pathlib import Path

MIN_LENGTH = 50
MIN_UNIQUE_CHARACTERS = 5
_SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".venv",
        "venv",
        "node_modules",
        "staticfiles",
        "artifacts",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".hypothesis",
        "cdk.out",
    }
)
_MAX_FILE_BYTES = 2 * 1024 * 1024


def _is_local_env_file(name: str) -> bool:
    return name == ".env" or name.startswith(".env.") or name.endswith(".env")


def project_files(root: Path) -> list[Path]:
    """Every file of the project under `root`, without local state or local env files."""
    found: list[Path] = []
    for directory, subdirectories, files in os.walk(root):
        # Named virtualenvs (`make ... VENV=.venv-runtime`) are local state too.
        subdirectories[:] = [
            d for d in subdirectories if d not in _SKIPPED_DIRS and not d.startswith(".venv")
        ]
        found.extend(Path(directory, name) for name in files if not _is_local_env_file(name))
    return found


def published_in(value: str, *, root: Path) -> Path | None:
    """The first project file that contains `value`, or None."""
    needle = value.encode()
    for path in project_files(root):
        try:
            if path.stat().st_size > _MAX_FILE_BYTES:
                continue
            if needle in path.read_bytes():
                return path
        except OSError:
            continue
    return None


def weakness(value: str, *, root: Path, min_length: int = MIN_LENGTH) -> str | None:
    """Why `value` must not be used as a secret, or None if nothing is found against it."""
    if len(value) < min_length or len(set(value)) < MIN_UNIQUE_CHARACTERS:
        return (
            f"is too short or too simple (at least {min_length} characters, "
            f"{MIN_UNIQUE_CHARACTERS} different)"
        )
    if value.startswith("django-insecure"):
        return "is a development key"
    found = published_in(value, root=root)
    if found is not None:
        return f"appears in the repository ({found.relative_to(root)}), so it is public"
    return None
