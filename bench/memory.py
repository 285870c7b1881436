"""Resident memory of gunicorn's workers, from /proc."""

from pathlib import Path


def workers_resident_mb(master: int) -> list[float]:
    """VmRSS in MB of each direct child of gunicorn's master (its workers)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [_resident_mb(int(pid)) for pid in children]


def _resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")
