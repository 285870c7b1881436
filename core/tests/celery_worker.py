"""Test helper: run a task as a worker does, signals included, without a broker."""

from typing import Any

from celery import Task
from celery.signals import task_postrun, task_prerun


def run_as_worker(task: Task, request: dict[str, Any]) -> Any:
    """Push the task's request (message headers included), fire prerun, run, fire postrun."""
    task.push_request(**{"id": "task-1", "is_eager": False, **request})
    signal_args = {"sender": task, "task_id": "task-1", "task": task}
    try:
        task_prerun.send(**signal_args, args=(), kwargs={})
        result = task.run()
        task_postrun.send(**signal_args, args=(), kwargs={}, retval=result, state="SUCCESS")
    finally:
        task.pop_request()
    return result
