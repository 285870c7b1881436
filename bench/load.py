"""One bounded wrk run with bench/load.lua, and the numbers it reports."""

import os
import re
import subprocess

from bench.processes import ROOT


def wrk(
    port: int,
    settings: dict[str, str],
    *,
    duration: str,
    connections: str,
    threads: str,
) -> dict[str, float]:
    """Run wrk against 127.0.0.1:port; `settings` are load.lua's BENCH_* variables.

    Returns requests, seconds, rps, p50/p95/p99 in ms, errors (socket errors and
    responses >= 400) and non2xx.
    """
    result = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}",
            "--timeout",
            "5s",
            "-s",
            str(ROOT / "bench" / "load.lua"),
            f"http://127.0.0.1:{port}",
        ],
        env={**os.environ, **settings},
        check=True,
        capture_output=True,
        text=True,
    )
    match = re.search(r"^RESULT (.*)$", result.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{result.stdout}\n{result.stderr}")
    numbers = {key: float(value) for key, value in re.findall(r"(\w+)=([\d.]+)", match[1])}
    numbers["rps"] = numbers["requests"] / numbers["seconds"]
    return numbers
