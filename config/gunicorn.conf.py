"""gunicorn's settings for serving the site: `gunicorn -c config/gunicorn.conf.py` (`make serve`).

Threaded workers (gthread) with a read timeout, so that slow or stalled clients cannot freeze the
server: with 2 sync workers, two requests that declared a body and never sent it held both
workers, and /api/v1/health/live/ took 7 s. Here a stalled client holds one thread of one
worker for at most GUNICORN_READ_TIMEOUT seconds, then its connection is closed (a stalled API
body is answered 408 first). The choice and its figures: BENCHMARKS.md "Slow clients".
"""

import os

from config.env import env_int, env_str

wsgi_app = "config.wsgi:application"
bind = [env_str("GUNICORN_BIND", "127.0.0.1:8000")]
workers = env_int("WEB_CONCURRENCY", os.cpu_count() or 1, minimum=1)
# The web processes share the machine's cores: each one's encoder and numpy (BLAS) thread pools get
# cores / processes threads unless the environment says otherwise (deploy/recommender.env.example
# says 1). Left at all cores, two processes each ran their pools on both cores at once: free text
# at 4 connections answered 34 requests/s instead of 70 (BENCHMARKS.md "API throughput"). Set here,
# in the master before the workers fork and import numpy, so every worker starts with them.
_THREADS_PER_PROCESS = str(max(1, (os.cpu_count() or 1) // workers))
for _variable in ("RECOMMENDER_ENCODER_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, _THREADS_PER_PROCESS)
worker_class = "gthread"
# Threads per worker: more than the stalled connections one worker may hold while still
# answering others at once (the slow-client test holds 8 on 2 workers). Each thread keeps its
# own database connection (DATABASE_CONN_MAX_AGE): workers x threads must stay below
# PostgreSQL's max_connections (100 by default).
threads = env_int("GUNICORN_THREADS", 16, minimum=1)
# Seconds a client may leave between two reads of its request body before the connection is
# closed. gunicorn's gthread worker already gives a connection that sends nothing at all 5 s
# in the poller, without a thread, before closing it after keepalive seconds.
read_timeout = env_int("GUNICORN_READ_TIMEOUT", 10, minimum=1)
# A worker that stops answering its master for this long is restarted (a stuck request).
timeout = 30
keepalive = 5
# gunicorn's control socket (gunicornc) is not used; one shared default path would also make two
# servers on one machine (tests, a second site) take it from each other.
control_socket_disable = True


def pre_request(worker, req) -> None:
    # The headers are in; the body is read by the application through this socket. Without a
    # timeout the thread would wait for a missing body until the client disconnects.
    req.unreader.sock.settimeout(read_timeout)


def post_request(worker, req, environ, resp) -> None:
    # A body that stopped arriving (or broke off) leaves the connection unusable, and gunicorn's
    # graceful close waits up to 2 s on the worker's main loop for the client to close its end,
    # accepting nobody meanwhile: a stalled client never does. The answer (408) is sent by now.
    body = getattr(req, "body", None)
    if getattr(body, "failed", False):
        req.unreader.sock.close()


def post_worker_init(worker) -> None:
    # Each web process says at start-up whether its read replicas answer (core.replicas); one
    # that does not is logged and skipped, and the process starts and reads from the primary.
    from core.replicas import replicas_probe_at_start

    replicas_probe_at_start()
