"""Top-level URL configuration. API routes live under /api/v1/."""

from django.contrib import admin
from django.urls import include, path, re_path

from core.http.api_docs import SchemaView, SwaggerView
from core.http.exceptions import route_not_found
from core.observability.health import healthz, readyz
from core.observability.metrics import metrics

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("users.api.urls")),
    path("api/v1/", include("events.api.urls")),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SwaggerView.as_view(url_name="schema"), name="docs"),
    # Last: any other path is a JSON 404, with DEBUG on too (Django's debug 404 is HTML).
    re_path(r"", route_not_found),
]

# Every error outside DRF views (unknown routes, CSRF, crashes) gets the API's JSON shape.
handler400 = "core.http.exceptions.bad_request"
handler403 = "core.http.exceptions.permission_denied"
handler404 = "core.http.exceptions.page_not_found"
handler500 = "core.http.exceptions.server_error"
