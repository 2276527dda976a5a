import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# Every web process (runserver and gunicorn both import this module) loads the serving encoder
# in a background thread as it starts: the first free-text question would otherwise wait for it
# (about 8 s). Readiness says "warming" until it is loaded. Not in AppConfig.ready(): management
# commands and Celery workers (which load it after forking) import the apps too.
from recommendations.readiness import encoder_warm_up_start  # noqa: E402 - after the app registry is ready

encoder_warm_up_start()
