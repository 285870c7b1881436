"""Entrypoint of the image's processes on Amazon ECS (infra/): compose settings, then exec.

ECS injects a secret only whole or one JSON field at a time, and rotation changes the
database password inside its secret. So the task definitions pass each connection URL as
a template with the non-secret parts (`DATABASE_URL_TEMPLATE`, with `{username}`,
`{password}`, ...) and the secret's JSON (`DATABASE_URL_CREDENTIALS`); this fills the
template, URL-quoting every field, when the task starts, so a task started after a
rotation connects with the new password. The inputs are removed from the environment.

`--allow-task-ip` adds the task's own private IPv4 address (from the ECS task metadata
endpoint) to DJANGO_ALLOWED_HOSTS: the load balancer's health checks send it as Host.

Usage: python scripts/ecs_entrypoint.py [--allow-task-ip] -- COMMAND [ARGS...]
"""

import json
import os
import sys
import urllib.request
from collections.abc import MutableMapping
from urllib.parse import quote

# The settings of docs/settings.md that carry credentials and arrive as template + JSON.
COMPOSED_SETTINGS = ("DATABASE_URL", "DATABASE_REPLICA_URLS", "REDIS_URL", "CELERY_BROKER_URL")
TEMPLATE_SUFFIX = "_TEMPLATE"
CREDENTIALS_SUFFIX = "_CREDENTIALS"
METADATA_ENV = "ECS_CONTAINER_METADATA_URI_V4"


def inputs_of(setting: str) -> tuple[str, str]:
    """The two variables a composed setting is made from: its template and its credentials."""
    return setting + TEMPLATE_SUFFIX, setting + CREDENTIALS_SUFFIX


def compose(environ: MutableMapping[str, str]) -> None:
    """Replace each template + credentials pair in `environ` with the setting it makes."""
    for setting in COMPOSED_SETTINGS:
        template_name, credentials_name = inputs_of(setting)
        if template_name not in environ:
            continue
        fields = json.loads(environ.pop(credentials_name))
        quoted = {key: quote(str(value), safe="") for key, value in fields.items()}
        environ[setting] = environ.pop(template_name).format_map(quoted)


def task_ipv4(metadata_uri: str) -> str:
    """The first private IPv4 address of this task, from the ECS task metadata endpoint."""
    # The endpoint is a link-local http URL that ECS itself sets in the environment.
    with urllib.request.urlopen(f"{metadata_uri}/task", timeout=2) as response:  # noqa: S310  # nosec B310
        task = json.load(response)
    for container in task.get("Containers", []):
        for network in container.get("Networks", []):
            for address in network.get("IPv4Addresses", []):
                return str(address)
    raise RuntimeError("the task metadata lists no IPv4 address")


def allow_task_ip(environ: MutableMapping[str, str]) -> None:
    """Append the task's IPv4 address to DJANGO_ALLOWED_HOSTS (kept as is off ECS)."""
    if METADATA_ENV not in environ:
        return
    hosts = [host for host in environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if host]
    environ["DJANGO_ALLOWED_HOSTS"] = ",".join([*hosts, task_ipv4(environ[METADATA_ENV])])


def main(argv: list[str]) -> int:
    """Prepare the environment and exec the command after `--`; return 2 on a usage error."""
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    options, command = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    compose(os.environ)
    if "--allow-task-ip" in options:
        allow_task_ip(os.environ)
    # Replaces this process, so the command gets ECS's signals (SIGTERM) directly.
    os.execvp(command[0], command)  # noqa: S606  # nosec B606


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
