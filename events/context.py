"""The request id of the work in progress, carried from a request to its events and tasks.

Issue #6 (logging) sets it per request in its middleware; the relay copies it into task
headers and the worker restores it before each task, so a task's logs and the events it
publishes name the request that caused them.
"""

from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("request_id", default="")
