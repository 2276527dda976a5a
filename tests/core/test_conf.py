import pytest
from django.core.exceptions import ImproperlyConfigured

from core.conf import RecommenderSettings, recommender_settings
from recommendations.serving.list_store import settings_digest


def test_the_settings_are_read_once_with_their_types():
    config = recommender_settings()

    assert config is recommender_settings()
    assert isinstance(config.max_text_length, int) and isinstance(config.text_popularity, float)
    assert isinstance(config.exclude_seen_kinds, tuple)


def test_a_changed_setting_is_seen_at_once(settings):
    before = recommender_settings()

    settings.RECOMMENDER = {**settings.RECOMMENDER, "MAX_PER_CATEGORY": 7}

    assert recommender_settings().max_per_category == 7
    assert recommender_settings() is not before


def test_the_serving_model_is_the_encoder_model_unless_set(settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "ENCODER_MODEL": "new-model", "SERVING_MODEL": None}
    assert recommender_settings().serving_model == "new-model"

    settings.RECOMMENDER = {**settings.RECOMMENDER, "SERVING_MODEL": "old-model"}
    assert recommender_settings().serving_model == "old-model"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"MAX_TEXT_LENGHT": 10}, "unknown setting.* MAX_TEXT_LENGHT"),
        ({"MAX_TEXT_LENGTH": "10"}, "MAX_TEXT_LENGTH must be int, not str"),
        ({"EXCLUDE_SEEN": 1}, "EXCLUDE_SEEN must be bool"),
        ({"HISTORY_ITEMS": True}, "HISTORY_ITEMS must be int, not bool"),
        ({"EXCLUDE_SEEN_KINDS": ("view", 3)}, "EXCLUDE_SEEN_KINDS must be"),
    ],
)
def test_a_bad_setting_is_refused_naming_its_key(settings, change, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        RecommenderSettings.from_dict({**settings.RECOMMENDER, **change})


def test_a_missing_setting_is_refused_naming_its_key(settings):
    config = {key: value for key, value in settings.RECOMMENDER.items() if key != "FRESH_DAYS"}

    with pytest.raises(ImproperlyConfigured, match="FRESH_DAYS is missing"):
        RecommenderSettings.from_dict(config)


def test_an_int_is_taken_for_a_float_and_a_list_for_the_kinds(settings):
    config = RecommenderSettings.from_dict(
        {**settings.RECOMMENDER, "TEXT_POPULARITY": 0, "EXCLUDE_SEEN_KINDS": ["purchase"]}
    )

    assert config.text_popularity == 0.0 and isinstance(config.text_popularity, float)
    assert config.exclude_seen_kinds == ("purchase",)


def test_every_setting_changes_the_precomputed_lists_digest(settings):
    original = dict(settings.RECOMMENDER)
    digests = {settings_digest()}
    for key, value in original.items():
        changed = (
            not value
            if isinstance(value, bool)
            else value + 1
            if isinstance(value, int | float)
            else (value or "") + "x"
            if isinstance(value, str | None)
            else (*value, "view")
        )
        settings.RECOMMENDER = {**original, key: changed}
        digests.add(settings_digest())

    assert len(digests) == len(original) + 1


def test_the_default_encoder_is_multilingual_and_commercially_usable():
    import subprocess
    import sys

    from django.conf import settings as django_settings

    from recommendations.ml.model_cards import model_card

    code = "import config.settings as base; print(base.RECOMMENDER['ENCODER_MODEL'])"
    environment = {"DJANGO_DEBUG": "true", "PATH": ""}
    default = subprocess.run(
        [sys.executable, "-c", code], cwd=django_settings.BASE_DIR, env=environment, capture_output=True, text=True
    ).stdout.strip()

    assert default == "multilingual-e5-small"
    assert model_card(default).commercial_use and model_card(default).query_prefix == "query: "
