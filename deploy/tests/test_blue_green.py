"""deploy/blue-green.sh against a fake `kubectl` that keeps a little cluster state (the
Service's colour, each Deployment's image) in files and records every call, so the order
of the steps and what a failure leaves untouched can be checked without a cluster."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "blue-green.sh"
BASH = shutil.which("bash") or "/bin/bash"

FAKE_KUBECTL = """#!{python}
import os, pathlib, sys

state = pathlib.Path(os.environ["FAKE_STATE"])
args = sys.argv[1:]
with open(state / "calls", "a") as calls:
    calls.write(" ".join(args) + "\\n")
if args[:2] == ["--namespace", "shop"]:
    args = args[2:]

def read(name, default=""):
    path = state / name
    return path.read_text() if path.exists() else default

match args:
    case ["get", "service", "web", "-o", query] if "selector" in query:
        print(read("live"), end="")
    case ["get", "service", "web", "-o", query] if "annotations" in query:
        print(read("previous"), end="")
    case ["get", "deployment", name, "-o", _]:
        print(read("image-" + name), end="")
    case ["set", "image", target, assignment]:
        (state / ("image-" + target.split("/")[1])).write_text(assignment.split("=", 1)[1])
    case ["patch", "service", "web", "--type", "merge", "-p", patch]:
        (state / "live").write_text("green" if '"green"' in patch else "blue")
    case ["annotate", "service", "web", "--overwrite", annotation]:
        (state / "previous").write_text(annotation.split("=", 1)[1])
    case ["wait", *_]:
        sys.exit(int(os.environ.get("FAKE_MIGRATE_RC", "0")))
    case ["rollout", "status", target, *_]:
        sys.exit(int(os.environ.get("FAKE_ROLLOUT_RC_" + target.split("/")[1], "0")))
    case ["port-forward", _, ports]:
        os.execvp(sys.executable, [sys.executable, "-m", "http.server", "--bind",
                                   "127.0.0.1", ports.split(":")[0]])
"""

FAKE_SMOKE = """#!/usr/bin/env bash
echo "$1 proto=$SMOKE_FORWARDED_PROTO" >>"$FAKE_STATE/smoke"
exit "${FAKE_SMOKE_RC:-0}"
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    """A fake cluster: blue live with v1, green idle with v1, worker and beat on v1."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "live").write_text("blue")
    for name in ("web-blue", "web-green", "worker", "beat", "migrate"):
        (state / f"image-{name}").write_text("registry/userservice:v1")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(FAKE_KUBECTL.format(python=sys.executable))
    (bin_dir / "smoke").write_text(FAKE_SMOKE)
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return state


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def run(cluster: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = cluster.parent / "bin"
    port = free_port()
    environment = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_STATE": str(cluster),
        "SMOKE_CMD": str(bin_dir / "smoke"),
        "SMOKE_LOCAL_PORT": str(port),
        "NAMESPACE": "shop",
        **env,
    }
    result = subprocess.run(
        [BASH, str(SCRIPT), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Whatever happened, the port-forward the script started is gone with it.
    assert refused(port), "the port-forward outlived the script"
    return result


def calls(cluster: Path) -> list[str]:
    lines = (cluster / "calls").read_text().splitlines()
    return [line.removeprefix("--namespace shop ") for line in lines]


def index_of(lines: list[str], prefix: str) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(prefix))


def test_deploy_migrates_rolls_the_idle_colour_smokes_it_then_switches(cluster) -> None:
    result = run(cluster, "deploy", "registry/userservice:v2")

    assert result.returncode == 0, result.stderr
    assert (cluster / "live").read_text() == "green"
    assert (cluster / "previous").read_text() == "blue"
    assert (cluster / "image-web-green").read_text() == "registry/userservice:v2"
    assert (cluster / "image-web-blue").read_text() == "registry/userservice:v1"
    for name in ("worker", "beat", "migrate"):
        assert (cluster / f"image-{name}").read_text() == "registry/userservice:v2"
    smoke = (cluster / "smoke").read_text().split()
    assert smoke[0].startswith("http://localhost:")
    assert smoke[1] == "proto=https"

    lines = calls(cluster)
    raw = (cluster / "calls").read_text().splitlines()
    assert all(line.startswith("--namespace shop ") for line in raw)
    order = [
        "set image cronjob/migrate migrate=registry/userservice:v2",
        "create job migrate-",
        "wait --for=condition=complete job/migrate-",
        "set image deployment/web-green web=registry/userservice:v2",
        "rollout status deployment/web-green",
        "port-forward service/web-green",
        "patch service web",
        "set image deployment/worker worker=registry/userservice:v2",
    ]
    positions = [index_of(lines, step) for step in order]
    assert positions == sorted(positions), lines


def test_failed_smoke_test_leaves_live_traffic_where_it_was(cluster) -> None:
    result = run(cluster, "deploy", "registry/userservice:v2", FAKE_SMOKE_RC="1")

    assert result.returncode == 1
    assert "smoke tests failed on web-green; live traffic stays on blue" in result.stderr
    assert (cluster / "live").read_text() == "blue"
    assert not any(line.startswith("patch") for line in calls(cluster))
    assert (cluster / "image-worker").read_text() == "registry/userservice:v1"


def test_failed_migration_touches_no_web_pod(cluster) -> None:
    result = run(cluster, "deploy", "registry/userservice:v2", FAKE_MIGRATE_RC="1")

    assert result.returncode == 1
    assert "did not complete; nothing was switched" in result.stderr
    assert (cluster / "image-web-green").read_text() == "registry/userservice:v1"
    assert (cluster / "live").read_text() == "blue"


def test_idle_colour_that_never_gets_ready_is_not_switched_to(cluster) -> None:
    result = run(cluster, "deploy", "registry/userservice:v2", **{"FAKE_ROLLOUT_RC_web-green": "1"})

    assert result.returncode == 1
    assert "web-green did not become ready" in result.stderr
    assert (cluster / "live").read_text() == "blue"
    assert not (cluster / "smoke").exists()


def test_rollback_returns_to_the_previous_colour_and_its_image(cluster) -> None:
    assert run(cluster, "deploy", "registry/userservice:v2").returncode == 0

    result = run(cluster, "rollback")

    assert result.returncode == 0, result.stderr
    assert (cluster / "live").read_text() == "blue"
    assert (cluster / "previous").read_text() == "green"
    assert (cluster / "image-worker").read_text() == "registry/userservice:v1"
    assert (cluster / "image-beat").read_text() == "registry/userservice:v1"
    # The new colour keeps its pods, so a second switch is one command away.
    assert (cluster / "image-web-green").read_text() == "registry/userservice:v2"


def test_status_shows_live_and_idle_colours(cluster) -> None:
    result = run(cluster, "status")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == [
        "blue  live registry/userservice:v1",
        "green idle registry/userservice:v1",
    ]


def test_refuses_a_service_without_a_known_colour(cluster) -> None:
    (cluster / "live").write_text("purple")

    result = run(cluster, "deploy", "registry/userservice:v2")

    assert result.returncode == 1
    assert "unknown colour 'purple'" in result.stderr
    assert not any(line.startswith("set image") for line in calls(cluster))


@pytest.mark.parametrize("args", [(), ("deploy",), ("rollback", "extra"), ("launch",)])
def test_usage_errors(cluster, args) -> None:
    result = run(cluster, *args)

    assert result.returncode == 2
    assert "usage:" in result.stderr
