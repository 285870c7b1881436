"""Django settings: the one place where configuration is read from the environment.

Every variable is listed with its default and meaning in docs/settings.md. The defaults
give the embedded setup of `make run`: SQLite, an in-process cache and tasks run
in-process. Production sets DATABASE_URL, REDIS_URL and CELERY_BROKER_URL. Nothing here
exists for the tests alone: what only they may use is in config/test_settings.py.
"""

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from core.messaging.broker_probe import RABBITMQ_SCHEMES, broker_is_rabbitmq
from core.observability.logging import logging_config
from core.secret_keys import weakness as secret_weakness

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# --- Core ---------------------------------------------------------------------------

DEBUG = env.bool("DJANGO_DEBUG", default=False)

_INSECURE_SECRET_KEY = "django-insecure-development-only-key"  # noqa: S105 (refused below)
# Empty counts as unset (a blank Secret value must not slip past the check below).
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or _INSECURE_SECRET_KEY
if not DEBUG:
    # A default, weak or published key would let anyone forge sessions and signed links.
    if SECRET_KEY == _INSECURE_SECRET_KEY:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")
    _weakness = secret_weakness(SECRET_KEY, root=BASE_DIR)
    if _weakness:
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY {_weakness}: generate one, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'."
        )

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # django.contrib.admin, with the login throttled like the API's (users.admin_site).
    "config.apps.AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "csp",
    "core",
    "users",
    "events",
]

