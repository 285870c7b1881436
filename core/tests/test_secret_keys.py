"""core.secret_keys: which files the startup guard reads for published secrets."""

from pathlib import Path

from core.secret_keys import project_files, published_in


def test_local_state_and_environment_files_are_not_read(tmp_path: Path) -> None:
    key = "k" * 10 + "x1y2z3w4v5" * 5
    for local in (".venv", ".venv-runtime", "infra/.venv", "infra/cdk.out", "staticfiles"):
        (tmp_path / local).mkdir(parents=True)
        (tmp_path / local / "settings.py").write_text(f"KEY = {key!r}\n")
    (tmp_path / ".services.env").write_text(f"DJANGO_SECRET_KEY={key}\n")
    assert project_files(tmp_path) == []
    assert published_in(key, root=tmp_path) is None

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "defaults.py").write_text(f"KEY = {key!r}\n")
    assert published_in(key, root=tmp_path) == tmp_path / "config" / "defaults.py"
