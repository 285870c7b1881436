"""App configurations the project substitutes for a contrib app's default."""

from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    """`django.contrib.admin` with the login-throttled site of users.admin_site."""

    default_site = "users.admin_site.ThrottledAdminSite"