MIDDLEWARE = [
    # Observability: first and last, so metrics time the whole stack and every
    # line logged while serving a request carries its id.
    "core.observability.request_metrics.PrometheusBeforeMiddleware",
    "core.observability.request_logging.RequestLoggingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "core.http.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "core.http.middleware.RequestBodyLimitMiddleware",
    "core.http.middleware.ReplicaPinMiddleware",
    # Sessions, the session user and messages step aside for bearer-token API requests
    # (core.http.middleware.authenticates_with_token); CSRF and the security headers never do.
    "core.http.middleware.BrowserSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "core.http.middleware.BrowserAuthenticationMiddleware",
    "core.http.middleware.BrowserMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.observability.request_metrics.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------

# Empty counts as unset, so `DATABASE_URL=` in an env file means the embedded default.
DATABASE_URL = env.str("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"


def _database(url: str, *, pool_timeout: float) -> dict:
    config = env.db_url_config(url)
    if config["ENGINE"] == "django.db.backends.postgresql":
        # django-prometheus's wrapper of the same backend counts queries by alias; ours
        # around it fails fast while the server is unreachable (core/db/backends/postgresql).
        config["ENGINE"] = "core.db.backends.postgresql"
        # psycopg 3's pool replaces persistent connections; Django requires CONN_MAX_AGE 0
        # with it. With health checks on, the pool checks each connection on borrow, so one
        # that died while pooled (a restarted server) is replaced, never handed out.
        config["CONN_MAX_AGE"] = 0
        config["CONN_HEALTH_CHECKS"] = True
        config["OPTIONS"] = {
            # Names our connections in pg_stat_activity, for operators and tests alike.
            "application_name": env.str("DATABASE_APPLICATION_NAME", default="userservice"),
            # Parameters travel apart from the SQL text: the server plans a repeated
            # statement once per connection (psycopg prepares it from its fifth run), and
            # no value is quoted into the text on either side (docs/benchmarks.md).
            "server_side_binding": env.bool("DATABASE_SERVER_SIDE_BINDING", default=True),
            "pool": {
                "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=1),
                "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=10),
                # A request waits this long for a connection, then gets a 503. A sync worker
                # holds one connection at a time (two while its relay marks a batch), so the
                # wait is for connecting: with the server down it is the whole timeout
                # (docs/reliability.md).
                "timeout": pool_timeout,
            },
        }
    return config


DATABASES = {
    "default": _database(DATABASE_URL, pool_timeout=env.float("DATABASE_POOL_TIMEOUT", default=2.0))
}

# Read replicas: aliases replica_0, replica_1, ... Reads are routed by core.db.router;
# with none configured every query uses the primary.
DATABASE_REPLICA_URLS = env.list("DATABASE_REPLICA_URLS", default=[])
REPLICA_DATABASES = [f"replica_{index}" for index in range(len(DATABASE_REPLICA_URLS))]
for _alias, _url in zip(REPLICA_DATABASES, DATABASE_REPLICA_URLS, strict=True):
    # Short: reads fall back to the primary rather than queue behind a struggling replica.
    DATABASES[_alias] = _database(
        _url, pool_timeout=env.float("DATABASE_REPLICA_POOL_TIMEOUT", default=1.0)
    )
DATABASE_ROUTERS = ["core.db.router.ReplicaRouter"]

# A client's reads stay on the primary this long after its write. It must outlast the worst
# lag a replica can have while still admitted (max lag plus one check interval).
REPLICA_PIN_SECONDS = env.float("REPLICA_PIN_SECONDS", default=15.0)
REPLICA_MAX_LAG_SECONDS = env.float("REPLICA_MAX_LAG_SECONDS", default=5.0)
REPLICA_CHECK_INTERVAL = env.float("REPLICA_CHECK_INTERVAL", default=2.0)
REPLICA_CONNECT_TIMEOUT = env.int("REPLICA_CONNECT_TIMEOUT", default=1)
if REPLICA_PIN_SECONDS <= REPLICA_MAX_LAG_SECONDS + REPLICA_CHECK_INTERVAL:
    raise ImproperlyConfigured(
        "REPLICA_PIN_SECONDS must exceed REPLICA_MAX_LAG_SECONDS + REPLICA_CHECK_INTERVAL."
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "users.User"
AUTHENTICATION_BACKENDS = ["users.authentication.PrimaryModelBackend"]

# --- Cache --------------------------------------------------------------------------

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            # django-redis with a circuit breaker and a local fallback (core/cache/backend.py).
            "BACKEND": "core.cache.backend.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                # Short timeouts: a hung Redis must cost milliseconds, not a request.
                "SOCKET_CONNECT_TIMEOUT": env.float("REDIS_SOCKET_CONNECT_TIMEOUT", default=0.2),
                "SOCKET_TIMEOUT": env.float("REDIS_SOCKET_TIMEOUT", default=0.2),
                # JSON, never pickle: a value planted in Redis must not run code here.
                # (ResilientRedisCache enforces it whatever this says.)
                "SERIALIZER": "core.cache.backend.SafeJSONSerializer",
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Two-layer cache of users and tokens (core/cache/backend.py, users/cache.py).
USER_CACHE_TTL = env.float("USER_CACHE_TTL", default=3600)
USER_NEGATIVE_CACHE_TTL = env.float("USER_NEGATIVE_CACHE_TTL", default=30)
USER_LOCAL_CACHE_TTL = env.float("USER_LOCAL_CACHE_TTL", default=2)
USER_LOCAL_CACHE_MAX_ENTRIES = env.int("USER_LOCAL_CACHE_MAX_ENTRIES", default=10000)
AUTH_TOKEN_CACHE_TTL = env.float("AUTH_TOKEN_CACHE_TTL", default=300)
CACHE_FILL_LOCK_TIMEOUT = env.float("CACHE_FILL_LOCK_TIMEOUT", default=0.5)
# How long a logout, password change or deactivation waits for Redis to record the
# revocation (through a write pause or a failover) before answering 503, revoking nothing.
AUTH_REVOCATION_TIMEOUT = env.float("AUTH_REVOCATION_TIMEOUT", default=5.0)
REDIS_BREAKER_FAIL_MAX = env.int("REDIS_BREAKER_FAIL_MAX", default=3)
REDIS_BREAKER_RESET_TIMEOUT = env.float("REDIS_BREAKER_RESET_TIMEOUT", default=5)


# --- Celery -------------------------------------------------------------------------

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
# Without a broker, tasks run in-process so `make run` needs no services.
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL


# CELERY_BROKER_URL's scheme chooses the broker: redis:// (the simple default of
# development) or amqp:// (RabbitMQ, the production broker; amqps:// for TLS).
CELERY_BROKER_IS_RABBITMQ = broker_is_rabbitmq(CELERY_BROKER_URL)


def _url_has_credentials(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme not in ("redis", "rediss", *RABBITMQ_SCHEMES) or bool(parts.password)


# Redis holds the throttle counters, the token cache and the task queue: anyone who can
# write to it can lift limits or queue work; so can anyone who can publish to the broker.
# Production refuses a Redis or RabbitMQ URL without a password (redis://user:password@
# host:6379/0, TLS rediss://; amqp://user:password@host:5672/vhost, TLS amqps://).
for _name, _url in (
    ("REDIS_URL", REDIS_URL),
    ("CELERY_BROKER_URL", CELERY_BROKER_URL),
):
    if not DEBUG and _url and not _url_has_credentials(_url):
        raise ImproperlyConfigured(f"{_name} must carry a password when DJANGO_DEBUG is off.")

CELERY_TASK_EAGER_PROPAGATES = True
# JSON only, never pickle: a message planted in the broker must not run code in a worker.
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
CELERY_EVENT_SERIALIZER = "json"

# --- Events and Celery workers ------------------------------------------------------

# Tasks are acknowledged after they finish, and a task whose worker died is requeued, so
# a crash mid-task means redelivery (handlers are idempotent), never a lost task.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Unacknowledged messages a worker holds, per process. Event handlers are buffered into
# batches (events.tasks.handle_events): the prefetch must let a batch of EVENTS_BATCH_SIZE
# fill. A killed worker's prefetched messages come back to the queue (acks late).
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=32)
# After a reconnect Celery would lower the prefetch by what the worker still holds and
# raise it back as tasks finish; buffered batch messages do not finish that way, and
# RabbitMQ's quorum queues never see the raise (Celery issue 9512), so the worker could
# stay below a batch for good. The messages held on the lost connection are redelivered
# anyway (acks late), so the full prefetch is safe.
CELERY_WORKER_ENABLE_PREFETCH_COUNT_REDUCTION = False
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=60)
# The soft limit raises inside the task first, so it can end cleanly (its transaction rolls back).
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT * 0.8
# No result backend: nothing reads results, and the outbox tables are the state.
CELERY_TASK_IGNORE_RESULT = True
# Separate queues so a slow webhook endpoint never delays emails or the outbox.
CELERY_TASK_DEFAULT_QUEUE = "events"
CELERY_TASK_ROUTES = {
    "events.tasks.deliver_webhook": {"queue": "webhooks"},
    "events.tasks.deliver_webhooks": {"queue": "webhooks"},
    # Beat's periodic jobs have their own queue, which workers read in turn with the
    # others: a backlog of handler tasks (after a broker outage, say) must not hold up the
    # outbox sweep that clears it.
    "events.tasks.sweep_outbox": {"queue": "housekeeping"},
    "events.tasks.purge_expired": {"queue": "housekeeping"},
    # Mail, like the event handlers' welcome email; the rest of users.tasks is beat's.
    "users.tasks.send_email_change_confirmation": {"queue": "events"},
    "users.tasks.send_email_changed_notice": {"queue": "events"},
    "users.tasks.*": {"queue": "housekeeping"},
    "events.tasks.*": {"queue": "events"},
}
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=2.0)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis redelivers a message unacknowledged for this long. It must exceed the longest
# task and the longest retry countdown (the worker holds those messages unacknowledged),
# and stay far below Redis's default hour so a killed worker's tasks come back soon.
# RabbitMQ has no such timeout: it requeues a message the moment its consumer's
# connection drops.
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=600)
# How often the worker and broker check each other's connection (RabbitMQ only): a
# broker that vanished without closing the connection is noticed within about two of
# these, and the worker reconnects.
CELERY_BROKER_HEARTBEAT = env.int("CELERY_BROKER_HEARTBEAT", default=10)
# Queues the workers read; webhooks and housekeeping are apart from events (routes below).
CELERY_QUEUE_NAMES = ("events", "webhooks", "housekeeping")
# RabbitMQ's quorum queues give up on a message delivered this many times (a task that
# kills its worker every time) and drop it; its event is then handed over again by the
# outbox (EVENTS_REDISPATCH_*), so the database stays the one dead letter. A queue's
# arguments are fixed when it is first declared: not a setting.
RABBITMQ_DELIVERY_LIMIT = 20
if CELERY_BROKER_IS_RABBITMQ:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A publish returns only once the broker has the message (quorum queues: on a
        # majority of nodes); a refusal or a lost connection raises, and the outbox then
        # keeps the event unpublished.
        "confirm_publish": True,
        # A hung broker (it accepts connections, never answers) must fail a publish, its
        # confirmation included, within this bound rather than block the request that
        # committed an event; the event stays in the outbox for the sweeper.
        "connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
        "read_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
        "write_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
    }
    # Quorum queues: durable, replicated (Raft) across the broker's nodes. Topic
    # exchanges, because Celery's native delayed delivery (the retries' countdowns wait
    # in the broker, not unacknowledged in a worker) cannot route through direct ones.
    # Celery detects the quorum queues (worker_detect_quorum_queues, on by default) and
    # uses a per-consumer prefetch, since they have no global QoS.
    CELERY_TASK_DEFAULT_QUEUE_TYPE = "quorum"
    CELERY_TASK_DEFAULT_EXCHANGE_TYPE = "topic"
    CELERY_TASK_CREATE_MISSING_QUEUES = False
    CELERY_TASK_QUEUES = [
        Queue(
            name,
            Exchange(name, type="topic"),
            routing_key=name,
            queue_arguments={"x-queue-type": "quorum", "x-delivery-limit": RABBITMQ_DELIVERY_LIMIT},
        )
        for name in CELERY_QUEUE_NAMES
    ]
    CELERY_BROKER_NATIVE_DELAYED_DELIVERY_QUEUE_TYPE = "quorum"
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        # A hung broker (it accepts connections, never answers) must fail a publish within
        # this bound rather than block the request that committed an event forever; the
        # event stays in the outbox for the sweeper. Above the worker's 1 s BRPOP poll.
        "socket_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
        "socket_connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
        # How often a worker looks for messages past the visibility timeout.
        "unacked_restore_interval": env.int("CELERY_UNACKED_RESTORE_INTERVAL", default=10),
        "unacked_restore_throttle": 1,
    }

