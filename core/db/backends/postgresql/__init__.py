"""PostgreSQL backend: django-prometheus's, failing fast while the server is unreachable."""
