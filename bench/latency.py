"""One client, one request at a time, in-process (Django's test client, no HTTP server):
the latency of GET /api/v1/users/{id}/ itself, without queueing, and its SQL queries.

Usage (Django settings from the environment): python bench/latency.py USERS_FILE COUNT LABEL
Prints one line: LATENCY label=... mean_ms=... p50_ms=... p99_ms=... queries_per_request=...
"""

import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402


def main() -> None:
    """Time COUNT requests for Zipf-drawn users (same exponent as bench/zipf.lua)."""
    users_file, count, label = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    users = [line.split() for line in users_file.read_text().splitlines() if line]
    exponent = float(os.environ.get("BENCH_ZIPF_S", "1.1"))
    weights = [1 / rank**exponent for rank in range(1, len(users) + 1)]
    picks = random.Random(4).choices(users, weights=weights, k=count)  # noqa: S311
    client = Client(HTTP_HOST="127.0.0.1")
    queries = 0

    def count_queries(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    timings = []
    with connection.execute_wrapper(count_queries):
        for user_id, token in picks:
            start = time.perf_counter()
            response = client.get(f"/api/v1/users/{user_id}/", HTTP_AUTHORIZATION=f"Bearer {token}")
            timings.append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"{response.status_code} for {user_id}")
    timings.sort()
    print(
        f"LATENCY label={label} mean_ms={statistics.fmean(timings):.3f} "
        f"p50_ms={timings[len(timings) // 2]:.3f} p99_ms={timings[int(len(timings) * 0.99)]:.3f} "
        f"queries_per_request={queries / count:.2f}"
    )


if __name__ == "__main__":
    main()
