"""Worker logs: through settings.LOGGING, tagged with the request id that queued the task.

Publishing copies the bound `request_id` into the task message's headers; in the worker,
`task_prerun` binds it (with the task's name and id) to the logging context, so every line
the task writes carries it, and `task_postrun` clears it before the next task. A task
queued outside any request (beat, a script) gets a new id. Eager tasks (`make run`, no
broker) run inside the caller's context already and are left alone.
"""

import logging.config
import uuid
from typing import Any

import structlog
from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun

REQUEST_ID_HEADER = "request_id"


@setup_logging.connect(dispatch_uid="core.observability.celery_logging.use_django_logging")
def use_django_logging(**kwargs: Any) -> None:
    """The worker logs through settings.LOGGING, like the web server.

    With a receiver on this signal Celery leaves logging alone: otherwise it would add its
    own plain-text handler and set the root level from its command line.
    """
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@before_task_publish.connect(dispatch_uid="core.observability.celery_logging.carry_request_id")
def carry_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Put the current request id into the outgoing task message's headers."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


@task_prerun.connect(dispatch_uid="core.observability.celery_logging.bind_task_context")
def bind_task_context(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    """In the worker: bind the message's request id, the task name and id for its logs."""
    if task is None or task.request.is_eager:
        return
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        request_id=getattr(task.request, REQUEST_ID_HEADER, None) or uuid.uuid4().hex,
        task=task.name,
        task_id=task_id,
    )


@task_postrun.connect(dispatch_uid="core.observability.celery_logging.clear_task_context")
def clear_task_context(task: Any = None, **kwargs: Any) -> None:
    """In the worker: the next task starts with a clean logging context."""
    if task is not None and not task.request.is_eager:
        structlog.contextvars.clear_contextvars()
