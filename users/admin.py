"""Staff management of users. Every change goes through users.services, like the API's."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import forms as auth_forms
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import BaseUserCreationForm
from django.db.models import QuerySet
from django.http import HttpRequest

from core.pagination import EstimatedCountPaginator
from users import services
from users.models import User


class UserCreationForm(BaseUserCreationForm):
    """Email, display name and a password checked by the password validators."""

    class Meta:
        model = User
        fields = ("email", "display_name")


class UserChangeForm(auth_forms.UserChangeForm):
    """The fields of a user; the password is shown as its hash summary and has its own form."""

    class Meta:
        model = User
        fields = ("email", "display_name", "is_active", "is_staff", "is_superuser")


class PasswordSetForm(auth_forms.AdminPasswordChangeForm):
    """The admin's password form, saving through `user_set_password` (which revokes tokens)."""

    def save(self, commit: bool = True) -> User:
        """Set the new password, or disable password login, through the service."""
        password = (
            self.cleaned_data["password1"] if self.cleaned_data["set_usable_password"] else None
        )
        return services.user_set_password(user=self.user, password=password)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Search, filter, edit, deactivate and reactivate users."""

    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = PasswordSetForm
    paginator = EstimatedCountPaginator
    # The unfiltered total would be a second full COUNT on every search.
    show_full_result_count = False

    list_display = ("email", "display_name", "is_active", "is_staff", "date_joined")
    list_filter = ("is_active", "is_staff", "date_joined")
    search_fields = ("email", "display_name")
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

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        """Only superusers may grant or remove superuser status."""
        readonly = tuple(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            readonly += ("is_superuser",)
        return readonly

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

    @admin.action(description="Deactivate selected users", permissions=["change"])
    def deactivate_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        """Deactivate each selected user through the service (tokens revoked)."""
        count = 0
        for user in queryset:
            services.user_deactivate(user=user)
            count += 1
        self.message_user(request, f"Deactivated {count} users.", messages.SUCCESS)

    @admin.action(description="Reactivate selected users", permissions=["change"])
    def reactivate_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        """Reactivate each selected user through the service."""
        count = 0
        for user in queryset:
            services.user_reactivate(user=user)
            count += 1
        self.message_user(request, f"Reactivated {count} users.", messages.SUCCESS)
