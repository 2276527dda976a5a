"""The brokers the task tests run against: the test run's Redis and RabbitMQ.

RabbitMQ gets a virtual host of the test run's own (recommender-<TEST_DATABASE_NAME>, made with
rabbitmqctl when missing), so two checkouts testing at once never take each other's tasks;
TEST_CELERY_AMQP_BROKER_URL names another server or vhost. The in-process producer (the Celery
app of the test process) is pointed at the broker with the queues that broker gets in
production (config.brokers: durable quorum queues on RabbitMQ).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import pytest
import redis
from django.conf import settings
from kombu import Connection
from kombu.exceptions import ChannelError

from config.brokers import QUEUES, broker_settings

BROKER_KINDS = ("redis", "rabbitmq")


def rabbitmq_url() -> str:
    explicit = os.environ.get("TEST_CELERY_AMQP_BROKER_URL")
    if explicit:
        return explicit
    vhost = "recommender-" + os.environ.get("TEST_DATABASE_NAME", "test_recommender")
    return f"amqp://guest:guest@127.0.0.1:5672/{vhost}"


def _rabbitmq_vhost_ensure(url: str) -> None:
    vhost = unquote(urlsplit(url).path[1:]) or "/"
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl is None or vhost == "/":
        return
    listed = subprocess.run([rabbitmqctl, "list_vhosts", "-q"], capture_output=True, text=True, timeout=60)
    if listed.returncode != 0 or vhost in listed.stdout.split():
        return
    subprocess.run([rabbitmqctl, "add_vhost", vhost], capture_output=True, timeout=60, check=True)
    subprocess.run(
        [rabbitmqctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        capture_output=True,
        timeout=60,
        check=True,
    )


@dataclass(frozen=True)
class BrokerUnderTest:
    kind: str
    url: str

    def clear(self) -> None:
        """Nothing queued: what an earlier test (or run) left behind is gone."""
        if self.kind == "redis":
            redis.Redis.from_url(self.url).flushdb()
            return
        with Connection(self.url) as connection:
            for name in QUEUES:
                channel = connection.channel()
                try:
                    channel.queue_purge(name)
                except ChannelError:  # not declared yet: holds nothing (the channel is closed)
                    pass

    def use(self) -> None:
        """Point this process's Celery app at the broker, as a web process configured for it."""
        from config.celery import app

        app.conf.broker_url = self.url
        for name, value in broker_settings(self.url, queue_type=settings.CELERY_RABBITMQ_QUEUE_TYPE).items():
            app.conf[name] = value
        # The app keeps its queues, router and connection pools from first use: made again.
        app.__dict__.pop("amqp", None)
        app._pool = None


def broker_for(kind: str) -> BrokerUnderTest:
    """The broker of this kind, answering, or the test is skipped saying why."""
    if kind == "redis":
        broker = BrokerUnderTest("redis", str(settings.CELERY_BROKER_URL))
        redis.Redis.from_url(broker.url).ping()  # Redis must answer: .ci/run starts it
        return broker
    url = rabbitmq_url()
    try:
        _rabbitmq_vhost_ensure(url)
        with Connection(url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1, timeout=3)
    except Exception as error:  # noqa: BLE001 - any failure means there is no RabbitMQ to test with
        pytest.skip(f"RabbitMQ does not answer at {urlsplit(url).hostname}:{urlsplit(url).port} ({error!r})")
    return BrokerUnderTest("rabbitmq", url)


def broker_default() -> BrokerUnderTest:
    """The test run's own broker (config.settings_test), which later tests expect back."""
    return BrokerUnderTest("redis", str(settings.CELERY_BROKER_URL))
