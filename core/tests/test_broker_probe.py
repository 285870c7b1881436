"""core.messaging.broker_probe: queue depths read from either broker, and the collector that
serves them."""

import uuid

import pytest
from kombu import Connection, Exchange, Queue

from core.messaging.broker_probe import BrokerQueueCollector, broker_is_rabbitmq, broker_queue_stats


@pytest.mark.parametrize(
    ("url", "rabbitmq"),
    [
        ("amqp://user:pw@host:5672//", True),
        ("amqps://user:pw@host:5671/vhost", True),
        ("redis://default:pw@host:6379/1", False),
        ("", False),
    ],
)
def test_the_url_scheme_names_the_broker(url: str, rabbitmq: bool) -> None:
    assert broker_is_rabbitmq(url) is rabbitmq


def publish(url: str, queue_name: str, count: int) -> None:
    queue = Queue(queue_name, Exchange(queue_name, type="direct"), routing_key=queue_name)
    # Confirmed, so that each message is in its queue before the count is read (RabbitMQ
    # routes a connection's publishes on its own time, after the client has sent them).
    with Connection(url, transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        for number in range(count):
            producer.publish(
                {"n": number}, exchange=queue.exchange, routing_key=queue_name, declare=[queue]
            )


def depths_counted(url: str) -> None:
    name = f"depth-{uuid.uuid4().hex}"
    publish(url, name, 3)
    try:
        assert broker_queue_stats(url=url, queues=[name, f"{name}-none"], timeout=5) == {
            name: 3,
            f"{name}-none": 0,
        }
    finally:
        with Connection(url) as connection:
            Queue(name).bind(connection.default_channel).delete()


def test_redis_queue_depths(services: dict[str, str]) -> None:
    depths_counted(services["REDIS_URL"].rsplit("/", 1)[0] + "/3")


@pytest.mark.rabbitmq
def test_rabbitmq_queue_depths(rabbitmq) -> None:
    depths_counted(rabbitmq.url)


def test_the_collector_reports_each_queue(settings, services: dict[str, str]) -> None:
    settings.CELERY_BROKER_URL = services["REDIS_URL"].rsplit("/", 1)[0] + "/3"
    settings.CELERY_QUEUE_NAMES = ("events", "webhooks")
    publish(settings.CELERY_BROKER_URL, "webhooks", 2)
    try:
        [family] = BrokerQueueCollector().collect()
    finally:
        with Connection(settings.CELERY_BROKER_URL) as connection:
            Queue("webhooks").bind(connection.default_channel).delete()

    assert family.name == "celery_queue_messages"
    assert {s.labels["queue"]: s.value for s in family.samples} == {"events": 0, "webhooks": 2}


def test_the_collector_reports_nothing_when_the_broker_is_down(settings) -> None:
    settings.CELERY_BROKER_URL = "redis://default:pw@127.0.0.1:1/0"
    settings.HEALTH_CHECK_TIMEOUT = 0.5
    assert list(BrokerQueueCollector().collect()) == []
