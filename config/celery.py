"""The Celery application. Settings come from Django settings under the CELERY_ prefix."""

import os

from celery import Celery

from core.messaging import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
broker.use_for_redis_urls()

app = Celery("userservice")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Imported for their signal handlers, in every process that publishes or runs tasks:
# request ids into tasks' logs, the worker's task metrics, and read pins.
from core.messaging import celery_routing  # noqa: E402, F401
from core.observability import celery_logging, celery_metrics  # noqa: E402, F401
