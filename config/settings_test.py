"""Settings for the test run: production settings with a throwaway secret key."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("DJANGO_DEBUG", "false")
# Tests get an embedded server of their own, apart from the development data in var/postgres.
os.environ.setdefault(
    "EMBEDDED_POSTGRES_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "test-postgres")
)

from config.brokers import broker_settings
from config.settings import *  # noqa: F403

# Password hashing dominates user-creating tests otherwise.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Tasks run in-process unless a test starts a real worker (tests/recommendations/test_worker.py
# turns eager mode off); the broker is set from the start so every producer points at it.
CELERY_BROKER_URL = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
# Its queues as that broker gets them (RabbitMQ: durable quorum queues), not those of CELERY_BROKER_URL.
_test_broker = broker_settings(CELERY_BROKER_URL, queue_type=CELERY_RABBITMQ_QUEUE_TYPE)  # noqa: F405
CELERY_TASK_QUEUES = _test_broker["task_queues"]
CELERY_BROKER_TRANSPORT_OPTIONS = _test_broker["broker_transport_options"]
CELERY_TASK_DEFAULT_QUEUE_TYPE = _test_broker["task_default_queue_type"]

# Two test runs at once (several checkouts or people on one machine) each name their own database
# and Redis database, e.g. TEST_DATABASE_NAME=test_api TEST_CELERY_BROKER_URL=redis://127.0.0.1:6379/14.
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME", "test_recommender")}  # noqa: F405
CELERY_TASK_ALWAYS_EAGER = True
# Throttle counters in this process's memory, whatever the environment names: the test that is
# about the shared cache starts servers with the production settings.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Templates name static files as they are in the source folders (no collectstatic manifest).
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405

# The tests' real encoder is all-MiniLM-L6-v2 unless the environment names another: 6 layers and
# 90 MB against the default's 12 layers and 470 MB, on a suite that loads it in every worker it
# starts. Tests of the default model (multilingual-e5-small: conversion, Chinese and
# cross-lingual answers, the upgrade) name it themselves.
if "RECOMMENDER_ENCODER_MODEL" not in os.environ:
    RECOMMENDER = {**RECOMMENDER, "ENCODER_MODEL": "all-MiniLM-L6-v2"}  # noqa: F405