# Events handled together: a batch runs when this many messages are buffered, or this
# long after the first arrived (events.tasks.handle_events); deliveries to a subscription
# are posted in batches of the same size.
EVENTS_BATCH_SIZE = env.int("EVENTS_BATCH_SIZE", default=50)
EVENTS_BATCH_WAIT_SECONDS = env.float("EVENTS_BATCH_WAIT_SECONDS", default=0.2)
# After a commit, each process's relay waits this long for other requests' events and
# hands them all to the broker as one message (events.relay); 0 publishes each event in
# the request that committed it, as tasks run in-process (`make run`) always do.
EVENTS_RELAY_LINGER_SECONDS = env.float("EVENTS_RELAY_LINGER_SECONDS", default=0.05)
EVENTS_SWEEP_INTERVAL_SECONDS = env.float("EVENTS_SWEEP_INTERVAL_SECONDS", default=5.0)
EVENTS_SWEEP_AFTER_SECONDS = env.float("EVENTS_SWEEP_AFTER_SECONDS", default=5.0)
EVENTS_SWEEP_BATCH_SIZE = env.int("EVENTS_SWEEP_BATCH_SIZE", default=100)
# A published event no handler run finished after this long lost its message: it is
# handed over again (events.services.outbox_redispatch_unhandled), at most MAX times.
EVENTS_REDISPATCH_AFTER_SECONDS = env.float("EVENTS_REDISPATCH_AFTER_SECONDS", default=900.0)
EVENTS_REDISPATCH_MAX = env.int("EVENTS_REDISPATCH_MAX", default=3)
EVENTS_HANDLER_MAX_RETRIES = env.int("EVENTS_HANDLER_MAX_RETRIES", default=5)
EVENTS_RETRY_BACKOFF_SECONDS = env.float("EVENTS_RETRY_BACKOFF_SECONDS", default=2.0)
# The longest wait before any retry (handlers and webhooks).
EVENTS_RETRY_BACKOFF_MAX_SECONDS = env.float("EVENTS_RETRY_BACKOFF_MAX_SECONDS", default=300.0)
# Retention (events/retention.py): published outbox events, handled-event records and
# finished deliveries' attempts older than these are deleted, in batches, by a beat job.
OUTBOX_RETENTION_DAYS = env.float("OUTBOX_RETENTION_DAYS", default=30.0)
HANDLED_EVENT_RETENTION_DAYS = env.float("HANDLED_EVENT_RETENTION_DAYS", default=30.0)
WEBHOOK_ATTEMPT_RETENTION_DAYS = env.float("WEBHOOK_ATTEMPT_RETENTION_DAYS", default=14.0)
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=500)
RETENTION_INTERVAL_SECONDS = env.float("RETENTION_INTERVAL_SECONDS", default=3600.0)
CELERY_BEAT_SCHEDULE = {
    "events-purge-expired": {
        "task": "events.tasks.purge_expired",
        "schedule": RETENTION_INTERVAL_SECONDS,
        "options": {"expires": RETENTION_INTERVAL_SECONDS},
    },
    "events-sweep-outbox": {
        "task": "events.tasks.sweep_outbox",
        "schedule": EVENTS_SWEEP_INTERVAL_SECONDS,
        # A sweep queued while every worker was down is stale by the next one.
        "options": {"expires": EVENTS_SWEEP_INTERVAL_SECONDS},
    },
    "users-delete-expired-auth-tokens": {
        "task": "users.tasks.delete_expired_auth_tokens",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
}

# Private, loopback and link-local webhook targets are refused (SSRF) unless allowed;
# `make run` (debug), `make services-up`'s stack, the load runs and the tests allow them.
WEBHOOK_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", default=DEBUG)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=5.0)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
WEBHOOK_RETRY_BACKOFF_SECONDS = env.float("WEBHOOK_RETRY_BACKOFF_SECONDS", default=2.0)
WEBHOOK_BREAKER_FAIL_MAX = env.int("WEBHOOK_BREAKER_FAIL_MAX", default=5)
WEBHOOK_BREAKER_RESET_SECONDS = env.float("WEBHOOK_BREAKER_RESET_SECONDS", default=60.0)
# Keep-alive connection pools a worker process keeps, one per endpoint address, and the
# connections each keeps (events/webhook_http.py).
# A due webhook delivery still waiting this long lost its message (an enqueue that failed,
# an attempt that crashed) and is enqueued again (events.webhooks.webhook_sweep_stalled).
# With Redis, a message can be out for a whole visibility timeout; RabbitMQ hands a lost
# consumer's messages back at once, so a minute (above CELERY_TASK_TIME_LIMIT) suffices.
WEBHOOK_STALLED_AFTER_SECONDS = env.float(
    "WEBHOOK_STALLED_AFTER_SECONDS",
    default=max(60.0, CELERY_TASK_TIME_LIMIT)
    if CELERY_BROKER_IS_RABBITMQ
    else CELERY_VISIBILITY_TIMEOUT,
)
WEBHOOK_HTTP_POOLS = env.int("WEBHOOK_HTTP_POOLS", default=64)
WEBHOOK_HTTP_POOL_CONNECTIONS = env.int("WEBHOOK_HTTP_POOL_CONNECTIONS", default=2)
if (
    not CELERY_BROKER_IS_RABBITMQ
    and EVENTS_RETRY_BACKOFF_MAX_SECONDS + CELERY_TASK_TIME_LIMIT >= CELERY_VISIBILITY_TIMEOUT
):
    # With Redis, a retry countdown past the visibility timeout is redelivered while still
    # waiting. RabbitMQ keeps countdowns in its delayed-delivery queues instead.
    raise ImproperlyConfigured(
        "EVENTS_RETRY_BACKOFF_MAX_SECONDS + CELERY_TASK_TIME_LIMIT must stay below "
        "CELERY_VISIBILITY_TIMEOUT."
    )

DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="no-reply@localhost")
# A new email is applied only through the signed link mailed to it: the page the link
# opens (it POSTs the token to /api/v1/users/confirm-email/), and how long the link lasts.
EMAIL_CHANGE_CONFIRM_URL = env.str(
    "EMAIL_CHANGE_CONFIRM_URL", default="http://127.0.0.1:8000/api/v1/users/confirm-email/"
)
EMAIL_CHANGE_TOKEN_MAX_AGE = env.int("EMAIL_CHANGE_TOKEN_MAX_AGE", default=24 * 3600)
if env.str("EMAIL_FILE_PATH", default=""):
    # For django.core.mail.backends.filebased.EmailBackend: `make services-up`'s mail sink.
    EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH")

