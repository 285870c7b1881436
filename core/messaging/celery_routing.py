"""Read-your-writes across the broker: a task queued by a context whose reads are pinned to
the primary (it wrote, or its client did) reads from the primary too, for what is left of
the pin. The pin travels as an absolute deadline in the message headers, so time the task
spent queued counts against it.
"""

import time
from typing import Any

from celery.signals import before_task_publish, task_postrun, task_prerun
from django.conf import settings

from core.db import router as db_router

PIN_HEADER = "primary_pin_until"


@before_task_publish.connect(dispatch_uid="core.messaging.celery_routing.carry_pin")
def carry_pin(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Put the publishing context's pin, if any, into the task message's headers."""
    remaining = db_router.pin_remaining()
    if remaining > 0 and headers is not None:
        headers.setdefault(PIN_HEADER, time.time() + remaining)


@task_prerun.connect(dispatch_uid="core.messaging.celery_routing.apply_pin")
def apply_pin(task: Any = None, **kwargs: Any) -> None:
    """In the worker: start each task unpinned, then apply the pin its message carried."""
    if task is None or task.request.is_eager:
        # Eager tasks run inside the caller's context, pin included.
        return
    db_router.reset()
    deadline = getattr(task.request, PIN_HEADER, None)
    if isinstance(deadline, int | float) and deadline > time.time():
        # Never longer than a pin lasts, whatever the publisher's clock said.
        db_router.pin_reads_to_primary(min(deadline - time.time(), settings.REPLICA_PIN_SECONDS))


@task_postrun.connect(dispatch_uid="core.messaging.celery_routing.clear_pin")
def clear_pin(task: Any = None, **kwargs: Any) -> None:
    """In the worker: the next task on this thread starts with no pin."""
    if task is not None and not task.request.is_eager:
        db_router.reset()
