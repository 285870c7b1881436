"""Routes of the users API, mounted under /api/v1/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from users.api.views import LogoutView, TokenView, UserViewSet

# Path converters, not regexes: a viewset's `lookup_value_converter` shapes its ids.
router = SimpleRouter(use_regex_path=False)
router.register("users", UserViewSet, basename="user")

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="auth-token"),
    path("auth/logout/", LogoutView.as_view(), name="auth-logout"),
    *router.urls,
]