# --- Authentication -----------------------------------------------------------------

# Argon2id with a bounded memory cost (users/password_hashing.py); hashes made with
# Django's default Argon2 parameters still verify and are rehashed at login.
PASSWORD_HASHERS = [
    "users.password_hashing.BoundedArgon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
        "OPTIONS": {"user_attributes": ("email", "display_name")},
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "users.password_validation.MinimumDistinctCharactersValidator"},
    {"NAME": "users.password_validation.EmailDerivedPasswordValidator"},
]

# Failed logins back off (users/login_throttle.py): per client IP and email after a few
# failures, per email from everywhere after many, waits doubling up to a cap.
LOGIN_FAILURE_WINDOW_SECONDS = env.int("LOGIN_FAILURE_WINDOW_SECONDS", default=3600)
LOGIN_FREE_FAILURES_PER_CLIENT = env.int("LOGIN_FREE_FAILURES_PER_CLIENT", default=5)
LOGIN_FREE_FAILURES_PER_EMAIL = env.int("LOGIN_FREE_FAILURES_PER_EMAIL", default=50)
LOGIN_BACKOFF_BASE_SECONDS = env.float("LOGIN_BACKOFF_BASE_SECONDS", default=30.0)
LOGIN_BACKOFF_MAX_SECONDS = env.float("LOGIN_BACKOFF_MAX_SECONDS", default=900.0)

