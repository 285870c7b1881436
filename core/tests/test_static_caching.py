"""Static files (the admin's, the API docs') as production serves them: collected under
content-hashed names by the manifest storage, and served by WhiteNoise as immutable."""

from pathlib import Path

import pytest
from django.core.management import call_command
from django.templatetags.static import static
from django.test import Client, override_settings

MANIFEST_STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}


@pytest.mark.parametrize(
    "name", ["admin/css/base.css", "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css"]
)
def test_hashed_static_files_are_immutable(tmp_path: Path, name: str) -> None:
    with override_settings(STATIC_ROOT=tmp_path, STORAGES=MANIFEST_STORAGES, DEBUG=False):
        call_command("collectstatic", interactive=False, verbosity=0)
        hashed = static(name)
        assert hashed != f"/static/{name}"
        # A new client loads the middleware anew, so WhiteNoise indexes this STATIC_ROOT.
        client = Client()
        served = client.get(hashed)
        assert served.status_code == 200
        cache_control = {part.strip() for part in served["Cache-Control"].split(",")}
        assert {"public", "immutable", "max-age=315360000"} <= cache_control
        # The unhashed name is not immutable: it changes with each release.
        plain = client.get(f"/static/{name}")
        assert "immutable" not in plain["Cache-Control"]
