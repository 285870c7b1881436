"""The service's settings on ECS: plain values here, secrets and connections in the stack.

The same values as deploy/k8s/base/configmap.yaml, for the AWS topology (one ALB in front,
so one trusted proxy). The settings-coverage test holds this, plus what the stack adds,
to docs/settings.md in both directions.
"""

# Inside a task, whose security groups decide who reaches it (docs/security.md).
ALL_INTERFACES = "0.0.0.0"  # noqa: S104  # nosec B104
# The task's own writable volume: the root filesystem is read-only.
TASK_TMP = "/tmp"  # noqa: S108  # nosec B108

# Operators tune these in SSM Parameter Store without a new image or template; the stack
# creates them with these defaults (docs/deploy.md, "AWS").
WEBHOOK_SETTINGS = {
    "WEBHOOK_ALLOW_PRIVATE_TARGETS": "false",
    "WEBHOOK_TIMEOUT_SECONDS": "5",
    "WEBHOOK_MAX_ATTEMPTS": "8",
    "WEBHOOK_RETRY_BACKOFF_SECONDS": "2",
    "WEBHOOK_BREAKER_FAIL_MAX": "5",
    "WEBHOOK_BREAKER_RESET_SECONDS": "60",
}


def plain_settings(*, domain_name: str, web_concurrency: int) -> dict[str, str]:
    """Every non-secret, non-connection setting, as the task definitions' environment."""
    return {
        "DJANGO_DEBUG": "false",
        # `localhost`: the container health check's Host. The entrypoint adds the task's IP.
        "DJANGO_ALLOWED_HOSTS": f"{domain_name},localhost",
        "DJANGO_CSRF_TRUSTED_ORIGINS": f"https://{domain_name}",
        "DATABASE_POOL_MIN_SIZE": "1",
        "DATABASE_POOL_MAX_SIZE": "4",
        "DATABASE_POOL_TIMEOUT": "2",
        "DATABASE_REPLICA_POOL_TIMEOUT": "1",
        "DATABASE_APPLICATION_NAME": "userservice",
        "REPLICA_PIN_SECONDS": "15",
        "REPLICA_MAX_LAG_SECONDS": "5",
        "REPLICA_CHECK_INTERVAL": "2",
        "REPLICA_CONNECT_TIMEOUT": "1",
        "REDIS_SOCKET_CONNECT_TIMEOUT": "0.2",
        "REDIS_SOCKET_TIMEOUT": "0.2",
        "REDIS_BREAKER_FAIL_MAX": "3",
        "REDIS_BREAKER_RESET_TIMEOUT": "5",
        "USER_CACHE_TTL": "3600",
        "USER_NEGATIVE_CACHE_TTL": "30",
        "USER_LOCAL_CACHE_TTL": "2",
        "USER_LOCAL_CACHE_MAX_ENTRIES": "10000",
        "AUTH_TOKEN_CACHE_TTL": "300",
        "CACHE_FILL_LOCK_TIMEOUT": "0.5",
        "AUTH_TOKEN_TTL_SECONDS": "36000",
        "THROTTLE_ANON_RATE": "100/minute",
        "THROTTLE_USER_RATE": "1000/minute",
        "THROTTLE_SIGNUP_RATE": "10/hour",
        "THROTTLE_LOGIN_IP_RATE": "20/minute",
        "THROTTLE_LOGIN_EMAIL_RATE": "5/minute",
        # The Application Load Balancer is the one proxy in front of the tasks.
        "TRUSTED_PROXY_COUNT": "1",
        "MAX_REQUEST_BODY_BYTES": "1048576",
        "DJANGO_SECURE_SSL_REDIRECT": "true",
        "DJANGO_SECURE_COOKIES": "true",
        "DJANGO_SECURE_HSTS_SECONDS": "31536000",
        "DJANGO_FAST_PASSWORD_HASHER": "false",
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "DEFAULT_FROM_EMAIL": f"no-reply@{domain_name}",
        # Only read by the file-based email backend, which production does not use.
        "EMAIL_FILE_PATH": "",
        "CELERY_TASK_TIME_LIMIT": "60",
        "CELERY_BROKER_CONNECTION_TIMEOUT": "2",
        "CELERY_VISIBILITY_TIMEOUT": "600",
        "CELERY_UNACKED_RESTORE_INTERVAL": "10",
        "EVENTS_SWEEP_INTERVAL_SECONDS": "5",
        "EVENTS_SWEEP_AFTER_SECONDS": "5",
        "EVENTS_SWEEP_BATCH_SIZE": "100",
        "EVENTS_HANDLER_MAX_RETRIES": "5",
        "EVENTS_RETRY_BACKOFF_SECONDS": "2",
        "EVENTS_RETRY_BACKOFF_MAX_SECONDS": "300",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": f"{TASK_TMP}/prometheus-metrics",
        # Scraped from inside the VPC only (the scraper security group), like web's /metrics.
        "CELERY_METRICS_ADDR": ALL_INTERFACES,
        "CELERY_METRICS_PORT": "9808",
        "HEALTH_CHECK_TIMEOUT": "1.0",
        "HOST": ALL_INTERFACES,
        "PORT": "8000",
        "WEB_CONCURRENCY": str(web_concurrency),
        "GUNICORN_TIMEOUT": "30",
        "GUNICORN_GRACEFUL_TIMEOUT": "25",
        "GUNICORN_MAX_REQUESTS": "10000",
        "GUNICORN_PRELOAD": "true",
        # The app logs one JSON line per request; gunicorn's own access line would repeat it.
        "GUNICORN_ACCESS_LOG": "",
    }
