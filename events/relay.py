"""The relay's background publisher: committed events, gathered into one message per batch.

Each web process commits events one request at a time. Publishing each as it commits costs
the request a broker round trip and an UPDATE, and the worker one message to receive and
acknowledge, per event. Instead the commit hook hands the event to this process's relay
thread, which waits up to EVENTS_RELAY_LINGER_SECONDS after the first event for others,
then hands them to the broker as one message and marks them published with one UPDATE.

Nothing here is needed for durability: an event is in the outbox from its commit, and one
that a process never got to publish (killed with events in hand, a broker that refused
them, a queue full while the broker was down) is published by the sweeper after
EVENTS_SWEEP_AFTER_SECONDS.

Written here rather than taken from a library: what it must do (start after a fork, stop
with the process, close its database connection after each batch) is tied to this
project's processes, and the whole of it is one queue and one thread.
"""

import atexit
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from django.db import connections

logger = logging.getLogger(__name__)

Item = TypeVar("Item")

# How long a stopping process waits for its relay to publish what it holds.
STOP_TIMEOUT_SECONDS = 5.0


class _Stop:
    """The sentinel that tells the thread to publish what it holds and end."""


class BatchingRelay(Generic[Item]):
    """One thread per process that passes items to `flush` in batches.

    A batch is the first item and whatever else arrives within `linger()` seconds of it,
    up to `max_size()` items. `flush` runs on the thread; a failure is its own to record.
    At most `capacity` items wait: while `flush` is slow (a broker timing out) the rest
    are refused rather than held in memory without bound. The thread starts with the
    first item in each process, so a relay created before a fork (gunicorn preloads the
    app) gets a fresh one in the child.
    """

    def __init__(
        self,
        *,
        name: str,
        flush: Callable[[list[Item]], object],
        linger: Callable[[], float],
        max_size: Callable[[], int],
        capacity: int,
    ) -> None:
        self._name = name
        self._flush = flush
        self._linger = linger
        self._max_size = max_size
        self._capacity = capacity
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.Queue[Item | _Stop] = queue.Queue(capacity)
        self._thread: threading.Thread | None = None

    def submit(self, item: Item) -> bool:
        """Queue an item for the next batch, starting this process's thread if needed;
        return False, keeping nothing, when `capacity` items are already waiting."""
        if self._pid != os.getpid():
            self._start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    def stop(self, *, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Publish what is queued and end the thread; wait at most `timeout` seconds."""
        thread = self._thread
        if thread is None or self._pid != os.getpid() or not thread.is_alive():
            return
        deadline = time.monotonic() + timeout
        # A queue still full after the whole timeout: the thread is stuck on the broker,
        # and what it holds is the sweeper's.
        with contextlib.suppress(queue.Full):
            self._queue.put(_Stop(), timeout=timeout)
        thread.join(max(deadline - time.monotonic(), 0))
        if thread.is_alive():
            logger.warning("%s: stopped with events unpublished; the sweeper has them", self._name)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            # A thread and queue inherited through a fork do not exist in this process.
            self._queue = queue.Queue(self._capacity)
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._pid = os.getpid()
            self._thread.start()
            atexit.register(self.stop)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if isinstance(first, _Stop):
                return
            batch, stopping = self._gather(first)
            try:
                self._flush(batch)
            except Exception:
                logger.exception("%s: a batch of %d failed", self._name, len(batch))
            finally:
                # Back to the pool: the thread may wait a long time for its next batch.
                connections.close_all()

    def _gather(self, first: Item) -> tuple[list[Item], bool]:
        batch = [first]
        deadline = time.monotonic() + self._linger()
        limit = self._max_size()
        while len(batch) < limit:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if isinstance(item, _Stop):
                return batch, True
            batch.append(item)
        return batch, False
