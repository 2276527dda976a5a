# The two commands of the README: `make demo` (install, load the demo catalog, serve it) and
# `make test` (install, run every test). .ci/run calls `make lint` (ruff, mypy), then `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEV := DJANGO_DEBUG=true
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install chromium haproxy demo serve test lint stop

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-nodeps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $@

install: $(VENV)/.installed

# The browser tests (tests/browser) drive Debian's Chromium through Playwright; apt only when missing.
# Chromium for the browser tests, and a CJK font so pages and screenshots show Chinese, not boxes.
chromium:
	(test -x /usr/bin/chromium && fc-list :lang=zh | grep -qi "Noto Sans CJK") || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk)

# The demo catalog, its 40 hand-written people and SIMULATED_PEOPLE simulated ones (a seeded, generated
# history, labelled simulated: bundles/simulated_history.py), so the re-ranker trained next has enough
# people to be validated on; it is activated only if it beats every single source, as anywhere else.
SIMULATED_PEOPLE ?= 300
demo: install
	$(DEV) $(BIN)/python manage.py migrate --no-input
	$(DEV) $(BIN)/python manage.py load_demo --simulated-people $(SIMULATED_PEOPLE)
	$(DEV) $(BIN)/python manage.py rebuild_behaviour
	$(DEV) $(BIN)/python manage.py train_ranker --note "Trained on the demo catalog's history, $(SIMULATED_PEOPLE) of its people SIMULATED (load_demo --simulated-people, seed 0)."
	$(DEV) $(BIN)/python manage.py seed_example_experiment
	@echo "Open http://$(HOST):$(PORT)/ (home), http://$(HOST):$(PORT)/staff/ and http://$(HOST):$(PORT)/admin/ (staff)"
	$(DEV) $(BIN)/python manage.py runserver $(HOST):$(PORT)

# Production serving (README "Serving"): the environment holds the settings (DJANGO_SECRET_KEY, ...);
# gunicorn's threaded workers with a read timeout, from config/gunicorn.conf.py.
serve: install
	$(BIN)/python manage.py collectstatic --no-input --verbosity 0
	GUNICORN_BIND=$(HOST):$(PORT) $(BIN)/gunicorn -c config/gunicorn.conf.py

# HAProxy from Debian: the load balancer of deploy/'s layout, started across network namespaces by
# tests/core/test_netns_layout.py and `manage.py netns_layout`; apt only when missing.
haproxy:
	command -v haproxy >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy)

test: install chromium haproxy
	$(BIN)/python -m pytest

# ruff, then mypy with the Django and DRF plugins (configured in pyproject.toml); .ci/run runs it first.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

stop:
	$(DEV) $(BIN)/python manage.py embedded_postgres stop
	DJANGO_SETTINGS_MODULE=config.settings_test $(BIN)/python manage.py embedded_postgres stop
