"""The cache layer the apps build their caches on: a process-local layer, then Redis
behind one circuit breaker, then the database (docs/cache.md)."""
