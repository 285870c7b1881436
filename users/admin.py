"""Staff management of users. Every change goes through users.services, like the API's."""

from functools import cached_property
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import forms as auth_forms
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import BaseUserCreationForm
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from core.http.pagination import EstimatedCountPaginator
from users import selectors, services
from users.models import User

# Bulk status changes go through the services one user at a time (tokens revoked, events
# emitted); "select all" over a million users must not start a request that never ends.
BULK_ACTION_LIMIT = 1000
# The changelist's columns and its ordering: the rest of a row (the password hash,
# timestamps nobody reads there) is never fetched for it.
CHANGELIST_FIELDS = ("id", "email", "display_name", "is_active", "is_staff", "date_joined")
SELF_DEACTIVATION = "You cannot deactivate yourself."
# What makes a user more powerful than staff: only superusers may change these.
PRIVILEGE_FIELDS = ("is_superuser", "groups", "user_permissions")
# Pages are OFFSET queries: page 5,000 of a million users reads 500,000 index entries first
# (seconds). Past this page staff narrow the list with a search or a filter instead.
MAX_PAGES = 100


class UserCreationForm(BaseUserCreationForm):
    """Email, display name and a password checked by the password validators."""

    class Meta:
        model = User
        fields = ("email", "display_name")


class UserChangeForm(auth_forms.UserChangeForm):
    """The fields of a user; the password is shown as its hash summary and has its own form."""

    # True when staff edit their own record (set by UserAdmin.get_form).
    editing_self = False

    class Meta:
        model = User
        fields = ("email", "display_name", "is_active", "is_staff", "is_superuser")

    def clean(self) -> dict[str, Any] | None:
        """Staff cannot lock themselves out: no deactivating or un-staffing oneself."""
        cleaned = super().clean()
        if self.editing_self and cleaned is not None:
            errors = {}
            if "is_active" in cleaned and not cleaned["is_active"]:
                errors["is_active"] = SELF_DEACTIVATION
            if "is_staff" in cleaned and not cleaned["is_staff"]:
                errors["is_staff"] = "You cannot remove your own staff status."
            if errors:
                raise ValidationError(errors)
        return cleaned


class PasswordSetForm(auth_forms.AdminPasswordChangeForm):
    """The admin's password form, saving through `user_set_password` (which revokes tokens)."""

    def save(self, commit: bool = True) -> User:
        """Set the new password, or disable password login, through the service."""
        password = (
            self.cleaned_data["password1"] if self.cleaned_data["set_usable_password"] else None
        )
        return services.user_set_password(user=self.user, password=password)


class UserPaginator(EstimatedCountPaginator):
    """Estimated totals, and no page links (or pages) beyond MAX_PAGES."""

    @cached_property
    def num_pages(self) -> int:
        """At most MAX_PAGES; a page number beyond it is invalid, like one past the end."""
        return min(super().num_pages, MAX_PAGES)


