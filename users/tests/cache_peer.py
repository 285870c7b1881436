"""Another app server for the cross-process cache tests (users/tests/conftest.py runs it).

Reads commands from stdin, one per line, and answers each with one JSON line:
`get <user id>` -> {"data": <cached representation or null>, "queries": <SQL queries run>};
with CACHE_PEER_SCHEMA set, the process caches users in another schema and shape, as
another release would;
`update <user id> <display name>` -> {"version": <the row's new version>} (users.services);
`auth <token>` -> {"accepted": <bool>, "queries": <SQL queries run>} (TokenAuthentication);
`clock` -> {"now": <this process's time.time()>}.
"""

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.db import connection  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from rest_framework.exceptions import AuthenticationFailed  # noqa: E402

from users import cache as users_cache  # noqa: E402
from users import services  # noqa: E402
from users.authentication import TokenAuthentication  # noqa: E402
from users.cache import user_entry_get  # noqa: E402
from users.models import User  # noqa: E402

if os.environ.get("CACHE_PEER_SCHEMA"):
    # Another release, with its own shape of cached user: what the other colour of a
    # blue-green release would run.
    users_cache.user_cache.schema = os.environ["CACHE_PEER_SCHEMA"]

    def _other_record(user: User) -> dict[str, Any]:
        return {"release": "other", "name": user.display_name, "version": user.version}

    users_cache._record = _other_record


def counted(action: Callable[[], Any]) -> tuple[Any, int]:
    """`action()` and how many SQL queries it ran."""
    queries = 0

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        result = action()
    return result, queries


def get(argument: str) -> dict[str, Any]:
    """The cached user, as the API would read it."""
    entry, queries = counted(lambda: user_entry_get(UUID(argument)))
    data = None if entry is None else entry.get("user", entry)
    return {"data": data, "queries": queries}


def update(argument: str) -> dict[str, Any]:
    """A write through the services, as a PATCH would make it."""
    user_id, _, name = argument.partition(" ")
    user = services.user_update(user=User.objects.get(pk=user_id), data={"display_name": name})
    return {"version": user.version}


def auth(argument: str) -> dict[str, Any]:
    """Whether this server accepts the token, as every request would check it."""
    request = RequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {argument}")

    def check() -> bool:
        try:
            return TokenAuthentication().authenticate(request) is not None
        except AuthenticationFailed:
            return False

    accepted, queries = counted(check)
    return {"accepted": accepted, "queries": queries}


def clock(argument: str) -> dict[str, Any]:
    """This process's clock, which faketime may have shifted."""
    return {"now": time.time()}


COMMANDS = {"get": get, "update": update, "auth": auth, "clock": clock}


def main() -> None:
    """Answer commands until stdin closes."""
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        handler = COMMANDS.get(command)
        if handler is None:
            print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
            continue
        print(json.dumps(handler(argument)), flush=True)


if __name__ == "__main__":
    main()
