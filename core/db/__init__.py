"""The database layer: where each query goes (writes, and the reads that must see them,
to the primary; other reads to a healthy replica), which replicas are healthy, direct
probe connections, and the PostgreSQL backend that fails fast while its server is
down (docs/replicas.md)."""
