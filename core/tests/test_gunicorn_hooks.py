"""core.gunicorn_hooks: under a real gunicorn with two workers, /metrics adds up both.

The server runs on SQLite on a free loopback port; its requests are bounded in count and
time. The multiprocess directory is seeded with a stale file first, which must not count.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from core import gunicorn_hooks

ROOT = Path(__file__).resolve().parents[2]
COUNTER = "django_http_responses_total_by_status_view_method_total"
HEALTHZ = {"method": "GET", "status": "200", "view": "healthz"}
DEADLINE_SECONDS = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _seed_stale_counter(directory: Path) -> None:
    """What a previous run would have left: 1000 healthz responses from a gone process."""
    code = (
        "from prometheus_client import Counter\n"
        f"c = Counter({COUNTER[: -len('_total')]!r}, 'stale', ['status', 'view', 'method'])\n"
        "c.labels(status='200', view='healthz', method='GET').inc(1000)\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback only)
        return bytes(response.read())


def _per_worker_counts(directory: Path, scratch: Path) -> dict[int, float]:
    """Healthz responses counted in each worker's own file, read one file at a time."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        single = scratch / path.stem
        single.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, single / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(single))
        value = registry.get_sample_value(COUNTER, HEALTHZ)
        if value:
            counts[int(path.stem.split("_")[1])] = value
    return counts


def _scraped_total(base: str) -> float:
    for family in text_string_to_metric_families(_get(f"{base}/metrics").decode()):
        for sample in family.samples:
            if sample.name == COUNTER and sample.labels == HEALTHZ:
                return sample.value
    return 0.0


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen]]:
    """gunicorn with config/gunicorn.py, two workers, its own metrics directory."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    _seed_stale_counter(metrics_dir)
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DATABASE_REPLICA_URLS": "",
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "",
        "METRICS_TOKEN": "",
        "LOG_LEVEL": "WARNING",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            try:
                _get(f"{base}/metrics")
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        yield base, metrics_dir, server
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_metrics_add_up_across_two_workers(gunicorn, tmp_path: Path) -> None:
    base, metrics_dir, _ = gunicorn
    sent = 0
    counts: dict[int, float] = {}
    deadline = time.monotonic() + DEADLINE_SECONDS
    # Concurrent requests until both workers have served some, bounded in count and time.
    with ThreadPoolExecutor(max_workers=8) as pool:
        while len(counts) < 2:
            assert sent < 800, f"one worker served all {sent} requests"
            assert time.monotonic() < deadline, "both workers never served"
            list(pool.map(_get, [f"{base}/healthz"] * 40))
            sent += 40
            counts = _per_worker_counts(metrics_dir, tmp_path / "scratch")

    assert sum(counts.values()) == sent
    assert all(count < sent for count in counts.values())
    # The scrape, answered by either worker, shows the sum, and not the stale 1000.
    assert _scraped_total(base) == sent
    assert _scraped_total(base) == sent


def test_a_dead_workers_counts_survive_its_replacement(gunicorn, tmp_path: Path) -> None:
    base, metrics_dir, server = gunicorn
    for _ in range(10):
        _get(f"{base}/healthz")
    (victim, *_) = _per_worker_counts(metrics_dir, tmp_path / "scratch")
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + DEADLINE_SECONDS
    sent = 10
    # gunicorn replaces the worker; its counter file stays, and so does its share. With
    # preload the replacement writes its own file only once it serves a request.
    while len(list(metrics_dir.glob("counter_*.db"))) < 3:
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        _get(f"{base}/healthz")
        sent += 1
    assert server.poll() is None
    assert _scraped_total(base) == sent


def test_child_exit_drops_only_the_dead_workers_live_gauges(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    names = ["gauge_livemin_41.db", "gauge_livemax_41.db", "counter_41.db", "gauge_livemin_42.db"]
    for name in names:
        (tmp_path / name).write_bytes(b"")

    class Worker:
        pid = 41

    gunicorn_hooks.child_exit(None, Worker())
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "counter_41.db",
        "gauge_livemin_42.db",
    ]


def test_on_starting_empties_the_directory(tmp_path, monkeypatch) -> None:
    directory = tmp_path / "deployment"
    directory.mkdir()
    (directory / "counter_7.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    gunicorn_hooks.on_starting(None)
    assert list(directory.iterdir()) == []


def test_use_multiprocess_metrics_keeps_a_configured_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "given"))
    assert gunicorn_hooks.use_multiprocess_metrics(port="9") == str(tmp_path / "given")
    assert (tmp_path / "given").is_dir()
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    chosen = gunicorn_hooks.use_multiprocess_metrics(port="18499")
    assert chosen.endswith("userservice-metrics-18499")
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == chosen
    os.rmdir(chosen)
