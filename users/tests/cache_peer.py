"""A second process for the cross-process cache tests (run by users/tests/test_cache.py).

Reads commands from stdin, one per line, and answers each with one JSON line:
`get <user id>` -> {"data": <cached representation or null>, "queries": <SQL queries run>}.
"""

import json
import os
import sys
from uuid import UUID

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.db import connection  # noqa: E402

from users.cache import user_entry_get  # noqa: E402


def main() -> None:
    """Answer commands until stdin closes."""
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command != "get":
            print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
            continue
        queries = 0

        def count(execute, sql, params, many, context):
            nonlocal queries
            queries += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(count):
            entry = user_entry_get(UUID(argument))
        data = None if entry is None else entry["user"]
        print(json.dumps({"data": data, "queries": queries}), flush=True)


if __name__ == "__main__":
    main()
