"""Object-level rules of the users API beyond "yourself, or staff"."""

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView


class SuperusersChangedOnlyBySuperusers(BasePermission):
    """Staff who are not superusers may not change, deactivate or reset a superuser.

    Otherwise anyone with staff status could set a superuser's password and log in as
    them. The admin applies the same rule (users.admin).
    """

    message = "Only superusers may change a superuser."

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        """Allowed for oneself, for superusers, and on anyone who is not a superuser."""
        return bool(obj.pk == request.user.pk or request.user.is_superuser or not obj.is_superuser)
