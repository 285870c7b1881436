"""gunicorn hooks that make /metrics add up every worker's figures.

Each worker process counts into its own files in PROMETHEUS_MULTIPROC_DIR (prometheus_client's
multiprocess mode), and a scrape, answered by whichever worker, sums all of them
(django-prometheus's export view switches to the multiprocess collector when the variable
is set). The directory belongs to one deployment: it is emptied when gunicorn starts, so
figures from a previous run are not added in, and a worker's files for "live" gauges are
removed when it exits, so a dead worker's last value stops counting. Counters of a dead
worker stay: what it served still happened.

gunicorn's config imports this module before it sets the directory, so prometheus_client
(directly or through core.observability.resource_metrics) is imported only inside the hooks,
which run after: imported any earlier, it would fix every metric's storage in memory.
"""

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def use_multiprocess_metrics(*, port: str) -> str:
    """Point PROMETHEUS_MULTIPROC_DIR at this deployment's directory (unless set) and create it.

    Called from gunicorn's config, before anything imports prometheus_client: the variable
    decides, at import, how every metric stores its values. The default is on tmpfs where
    there is one (the files are written on every request), one directory per port.

    Raises RuntimeError if prometheus_client was imported before the variable was set:
    every worker would then count in its own memory while /metrics read an empty
    directory, which no error would ever reveal.
    """
    if MULTIPROC_DIR_VARIABLE not in os.environ and "prometheus_client.values" in sys.modules:
        raise RuntimeError(
            "prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set, so the "
            "workers' metrics would never reach /metrics; set up the directory first"
        )
    directory = os.environ.setdefault(MULTIPROC_DIR_VARIABLE, default_multiproc_dir(port=port))
    Path(directory).mkdir(parents=True, exist_ok=True)
    return directory


def default_multiproc_dir(*, port: str) -> str:
    """The directory gunicorn on `port` uses when PROMETHEUS_MULTIPROC_DIR is not set."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()  # noqa: S108 (own tmpfs)  # nosec B108
    return os.path.join(base, f"userservice-metrics-{port}")


def on_starting(server: Any) -> None:
    """gunicorn hook, in the master before any worker starts: forget the previous run's files."""
    directory = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if not directory:
        return
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def post_fork(server: Any, worker: Any) -> None:
    """gunicorn hook, in each new worker: sample its CPU, memory and database pools."""
    from core.observability import resource_metrics

    resource_metrics.start_sampling(process="web")


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook, in the master when a worker exits: drop its live gauges' files."""
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