REST_KNOX = {
    "TOKEN_TTL": timedelta(seconds=env.int("AUTH_TOKEN_TTL_SECONDS", default=10 * 3600)),
    "AUTH_HEADER_PREFIX": "Bearer",
}

# --- REST framework -----------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "users.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "core.http.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["core.http.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "core.http.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.http.exceptions.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "core.http.throttling.AnonRateThrottle",
        "core.http.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON_RATE", default="100/minute"),
        "user": env.str("THROTTLE_USER_RATE", default="1000/minute"),
        "signup": env.str("THROTTLE_SIGNUP_RATE", default="10/hour"),
        "login_ip": env.str("THROTTLE_LOGIN_IP_RATE", default="20/minute"),
    },
    "NUM_PROXIES": env.int("TRUSTED_PROXY_COUNT", default=0),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "User service API",
    "DESCRIPTION": "Users, authentication tokens and their lifecycle.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Served from the installed sidecar package: the docs page needs no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Links from responses to the `{id}` routes they lead to (core/http/openapi.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.http.openapi.add_links",
    ],
}

# The schema and Swagger UI: to anyone, or (production's default) to staff only.
API_DOCS_PUBLIC = env.bool("API_DOCS_PUBLIC", default=DEBUG)

# Scrapes of /metrics need `Authorization: Bearer <this>`; empty: loopback clients only.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# How often each web and worker process records its CPU, memory and connection pools
# (core/observability/resource_metrics.py); 0: never.
METRICS_SAMPLE_SECONDS = env.float("METRICS_SAMPLE_SECONDS", default=5.0)
if METRICS_TOKEN and not DEBUG:
    _weakness = secret_weakness(METRICS_TOKEN, root=BASE_DIR, min_length=32)
    if _weakness:
        raise ImproperlyConfigured(f"METRICS_TOKEN {_weakness}.")