class UserChangeList(ChangeList):
    """The changelist, fetching only the columns it shows."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
        """The filtered, searched, ordered users, with only the listed columns."""
        return super().get_queryset(request, exclude_parameters).only(*CHANGELIST_FIELDS)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Search, filter, edit, deactivate and reactivate users."""

    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = PasswordSetForm
    paginator = UserPaginator
    # The unfiltered total would be a second full COUNT on every search.
    show_full_result_count = False
    # Facet counts are one COUNT per filter choice over the whole table.
    show_facets = admin.ShowFacets.NEVER

    list_display = ("email", "display_name", "is_active", "is_staff", "date_joined")
    list_filter = ("is_active", "is_staff", "date_joined")
    search_fields = ("email", "display_name")
    search_help_text = "Start of an email or display name (any case), or a user id."
    # Newest first, walking the (date_joined, id) index backwards: no sort, no full scan.
    ordering = ("-date_joined", "-id")
    readonly_fields = ("id", "date_joined", "updated_at", "last_login")
    fieldsets = (
        (None, {"fields": ("id", "email", "password", "display_name")}),
        ("Status", {"fields": ("is_active", "is_staff", "is_superuser")}),
        ("Permissions", {"fields": ("groups", "user_permissions")}),
        ("Dates", {"fields": ("date_joined", "updated_at", "last_login")}),
    )
    add_fieldsets = ((None, {"fields": ("email", "display_name", "password1", "password2")}),)
    filter_horizontal = ("groups", "user_permissions")
    actions = ("deactivate_users", "reactivate_users")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        """The changelist that fetches only its columns."""
        return UserChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[User], search_term: str
    ) -> tuple[QuerySet[User], bool]:
        """Prefix search on email and display name, served by indexes (see user_search).

        Django's default, `icontains` on each search field, reads the whole table.
        """
        return selectors.user_search(queryset=queryset, term=search_term), False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        """Only superusers may grant or remove superuser status, groups and permissions.

        Read-only fields are left out of the form, so whatever a POST says about them is
        ignored: a staff member holding only `change_user` cannot hand himself (or an
        accomplice) every permission through his own change form.
        """
        readonly = tuple(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            readonly += PRIVILEGE_FIELDS
        return readonly

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool
    ) -> None:
        """Groups and permissions are saved only for superusers, whatever the form held."""
        if not request.user.is_superuser and any(f in form.fields for f in PRIVILEGE_FIELDS):
            raise PermissionDenied
        super().save_related(request, form, formsets, change)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        """On one's own record, the form refuses self-deactivation and self-unstaffing."""
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is not None and obj.pk == request.user.pk:
            return type("OwnUserChangeForm", (form,), {"editing_self": True})
        return form

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Only superusers may change a superuser.

        Otherwise any staff member with `change_user` could set a superuser's password (or
        deactivate them) and so become, or lock out, a superuser. This also guards the
        password page and the single-user deactivate/reactivate pages.
        """
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Users are deactivated, never deleted: their history and events stay intact."""
        return False

    def save_model(
        self, request: HttpRequest, obj: User, form: forms.ModelForm, change: bool
    ) -> None:
        """Create or update through the services instead of `obj.save()`."""
        if change:
            stored = User.objects.get(pk=obj.pk)
            # Groups and permissions are many-to-many: the admin saves them in save_related.
            changed = {
                field: form.cleaned_data[field]
                for field in form.changed_data
                if field in services.UPDATABLE_FIELDS
            }
            services.user_update(user=stored, data=changed)
            return
        created = services.user_create(
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password1"],
            display_name=form.cleaned_data.get("display_name", ""),
        )
        # The admin goes on with `obj` (history entry, redirect): make it the created row.
        obj.pk = created.pk
        obj.refresh_from_db()
        obj._state.adding = False

    # --- Deactivate and reactivate ------------------------------------------------------

    @admin.action(description="Deactivate selected users", permissions=["change"])
    def deactivate_users(
        self, request: HttpRequest, queryset: QuerySet[User]
    ) -> HttpResponse | None:
        """Ask for confirmation, then deactivate each selected user (tokens revoked)."""
        return self._bulk_status_change(request, queryset, active=False)

    @admin.action(description="Reactivate selected users", permissions=["change"])
    def reactivate_users(
        self, request: HttpRequest, queryset: QuerySet[User]
    ) -> HttpResponse | None:
        """Ask for confirmation, then reactivate each selected user."""
        return self._bulk_status_change(request, queryset, active=True)

    def _bulk_status_change(
        self, request: HttpRequest, queryset: QuerySet[User], *, active: bool
    ) -> HttpResponse | None:
        # The changelist's queryset fetches only its columns; the services need whole rows.
        users = list(queryset.defer(None).order_by("date_joined", "id")[: BULK_ACTION_LIMIT + 1])
        if len(users) > BULK_ACTION_LIMIT:
            self.message_user(
                request,
                f"Select at most {BULK_ACTION_LIMIT} users at a time; narrow the list "
                "with a search or a filter.",
                messages.ERROR,
            )
            return None
        if not request.user.is_superuser and any(user.is_superuser for user in users):
            message = "Only superusers may change superusers; they were left out."
            self.message_user(request, message, messages.WARNING)
            users = [user for user in users if not user.is_superuser]
        if not active and any(user.pk == request.user.pk for user in users):
            self.message_user(request, f"{SELF_DEACTIVATION} You were left out.", messages.WARNING)
            users = [user for user in users if user.pk != request.user.pk]
        if not users:
            return None
        verb = "Reactivate" if active else "Deactivate"
        counted = f"{len(users)} user{'' if len(users) == 1 else 's'}"
        if request.POST.get("post") != "yes":
            return self._confirmation(
                request,
                users=users,
                title=f"{verb} {counted}?",
                action="reactivate_users" if active else "deactivate_users",
            )
        for user in users:
            if not self._set_active(request, user, active=active):
                return None
        self.message_user(request, f"{verb}d {counted}.", messages.SUCCESS)
        return None

    def _set_active(self, request: HttpRequest, user: User, *, active: bool) -> bool:
        """Change one user's status; False (with the reason shown) if it could not be."""
        try:
            if active:
                services.user_reactivate(user=user)
            else:
                services.user_deactivate(user=user)
        except services.RevocationUnavailable as exc:
            # The token cache could not be told: nothing changed for this user, nor for
            # those after it (they would fail alike).
            self.message_user(request, f"{user.email}: {exc.message}", messages.ERROR)
            return False
        # Actions and custom views are not logged by Django; the history page reads this.
        self.log_change(request, user, "Reactivated." if active else "Deactivated.")
        return True

    def _confirmation(
        self, request: HttpRequest, *, users: list[User], title: str, action: str | None
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "opts": self.opts,
            "users": users,
            "action": action,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "changelist_url": reverse("admin:users_user_changelist"),
        }
        return TemplateResponse(request, "admin/users/user/status_confirmation.html", context)

    def get_urls(self) -> list[URLPattern]:
        """Adds the confirmation pages that deactivate or reactivate one user."""
        return [
            path(
                "<path:object_id>/deactivate/",
                self.admin_site.admin_view(self.deactivate_view),
                name="users_user_deactivate",
            ),
            path(
                "<path:object_id>/reactivate/",
                self.admin_site.admin_view(self.reactivate_view),
                name="users_user_reactivate",
            ),
            *super().get_urls(),
        ]

    def deactivate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: confirm deactivating one user; POST: do it."""
        return self._status_view(request, object_id, active=False)

    def reactivate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: confirm reactivating one user; POST: do it."""
        return self._status_view(request, object_id, active=True)

    def _status_view(self, request: HttpRequest, object_id: str, *, active: bool) -> HttpResponse:
        user = self.get_object(request, unquote(object_id))
        if user is None:
            raise Http404
        if not self.has_change_permission(request, user):
            raise PermissionDenied
        change_url = reverse("admin:users_user_change", args=[user.pk])
        if not active and user.pk == request.user.pk:
            self.message_user(request, SELF_DEACTIVATION, messages.ERROR)
            return HttpResponseRedirect(change_url)
        if request.method == "POST":
            if self._set_active(request, user, active=active):
                verb = "Reactivated" if active else "Deactivated"
                self.message_user(request, f"{verb} {user.email}.", messages.SUCCESS)
            return HttpResponseRedirect(change_url)
        verb = "Reactivate" if active else "Deactivate"
        return self._confirmation(request, users=[user], title=f"{verb} {user.email}?", action=None)


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(auth_admin.GroupAdmin):
    """Groups carry permissions, so editing one a user belongs to grants them: superusers
    only, whatever `auth.*_group` permissions a staff member was given."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        """Listed on the index for superusers only."""
        return bool(request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Superusers only."""
        return bool(request.user.is_superuser)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Superusers only."""
        return bool(request.user.is_superuser)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Superusers only."""
        return bool(request.user.is_superuser)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Superusers only."""
        return bool(request.user.is_superuser)
