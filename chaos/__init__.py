"""Faults under load (`make chaos`, `make chaos-short`); see docs/reliability.md."""