# Request bodies larger than this are refused with 413 before any parsing.
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# JSON bodies nesting deeper than this are a 400 parse error (core/http/parsers.py); no
# operation of the API takes more than a few levels.
MAX_JSON_NESTING_DEPTH = env.int("MAX_JSON_NESTING_DEPTH", default=32)

# --- Security -----------------------------------------------------------------------

CSRF_FAILURE_VIEW = "core.http.exceptions.csrf_failure"
# A strict Content-Security-Policy on every response: scripts, styles, fonts and images
# from this origin only, no inline script or style, no plugins, no framing, no <base>
# tricks, forms post only here. The admin, the Swagger UI page (its start-up script and
# style served as files, core/http/api_docs.py) and the browsable API work under it; the
# browser tests fail on any violation (browser_tests/test_csp.py). `data:` images are
# the icons Swagger UI's and the admin's stylesheets embed.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [NONE],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "manifest-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Health probes arrive over plain HTTP from the orchestrator.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# --- Static files, i18n -------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")

# --- Observability: logs, worker metrics ----------------------------------------------

# JSON lines in production; readable key=value text for `make run`. See docs/observability.md.
LOG_FORMAT = env.str("LOG_FORMAT", default="console" if DEBUG else "json")
if LOG_FORMAT not in ("json", "console"):
    raise ImproperlyConfigured("LOG_FORMAT must be 'json' or 'console'.")
LOGGING = logging_config(level=env.str("LOG_LEVEL", default="INFO"), log_format=LOG_FORMAT)
# The Celery worker serves its task metrics here (0: not at all); loopback unless told.
CELERY_METRICS_PORT = env.int("CELERY_METRICS_PORT", default=9808)
CELERY_METRICS_ADDR = env.str("CELERY_METRICS_ADDR", default="127.0.0.1")

# --- Health (readiness) ----------------------------------------------------------------

# Seconds each /readyz dependency check may take; a probe must answer within its own timeout.
HEALTH_CHECK_TIMEOUT = env.float("HEALTH_CHECK_TIMEOUT", default=1.0)
