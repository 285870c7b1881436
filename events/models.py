"""Domain events: the transactional outbox, handler bookkeeping and webhook delivery state."""

import uuid
from collections.abc import Sequence
from typing import Any

from django.db import connections, models
from django.utils import timezone


class OutboxEventManager(models.Manager["OutboxEvent"]):
    """Outbox rows, and the relay's one write per batch."""

    def mark_published(self, *, event_ids: Sequence[uuid.UUID], using: str) -> None:
        """Record that the relay handed these events to the broker, unless already recorded.

        One plain UPDATE, written out: it runs for every batch the relay publishes, and
        building it through the query compiler costs several times what sending it does
        (measured in docs/benchmarks.md). The condition on `published_at` keeps a later
        relay from moving the time of an earlier one.
        """
        connection = connections[using]
        fields = self.model._meta
        published_at = fields.get_field("published_at").get_db_prep_save(timezone.now(), connection)
        id_field = fields.get_field("id")
        ids = [id_field.get_db_prep_save(event_id, connection) for event_id in event_ids]
        table = connection.ops.quote_name(fields.db_table)
        # The table name is the model's own, quoted; every value is a parameter.
        sql = (
            f"UPDATE {table} SET published_at = %s, attempts = attempts + 1, "  # noqa: S608  # nosec B608
            f"last_error = '' WHERE id IN ({', '.join(['%s'] * len(ids))}) AND published_at IS NULL"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [published_at, *ids])


class OutboxEvent(models.Model):
    """An event written in the same transaction as the change it describes.

    A row with no `published_at` has not been handed to the broker yet: the relay (on
    commit) or the sweeper (periodically) will hand it over. Rows are kept after
    publishing as the event log that handlers and webhook deliveries refer to.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    topic = models.CharField(max_length=100)
    schema_version = models.PositiveSmallIntegerField(default=1)
    aggregate_id = models.CharField(max_length=100)
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)
    # When every handler had handled it; a published event without it past
    # EVENTS_REDISPATCH_AFTER_SECONDS lost its message and is handed over again.
    handled_at = models.DateTimeField(null=True, blank=True)
    redispatches = models.PositiveSmallIntegerField(default=0)
    # Hand-overs to the broker tried, and the last failure's message.
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    request_id = models.CharField(max_length=100, blank=True)

    objects = OutboxEventManager()

    class Meta:
        ordering = ("-created_at",)
        indexes = [
            models.Index(fields=["topic", "created_at"], name="outbox_topic_created_idx"),
            # Published events still owed a handler: what the redispatch looks through.
            models.Index(
                fields=["published_at"],
                name="outbox_unhandled_idx",
                condition=models.Q(published_at__isnull=False, handled_at__isnull=True),
            ),
            # Retention deletes published events, oldest first (events/retention.py).
            models.Index(
                fields=["created_at"],
                name="outbox_published_idx",
                condition=models.Q(published_at__isnull=False),
            ),
            # The sweeper and the backlog metric read only the unpublished rows: a partial
            # index keeps that lookup small however long the published log grows.
            models.Index(
                fields=["created_at"],
                name="outbox_unpublished_idx",
                condition=models.Q(published_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.topic} {self.id}"

    @property
    def is_published(self) -> bool:
        """Whether the event has been handed to the broker."""
        return self.published_at is not None


class HandledEventManager(models.Manager["HandledEvent"]):
    """Records of handled events, inserted only where absent."""

    def record(self, *, event_ids: Sequence[uuid.UUID], handler: str, using: str) -> set[uuid.UUID]:
        """Insert an (event, handler) row for each event unless it exists; return the ids
        this call inserted, which are the events the handler has yet to handle.

        One `INSERT ... ON CONFLICT DO NOTHING RETURNING` (PostgreSQL and SQLite): a
        duplicate is not an error, so the caller's transaction needs no savepoint around
        it. A concurrent insert of the same pair waits for the other transaction, then
        inserts nothing if it committed, as a plain insert would fail then.
        """
        if not event_ids:
            return set()
        connection = connections[using]
        fields = self.model._meta
        event_field = fields.get_field("event_id")
        handled_at = fields.get_field("handled_at").get_db_prep_save(timezone.now(), connection)
        values: list[Any] = []
        for event_id in event_ids:
            values += [event_field.get_db_prep_save(event_id, connection), handler, handled_at]
        rows = ", ".join(["(%s, %s, %s)"] * len(event_ids))
        table = connection.ops.quote_name(fields.db_table)
        # The table name is the model's own, quoted; every value is a parameter.
        sql = (
            f"INSERT INTO {table} (event_id, handler, handled_at) VALUES {rows} "  # noqa: S608  # nosec B608
            "ON CONFLICT (event_id, handler) DO NOTHING RETURNING event_id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, values)
            return {event_field.to_python(row[0]) for row in cursor.fetchall()}


class HandledEvent(models.Model):
    """Proof that `handler` has handled `event_id`, written in the handler's transaction.

    The unique pair is what makes at-least-once delivery effectively once: a redelivered
    task finds the row (or blocks on the concurrent insert, then finds it) and does nothing.
    """

    event_id = models.UUIDField()
    handler = models.CharField(max_length=200)
    handled_at = models.DateTimeField(default=timezone.now)

    objects = HandledEventManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event_id", "handler"], name="handled_event_once"),
        ]
        # Retention deletes the oldest first (events/retention.py).
        indexes = [models.Index(fields=["handled_at"], name="handled_event_age_idx")]

    def __str__(self) -> str:
        return f"{self.handler} {self.event_id}"


class WebhookSubscription(models.Model):
    """An endpoint that receives signed POSTs for the topics it subscribes to.

    The circuit breaker's state lives here, in the database, so every worker process
    sees the same state and it survives restarts (see events.breaker).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.URLField(max_length=500)
    topics = models.JSONField(default=list)
    # The receiver verifies signatures with it, so it is stored as given (HMAC needs the
    # plain key); it is shown once at creation and never returned by the API or admin.
    secret = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0)
    breaker_opened_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("created_at", "id")

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event to one subscription: its state across attempts."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        DELIVERED = "delivered", "Delivered"
        DEAD = "dead", "Dead letter"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(OutboxEvent, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # While set and in the future, an attempt holds the delivery (events.webhooks); the
    # token tells that attempt's rows from any other's, whatever the clock says.
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            # One delivery per (subscription, event): the fan-out handler is idempotent.
            models.UniqueConstraint(fields=["subscription", "event"], name="delivery_once"),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="delivery_status_idx"),
            # An attempt reads back the deliveries it claimed by their token; only the few
            # deliveries held right now have one, so the index stays that small.
            models.Index(
                fields=["claim_token"],
                name="delivery_claim_token_idx",
                condition=models.Q(claim_token__isnull=False),
            ),
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event.topic} to {self.subscription.url}"


class WebhookAttempt(models.Model):
    """One HTTP attempt of a delivery (or one refused by the open circuit breaker)."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="tries")
    number = models.PositiveIntegerField()
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    # The backoff chosen after this attempt failed; empty when none followed.
    retry_in_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ("attempted_at", "id")
        # Retention deletes the oldest first (events/retention.py).
        indexes = [models.Index(fields=["attempted_at"], name="webhook_attempt_age_idx")]

    def __str__(self) -> str:
        return f"attempt {self.number}"
