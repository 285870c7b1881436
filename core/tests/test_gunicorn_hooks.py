"""core.observability.gunicorn_hooks: under a real gunicorn with two workers, /metrics adds up both.

gunicorn starts as `make serve` starts it: `-c config/gunicorn.py`, with no
PROMETHEUS_MULTIPROC_DIR in its environment, so the directory is the one the config picks.
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

from core.observability import gunicorn_hooks

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


def _scraped(base: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called `name` in one scrape, with its labels."""
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(_get(f"{base}/metrics").decode())
        for sample in family.samples
        if sample.name == name
    ]


def _scraped_total(base: str) -> float:
    return sum(value for labels, value in _scraped(base, COUNTER) if labels == HEALTHZ)


def _children(parent: int) -> set[int]:
    """The pids whose parent is `parent`, from /proc."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces; the parent pid follows it.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.add(int(stat.parent.name))
    return children


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen]]:
    """gunicorn as `make serve` runs it, two workers; yields its metrics directory too."""
    port = _free_port()
    metrics_dir = Path(gunicorn_hooks.default_multiproc_dir(port=str(port)))
    metrics_dir.mkdir(parents=True, exist_ok=True)
    _seed_stale_counter(metrics_dir)
    inherited = {k: v for k, v in os.environ.items() if k != gunicorn_hooks.MULTIPROC_DIR_VARIABLE}
    env = {
        **inherited,
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
        "METRICS_SAMPLE_SECONDS": "0.2",
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
        # Serving, and with both workers forked: the first answers before the second
        # exists on a busy machine.
        while True:
            try:
                _get(f"{base}/metrics")
                if len(_children(server.pid)) == 2:
                    break
            except OSError:
                assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
            assert time.monotonic() < deadline, "gunicorn did not start both workers"
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
        shutil.rmtree(metrics_dir, ignore_errors=True)


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


def test_every_worker_reports_its_cpu_and_memory(gunicorn) -> None:
    base, _, server = gunicorn
    workers = _children(server.pid)
    assert len(workers) == 2
    cpu = _scraped(base, "userservice_process_cpu_seconds")
    memory = _scraped(base, "userservice_process_resident_memory_bytes")
    # One series a live worker, told apart by pid, so sum() and max() both work.
    assert {int(labels["pid"]) for labels, _ in cpu} == workers
    assert {int(labels["pid"]) for labels, _ in memory} == workers
    assert {labels["process"] for labels, _ in cpu + memory} == {"web"}
    # A worker that has served nothing yet may not have used a whole clock tick.
    assert all(value >= 0 for _, value in cpu)
    assert all(value > 10_000_000 for _, value in memory)


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


def _fresh_interpreter(code: str) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k != gunicorn_hooks.MULTIPROC_DIR_VARIABLE}
    command = [sys.executable, "-c", code]
    return subprocess.run(
        command, cwd=ROOT, env=inherited, capture_output=True, text=True, timeout=60, check=False
    )


def test_without_a_directory_the_port_picks_one_before_prometheus_client_loads() -> None:
    result = _fresh_interpreter(
        "from core.observability import gunicorn_hooks\n"
        "print(gunicorn_hooks.use_multiprocess_metrics(port='18499'))\n"
        "from prometheus_client import values\n"
        "print(values.ValueClass.__name__)\n"
    )
    chosen, value_class = result.stdout.split()
    assert chosen == gunicorn_hooks.default_multiproc_dir(port="18499")
    # The storage prometheus_client picked at import: files, not this process's memory.
    assert value_class == "MmapedValue"
    os.rmdir(chosen)


def test_refuses_to_go_on_once_prometheus_client_has_loaded_without_a_directory() -> None:
    result = _fresh_interpreter(
        "import prometheus_client\n"
        "from core.observability import gunicorn_hooks\n"
        "gunicorn_hooks.use_multiprocess_metrics(port='18498')\n"
    )
    assert result.returncode != 0
    assert "imported before PROMETHEUS_MULTIPROC_DIR was set" in result.stderr
