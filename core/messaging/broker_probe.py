"""Probes of the Celery broker: which kind it is, whether it answers, how full its queues are.

One place that knows both brokers CELERY_BROKER_URL can name (Redis and RabbitMQ), for
the readiness probe and the queue-depth metrics. Each question goes through kombu, the
library Celery itself talks to the broker with, on a connection of its own with short
timeouts and no retries: a slow broker must not hold up a probe or a scrape.
"""

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from kombu import Connection
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

RABBITMQ_SCHEMES = ("amqp", "amqps", "pyamqp")


def broker_is_rabbitmq(url: str) -> bool:
    """Whether `url` names a RabbitMQ broker (else Redis, the development default)."""
    return urlsplit(url).scheme in RABBITMQ_SCHEMES


def broker_connection(url: str, timeout: float) -> Connection:
    """A kombu connection to the broker whose every network wait ends within `timeout`."""
    if broker_is_rabbitmq(url):
        options: dict[str, Any] = {"read_timeout": timeout, "write_timeout": timeout}
    else:
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    return Connection(url, connect_timeout=timeout, transport_options=options)


def broker_ping(*, url: str, timeout: float) -> None:
    """Connect once, without retrying (for RabbitMQ, the AMQP handshake and login)."""
    with broker_connection(url, timeout) as connection:
        connection.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=timeout
        )


def broker_queue_stats(*, url: str, queues: Iterable[str], timeout: float) -> dict[str, int]:
    """Messages waiting in each queue, by name (a passive declare: nothing is created).

    RabbitMQ counts the ready messages, Redis the length of the queue's list; neither
    counts messages a worker has taken and not yet acknowledged.
    """
    depths = {}
    with broker_connection(url, timeout) as connection:
        channel = connection.default_channel
        for name in queues:
            try:
                _, messages, _ = channel.queue_declare(queue=name, passive=True)
            except connection.channel_errors:
                # Not declared yet (no worker has started on this broker): empty. A
                # RabbitMQ channel is closed by the refusal; the next queue needs a new one.
                messages = 0
                channel = connection.channel()
            depths[name] = int(messages)
    return depths


class BrokerQueueCollector(Collector):
    """Queue depth per Celery queue, read from the broker at scrape time (both brokers)."""

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """Describe without a broker round trip."""
        return [self._family()]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """Ask the broker now; with it unreachable, report nothing rather than zeros."""
        if not settings.CELERY_BROKER_URL:
            return
        try:
            depths = broker_queue_stats(
                url=settings.CELERY_BROKER_URL,
                queues=settings.CELERY_QUEUE_NAMES,
                timeout=settings.HEALTH_CHECK_TIMEOUT,
            )
        except Exception:
            return
        family = self._family()
        for name, messages in depths.items():
            family.add_metric([name], messages)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "celery_queue_messages",
            "Messages waiting in each Celery queue of the broker (Redis or RabbitMQ).",
            labels=["queue"],
        )
