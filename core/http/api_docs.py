"""The OpenAPI schema and its Swagger UI page, and who may read them.

Production serves both to staff only (API_DOCS_PUBLIC=false): the schema lists every
operation, the staff-only ones included, which tells an anonymous client nothing it
needs and an attacker where to look. `make run` (DEBUG) serves them to anyone.
"""

from typing import Any

from django.conf import settings
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class CanReadApiDocs(BasePermission):
    """Anyone when API_DOCS_PUBLIC is on; otherwise staff only."""

    def has_permission(self, request: Request, view: Any) -> bool:
        """Read at request time, so the setting can change without a restart of imports."""
        return bool(settings.API_DOCS_PUBLIC or (request.user and request.user.is_staff))


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 schema (YAML by default, `?format=json` for JSON)."""

    permission_classes = [CanReadApiDocs]
    http_method_names = ["get", "head"]


class SwaggerView(SpectacularSwaggerSplitView):
    """Swagger UI, its start-up script served from a URL of its own (no inline script)
    and its page's style from a static file (no inline style), as the CSP requires."""

    permission_classes = [CanReadApiDocs]
    # The page is a template; an OPTIONS answer has no template to render.
    http_method_names = ["get", "head"]
    template_name = "core/swagger_ui.html"
