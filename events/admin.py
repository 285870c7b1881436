"""Staff views of the outbox, webhook subscriptions and deliveries (with the dead letters).

Every change goes through events.services and events.webhooks, like the API's.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.http.pagination import EstimatedCountPaginator
from events import breaker, registry, services, ssrf, webhooks
from events.models import OutboxEvent, WebhookAttempt, WebhookDelivery, WebhookSubscription


class PublishedFilter(admin.SimpleListFilter):
    """Published or still waiting in the outbox."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """The two states."""
        return [("pending", "Pending"), ("published", "Published")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """Filter on published_at."""
        if self.value() == "pending":
            return queryset.filter(published_at__isnull=True)
        if self.value() == "published":
            return queryset.filter(published_at__isnull=False)
        return queryset


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    """The outbox: read-only, with a "dispatch again" action."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_display = ("id", "topic", "created_at", "published_at", "attempts", "status")
    list_filter = (PublishedFilter, "topic", "created_at")
    search_fields = ("=id", "=aggregate_id", "=request_id")
    ordering = ("-created_at",)
    actions = ("dispatch_again",)

    @admin.display(description="status")
    def status(self, obj: OutboxEvent) -> str:
        """Published or pending."""
        return "published" if obj.is_published else "pending"

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Events come from services only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """The outbox is a log: it is read, never edited."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Deleting an event would break its deliveries' history."""
        return False

    @admin.action(description="Dispatch selected events again", permissions=["view"])
    def dispatch_again(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        """Hand each event to its handlers again; those that handled it do nothing."""
        count = 0
        for event in queryset:
            services.event_redispatch(event=event)
            count += 1
        self.message_user(request, f"Dispatched {count} events again.", messages.SUCCESS)


class WebhookSubscriptionForm(forms.ModelForm):
    """The secret is write-only: never shown here, generated when left blank on creation."""

    url = forms.URLField(max_length=500, assume_scheme="https")
    topics = forms.MultipleChoiceField(
        # Called when a form is built: the admin loads this module before the apps that
        # declare the topics are ready.
        choices=lambda: [(topic, topic) for topic in registry.topics()],
        widget=forms.CheckboxSelectMultiple,
    )
    secret = forms.CharField(
        required=False,
        min_length=16,
        max_length=200,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave blank to keep the current secret (or, on creation, to generate one).",
    )

    class Meta:
        model = WebhookSubscription
        fields = ("url", "topics", "secret", "is_active")

    def clean_url(self) -> str:
        """Refuse internal targets (SSRF) unless allowed by settings."""
        url: str = self.cleaned_data["url"]
        try:
            ssrf.check_target(url)
        except ssrf.UnsafeTarget as exc:
            raise forms.ValidationError(str(exc)) from exc
        return url


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    """Subscriptions, with their circuit breaker state."""

    form = WebhookSubscriptionForm
    list_display = ("url", "topics", "is_active", "breaker", "consecutive_failures")
    list_filter = ("is_active",)
    search_fields = ("url",)
    actions = ("close_breakers",)

    @admin.display(description="circuit breaker")
    def breaker(self, obj: WebhookSubscription) -> str:
        """closed, open or half_open."""
        return breaker.breaker_state(opened_at=obj.breaker_opened_at)

    def save_model(
        self, request: HttpRequest, obj: WebhookSubscription, form: forms.ModelForm, change: bool
    ) -> None:
        """Create or update through the services; show a new secret once."""
        data = {field: form.cleaned_data[field] for field in ("url", "topics", "is_active")}
        secret = form.cleaned_data.get("secret") or ""
        if change:
            stored = WebhookSubscription.objects.get(pk=obj.pk)
            if secret:
                data["secret"] = secret
            webhooks.webhook_subscription_update(subscription=stored, data=data)
            obj.refresh_from_db()
            return
        created = webhooks.webhook_subscription_create(secret=secret, **data)
        obj.pk = created.pk
        obj.refresh_from_db()
        obj._state.adding = False
        if not secret:
            self.message_user(
                request,
                f"Signing secret (shown only now): {created.secret}",
                messages.WARNING,
            )

    @admin.action(description="Close the circuit breaker", permissions=["change"])
    def close_breakers(self, request: HttpRequest, queryset: QuerySet[WebhookSubscription]) -> None:
        """Let deliveries through again at once."""
        for subscription in queryset:
            breaker.breaker_reset(subscription=subscription)
        self.message_user(request, "Circuit breakers closed.", messages.SUCCESS)


class WebhookAttemptInline(admin.TabularInline):
    """Each attempt of a delivery."""

    model = WebhookAttempt
    fields = ("number", "attempted_at", "status_code", "duration_ms", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Attempts are recorded by the worker only."""
        return False


class DeliveryStatusFilter(admin.SimpleListFilter):
    """By status; "dead" is the dead letter."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """The delivery statuses."""
        return list(WebhookDelivery.Status.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """Filter on status."""
        return queryset.filter(status=self.value()) if self.value() else queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Deliveries and their attempts; dead letters are retried from here."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_display = ("event", "subscription", "status", "attempts", "created_at", "last_error")
    list_filter = (DeliveryStatusFilter, "subscription")
    list_select_related = ("event", "subscription")
    search_fields = ("=event__id",)
    ordering = ("-created_at",)
    readonly_fields = (
        "event",
        "subscription",
        "status",
        "attempts",
        "last_error",
        "next_attempt_at",
        "created_at",
        "delivered_at",
    )
    inlines = (WebhookAttemptInline,)
    actions = ("retry_deliveries",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Deliveries come from events only."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Keep the history; a dead letter is retried, not deleted."""
        return False

    @admin.action(description="Retry selected deliveries", permissions=["change"])
    def retry_deliveries(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        """Start each selected undelivered delivery afresh (breaker closed)."""
        count = 0
        for delivery in queryset.exclude(status=WebhookDelivery.Status.DELIVERED):
            webhooks.webhook_delivery_retry(delivery=delivery)
            count += 1
        self.message_user(request, f"Retrying {count} deliveries.", messages.SUCCESS)
