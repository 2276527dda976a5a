"""The serving encoder loads in the background when a web process starts (config/wsgi.py)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from catalog.models import Item
from catalog.services import item_save
from recommendations.ml import encoder as encoder_module
from recommendations.serving.service import recommend_for_text
from tests.api.conftest import client_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_encoders():
    encoder_module.reset_encoder()
    yield
    encoder_module.reset_encoder()


@pytest.mark.django_db
def test_readiness_says_warming_while_the_encoder_loads_in_the_background_then_ok():
    # Holding the loader's lock keeps the warm-up waiting where a real load takes seconds.
    with encoder_module._lock:
        thread = encoder_module.encoder_warm_up("all-MiniLM-L6-v2")
        warming = client_for(None).get("/api/v1/health/ready/")
    thread.join(timeout=120)
    ready = client_for(None).get("/api/v1/health/ready/")

    assert warming.status_code == 503
    assert warming.json()["status"] == "warming"
    assert warming.json()["checks"]["encoder"] | {"ms": 0} == {
        "ok": False,
        "warming": True,
        "model": "all-MiniLM-L6-v2",
        "detail": "warming: the encoder is loading",
        "ms": 0,
    }
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    assert not encoder_module.encoder_warming("all-MiniLM-L6-v2")


@pytest.mark.django_db
def test_a_failed_warm_up_is_reported_by_readiness_as_unavailable_not_warming(settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "ENCODER_MODEL": "/nonexistent/model"}
    encoder_module.encoder_warm_up("/nonexistent/model").join(timeout=60)

    response = client_for(None).get("/api/v1/health/ready/")

    assert response.status_code == 503 and response.json()["status"] == "unavailable"
    assert response.json()["checks"]["encoder"]["ok"] is False


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_first_question_after_the_warm_up_answers_within_a_second():
    for external_id, title in [("coat", "Hooded down jacket"), ("mat", "Yoga mat"), ("parcel", "My parcel is late")]:
        item_save(item=Item(external_id=external_id, title=title, description=title))
    encoder_module.reset_encoder()  # the items were embedded in this process: start as a new one
    encoder_module.encoder_warm_up("all-MiniLM-L6-v2").join(timeout=120)

    started = time.monotonic()
    answer = recommend_for_text(text="a warm coat for the winter", k=3, log=False)
    elapsed = time.monotonic() - started

    assert answer.results[0].item.external_id == "coat"
    assert elapsed < 1.0, elapsed  # the bound; about 30 ms here once loaded


@pytest.mark.slow
def test_a_web_process_starts_loading_the_encoder_as_it_imports_the_wsgi_module():
    code = """
import os, sys, time, threading
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings_test"
import config.wsgi
from recommendations.ml import encoder
names = [thread.name for thread in threading.enumerate()]
warming = encoder.encoder_warming("all-MiniLM-L6-v2")
for thread in threading.enumerate():
    if thread.name.startswith("encoder-warm-up"):
        thread.join(120)
print("encoder-warm-up-all-MiniLM-L6-v2" in names, warming, encoder.encoder_is_loaded())
import gc
print(gc.get_freeze_count(), len(gc.get_objects()))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded, heap = result.stdout.strip().splitlines()[-2:]

    # The import does not wait for the model (still warming when it returns), then it is loaded.
    assert loaded == "True True True", result.stderr[-2000:]
    # And what the process holds from then on is out of the garbage collector's reach: a full
    # collection no longer goes through the encoder's and the framework's objects.
    frozen, tracked = map(int, heap.split())
    assert frozen > 100_000 and tracked < frozen / 10, (frozen, tracked)
