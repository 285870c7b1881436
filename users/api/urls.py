"""Routes of the users API, mounted under /api/v1/."""

from typing import Any

from django.urls import URLPattern, path
from rest_framework.routers import SimpleRouter

from users.api.cached_detail import detail_view
from users.api.views import LogoutView, TokenView, UserViewSet

router = SimpleRouter()
router.register("users", UserViewSet, basename="user")


def _with_cached_detail(patterns: list[Any]) -> list[Any]:
    # The router's `users/{id}/` route, served through the cached answer first.
    return [
        URLPattern(p.pattern, detail_view(p.callback), p.default_args, p.name)
        if p.name == "user-detail"
        else p
        for p in patterns
    ]


urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="auth-token"),
    path("auth/logout/", LogoutView.as_view(), name="auth-logout"),
    *_with_cached_detail(router.urls),
]
