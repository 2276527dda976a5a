import math
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from recommendations.evaluation.metrics import ndcg_at_k, recall_at_k, reciprocal_rank
from recommendations.evaluation.split import EvaluationError, split_per_user
from users.events import EventRow

START = datetime(2020, 1, 1, tzinfo=UTC)


def _event(user, item, minutes, kind="rating", text=None):
    return EventRow(
        line=0,
        user_id=user,
        item_id=item,
        kind=kind,
        text=text,
        rating=4.0 if kind == "rating" else None,
        timestamp=START + timedelta(minutes=minutes),
    )


def test_recall_counts_hits_over_the_smaller_of_relevant_and_k():
    assert recall_at_k(["a", "b", "c"], {"a", "c", "x"}, 3) == 2 / 3
    assert recall_at_k(["a", "b"], {"a", "b", "c", "d"}, 2) == 1.0


def test_ndcg_matches_a_hand_computed_value():
    # hits at positions 1 and 3 of 3; 2 relevant items: DCG = 1 + 1/log2(4); IDCG = 1 + 1/log2(3)
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))

    assert ndcg_at_k(["a", "b", "c"], {"a", "c"}, 3) == pytest.approx(expected)
    assert ndcg_at_k(["x", "y"], {"a"}, 2) == 0.0


def test_reciprocal_rank_is_one_over_the_first_hit():
    assert reciprocal_rank(["x", "a", "b"], {"a", "b"}, 3) == 0.5
    assert reciprocal_rank(["x"], {"a"}, 1) == 0.0


def test_metrics_refuse_an_empty_relevant_set():
    with pytest.raises(ValueError):
        ndcg_at_k(["a"], set(), 1)


def test_split_holds_out_the_last_fifth_per_person_and_nothing_of_it_leaks():
    events = [_event("u1", str(item), item) for item in range(10)] + [_event("u2", "7", 1), _event("u2", "8", 2)]
    # A text event after u1's split point must not reach training; one before it may.
    events += [_event("u1", "3", 5, kind="tag", text="before"), _event("u1", "3", 9, kind="tag", text="after")]

    split = split_per_user(events)

    assert split.test == {"u1": {"8", "9"}, "u2": {"8"}}
    trained = {(row.user_id, row.item_id, row.kind, row.text) for row in split.train}
    assert not any(user == "u1" and item in {"8", "9"} and kind == "rating" for user, item, kind, _ in trained)
    assert ("u1", "3", "tag", "before") in trained and ("u1", "3", "tag", "after") not in trained
    assert ("u2", "8", "rating", None) not in trained


def test_ties_in_time_are_broken_by_numeric_item_id():
    events = [_event("u1", item, 0) for item in ("10", "9", "2", "100", "1")]

    split = split_per_user(events)

    assert split.test == {"u1": {"100"}}


def test_leave_one_out_and_determinism():
    events = [_event("u1", str(item), item) for item in range(10)]

    first, second = split_per_user(events, test_last=1), split_per_user(list(reversed(events)), test_last=1)

    assert first.test == second.test == {"u1": {"9"}}
    assert first.fingerprint != "" and len(first.train) == len(second.train) == 9


def test_a_bundle_without_interactions_is_refused():
    with pytest.raises(EvaluationError, match="no interaction events"):
        split_per_user([_event("u1", None, 0, kind="search", text="hello")])


@pytest.mark.django_db
def test_evaluate_command_reports_missing_and_malformed_bundles(tmp_path):
    with pytest.raises(CommandError, match="is not a folder"):
        call_command("evaluate", str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CommandError, match="has neither items"):
        call_command("evaluate", str(tmp_path / "empty"))


def _tiny_bundle(folder):
    import json

    folder.mkdir()
    themes = {
        "hiking": ["boots", "tent", "stove", "map", "poles"],
        "tea": ["kettle", "teapot", "cups", "leaves", "tray"],
    }
    with open(folder / "items.jsonl", "w") as handle:
        for theme, names in themes.items():
            for name in names:
                handle.write(json.dumps({"external_id": f"{theme}-{name}", "title": f"{name} for {theme}"}) + "\n")
    with open(folder / "events.jsonl", "w") as handle:
        for person in range(12):
            theme = "hiking" if person % 2 else "tea"
            for position, name in enumerate(themes[theme][person % 3 :] + themes[theme][: person % 3]):
                event = {
                    "user_id": f"p{person}",
                    "item_id": f"{theme}-{name}",
                    "kind": "purchase",
                    "timestamp": 1_700_000_000 + person * 1000 + position,
                }
                handle.write(json.dumps(event) + "\n")
    return folder


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_evaluation_runs_the_served_system_in_its_own_database_and_is_deterministic(tmp_path):
    from django.db import connection

    from bundles.reading import bundle_open
    from catalog.models import Item
    from recommendations.evaluation.protocols import evaluate_p1

    live_database = connection.settings_dict["NAME"]
    folder = _tiny_bundle(tmp_path / "bundle")

    first = evaluate_p1(source=bundle_open(folder), database=f"{live_database}_eval_test", k=3, with_blend=True)
    second = evaluate_p1(source=bundle_open(folder), database=f"{live_database}_eval_test", k=3, with_blend=True)

    assert connection.settings_dict["NAME"] == live_database
    assert not Item.objects.exists()  # nothing was written to the live (here: test) database
    assert (first.n_users, first.n_items) == (12, 10)
    names = [method["method"] for method in first.methods]
    # Four purchases each in the train part: enough to train a re-ranker (it learns from people
    # with two interactions, ranking.training.MIN_INTERACTIONS); the report names the version.
    assert names[0] == "full system (re-ranker: logistic_regression v2)" and "baseline: popularity" in names
    assert "full system with the blend (no ranker)" in names
    without_latency = [
        {key: value for key, value in method.items() if "latency" not in key} for method in first.methods
    ]
    assert without_latency == [
        {key: value for key, value in method.items() if "latency" not in key} for method in second.methods
    ]
    full = first.methods[0]
    assert 0.0 <= full["ndcg"] <= 1.0 and full["recall"] > 0.5  # the themes are easy to learn


def test_p3_queries_are_lower_cased_tags_given_to_at_least_two_items():
    from recommendations.evaluation.protocols import text_queries

    events = [
        _event("u1", "1", 0, kind="tag", text="Twist Ending"),
        _event("u2", "2", 1, kind="tag", text="twist ending "),
        _event("u1", "3", 2, kind="tag", text="atmospheric"),
        _event("u1", "3", 3),
    ]

    assert text_queries(events) == {"twist ending": {"1", "2"}}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_evaluate_command_runs_p3_with_tags_as_queries(tmp_path):
    import json

    from django.db import connection

    folder = _tiny_bundle(tmp_path / "bundle")
    with open(folder / "events.jsonl", "a") as handle:
        for person, item in [(0, "tea-kettle"), (1, "tea-teapot"), (2, "hiking-boots")]:
            tag = {
                "user_id": f"p{person}",
                "item_id": item,
                "kind": "tag",
                "text": "Hot Drinks" if "tea" in item else "mountains",
                "timestamp": 1_800_000_000 + person,
            }
            handle.write(json.dumps(tag) + "\n")

    call_command(
        "evaluate",
        str(folder),
        "--protocol",
        "p3",
        "--k",
        "3",
        "--out",
        str(tmp_path / "out"),
        "--database",
        f"{connection.settings_dict['NAME']}_eval_p3",
    )

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["protocol"] == "p3" and report["n_users"] == 1  # one tag on two or more items
    methods = [method["method"] for method in report["methods"]]
    assert methods[0].startswith("text + ")
    # The test encoder (MiniLM) has a weight chosen on the validation queries: its row is asked.
    assert "text + 0.08 x log popularity (chosen on the validation queries)" in methods
    # The one query is in P4's train half: every row's figures on the validation queries too.
    assert [row["queries"] for row in report["breakdown"]] == [1] * 3
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "1 queries evaluated" in markdown
    assert "On the P4's train queries alone (validation, 1 queries)" in markdown


def test_p3_validation_queries_are_p4s_train_queries_never_its_test_queries():
    from recommendations.evaluation.protocols import p3_validation_queries, p4_query_split

    queries = [f"tag {number}" for number in range(542)]
    test, train = p4_query_split(queries)

    validation = p3_validation_queries(reversed(queries))

    assert validation == set(train) and len(validation) == 271
    assert not validation & set(test)


def test_cold_items_are_a_seeded_tenth_of_the_items_with_five_or_more_events():
    from recommendations.evaluation.protocols import cold_items

    events = [_event(f"u{person}", str(item), person) for item in range(1, 41) for person in range(item % 8)]
    eligible = {str(item) for item in range(1, 41) if item % 8 >= 5}  # 15 items

    chosen = cold_items(events)

    assert chosen == cold_items(events)  # deterministic
    assert len(chosen) == 2 and chosen <= eligible  # round(15 x 10%)
    with pytest.raises(EvaluationError, match="no item has 5 or more"):
        cold_items(events[:3])


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_evaluate_command_runs_p2_writes_charts_and_keeps_the_run_for_staff(tmp_path):
    import json

    from django.db import connection

    from recommendations.models import EvaluationRun

    folder = _tiny_bundle(tmp_path / "bundle")

    call_command(
        "evaluate",
        str(folder),
        "--protocol",
        "p2",
        "--k",
        "3",
        "--out",
        str(tmp_path / "out"),
        "--database",
        f"{connection.settings_dict['NAME']}_eval_p2",
    )

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["protocol"] == "p2" and report["n_items"] == 1  # a tenth of the 10 items
    names = [method["method"] for method in report["methods"]]
    assert names[-1] == "baseline: random" and any(name.startswith("semantic source only") for name in names)
    for chart in ("metrics.png", "latency.png"):
        assert (tmp_path / "out" / chart).read_bytes().startswith(b"\x89PNG")
    run = EvaluationRun.objects.get()
    assert run.protocol == "p2" and set(run.charts) == {"metrics", "latency"}
    assert run.figures["methods"] == report["methods"] and "| method |" in run.report_markdown


def test_the_product_keeps_the_largest_of_the_ease_weights_the_baseline_ranks_with():
    import numpy as np

    from recommendations.retrieval.behaviour_model import ease, ease_weights, interaction_matrix

    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 30, 200), rng.integers(0, 12, 200)
    interactions = interaction_matrix(users, items, 30, 12)

    weights = ease_weights(interactions, regularisation=5.0)
    kept = ease(interactions, regularisation=5.0, k=3).toarray()

    for row in range(12):
        positive = np.sort(weights[row][weights[row] > 0])[::-1][:3].astype(np.float32)
        assert np.array_equal(np.sort(kept[row][kept[row] > 0])[::-1], positive)


def test_the_match_floor_hides_the_most_unanswerable_questions_within_the_limit_on_answerable_ones():
    from recommendations.evaluation.protocols import match_floor_choose

    answerable = [(0.60 + index / 100, True) for index in range(20)]  # 0.60 .. 0.79
    unanswerable = [(value, False) for value in (0.40, 0.45, 0.50, 0.55, 0.605, 0.70)]

    floor, told, wrong = match_floor_choose(answerable + unanswerable)

    # One answerable question of 20 (5%) may be hidden: the floor goes just above 0.60 and 0.605,
    # catching five of six unanswerable ones, but not up to 0.70 (that would hide 11 answerable).
    assert 0.605 < floor <= 0.61
    assert (told, wrong) == (5 / 6, 1 / 20)
    with pytest.raises(EvaluationError):
        match_floor_choose(answerable)


def _bilingual_bundle(folder):
    import json

    _tiny_bundle(folder)
    questions = [
        ("a teapot to brew tea", "en-en", "product", ["tea-teapot"], "calibration"),
        ("cups to drink tea from", "en-en", "product", ["tea-cups"], "test"),
        ("boots for hiking in the hills", "en-en", "product", ["hiking-boots"], "calibration"),
        ("a tent for hiking trips", "en-en", "product", ["hiking-tent"], "test"),
        ("what is the weather in Paris tomorrow", "en-en", "none", [], "calibration"),
        ("book me a high-speed train ticket", "en-en", "none", [], "test"),
    ]
    with open(folder / "bilingual_queries.jsonl", "w") as handle:
        for query, pair, kind, relevant, split in questions:
            row = {"query": query, "pair": pair, "kind": kind, "relevant": relevant, "split": split}
            handle.write(json.dumps(row) + "\n")
    return folder


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_evaluate_bilingual_reports_hits_per_pair_and_kind_and_the_no_match_rates(tmp_path, monkeypatch):
    import dataclasses
    import json

    from django.db import connection

    from core.conf import recommender_settings
    from recommendations.ml.model_cards import MODEL_CARDS, model_card

    folder = _bilingual_bundle(tmp_path / "bundle")
    name = recommender_settings().serving_model
    monkeypatch.setitem(MODEL_CARDS, name, dataclasses.replace(model_card(name), match_floor=0.99))
    database = f"{connection.settings_dict['NAME']}_eval_bilingual"

    call_command(
        "evaluate",
        str(folder),
        "--protocol",
        "bilingual",
        "--k",
        "5",
        "--out",
        str(tmp_path / "out"),
        "--database",
        database,
    )

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["protocol"] == "bilingual" and report["n_users"] == 4  # answerable questions scored
    assert report["match_floor"] == 0.99
    rows = {
        (
            row["method"].split(" (")[0] + (" no floor" if "without" in row["method"] else ""),
            row["split"],
            row["group"],
        ): row
        for row in report["breakdown"]
    }
    # With the card's (here impossible) floor every answer says nothing is close: popular items.
    assert rows[("served", "all", "kind none")]["no_match"] == 1.0
    assert rows[("served", "all", "answerable")]["no_match"] == 1.0
    # Without a floor the same questions are answered by meaning: the tiny catalog is easy.
    unfloored = rows[("served no floor", "all", "answerable")]
    assert unfloored["no_match"] == 0.0 and unfloored["hit@5"] == 1.0 and unfloored["hit@1"] >= 0.75
    assert rows[("served no floor", "calibration", "pair en-en")]["queries"] == 2
    assert {split for _method, split, _group in rows} == {"calibration", "test", "all"}
    assert "| kind none | 2 |" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_calibrate_match_floor_reads_only_the_calibration_questions_and_prints_the_floor(tmp_path):
    import io

    from django.db import connection

    folder = _bilingual_bundle(tmp_path / "bundle")
    output = io.StringIO()

    call_command(
        "calibrate_match_floor",
        "--bundle",
        str(folder),
        "--database",
        f"{connection.settings_dict['NAME']}_calibration_test",
        stdout=output,
    )

    printed = output.getvalue()
    assert "match floor" in printed
    assert "told 'none': 1.000 of 1" in printed  # the one calibration question nothing answers
    assert "wrongly told 'none': 0.000 of 2" in printed
    assert "targets met" in printed
    assert "second opinion" not in printed  # MiniLM's card asks for none


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_calibrate_match_floor_prints_the_rates_with_the_cards_second_opinion_beside_the_floor(tmp_path, monkeypatch):
    import dataclasses
    import io

    from django.db import connection

    from recommendations.ml.model_cards import MODEL_CARDS, model_card

    # The served model (MiniLM here) made to ask an English second opinion: MiniLM itself, at its
    # own floor, so the path runs without loading a second model.
    name = "all-MiniLM-L6-v2"
    monkeypatch.setitem(MODEL_CARDS, name, dataclasses.replace(model_card(name), english_second_opinion=name))
    output = io.StringIO()

    call_command(
        "calibrate_match_floor",
        "--bundle",
        str(_bilingual_bundle(tmp_path / "bundle")),
        "--database",
        f"{connection.settings_dict['NAME']}_calibration_test",
        stdout=output,
    )

    printed = output.getvalue()
    assert "with the card's English second opinion (all-MiniLM-L6-v2, at its own floor)" in printed
    # The weather question was already below the chosen floor; the two tea and hiking questions
    # are close to MiniLM too: the rates stay those of the floor.
    assert "told 'none' 1.000 of the questions nothing answers, 0.000 of the answerable ones" in printed


def test_p4_splits_the_sorted_queries_by_the_seeded_permutation_and_never_imports_a_held_out_tag():
    import numpy as np

    from bundles.reading import BundleSource
    from recommendations.evaluation.protocols import _p4_setup, p4_query_split, p4_validation_split

    queries = [f"tag {number:02d}" for number in range(10)]
    events = [_event(f"u{index}", "1", index) for index in range(3)]
    for number, query in enumerate(queries):
        events += [
            _event("u1", str(number), 10 + number, kind="tag", text=query.upper()),
            _event("u2", str(number + 1), 30 + number, kind="tag", text=f" {query} "),
        ]
    source = BundleSource(
        items_file="items",
        users_file=None,
        events_file="events",
        items=lambda: iter(()),
        users=lambda: iter(()),
        events=lambda: iter(events),
    )

    test, train = p4_query_split(reversed(queries))
    order = np.random.default_rng(0).permutation(10)
    assert test == [queries[index] for index in order[:5]] and train == [queries[index] for index in order[5:]]
    setup, data = _p4_setup(source, validation=False)
    assert sorted(setup.split.test) == sorted(test) and setup.split.test[test[0]] == {
        str(queries.index(test[0])),
        str(queries.index(test[0]) + 1),
    }
    imported_tags = {row.text.strip().lower() for row in setup.imported if row.kind == "tag"}
    assert imported_tags == set(train) and set(data.train_queries) == set(train)
    assert sum(row.kind == "rating" for row in setup.imported) == 3  # every rating is allowed

    validation, rest = p4_validation_split(train)
    tuning, tuning_data = _p4_setup(source, validation=True)
    assert sorted(tuning.split.test) == sorted(validation)
    assert {row.text.strip().lower() for row in tuning.imported if row.kind == "tag"} == set(rest)
    assert set(tuning_data.train_queries) == set(rest)


def _p4_bundle(path):
    """The tiny bundle with two tags per theme, each given to two items of its theme by two
    people: one of the two is a test query (never imported), the other teaches what the items are."""
    import json

    folder = _tiny_bundle(path)
    with open(folder / "events.jsonl", "a") as handle:
        for theme, words in (("tea", ("hot drinks", "brew")), ("hiking", ("mountains", "trail"))):
            items = (
                [f"{theme}-{name}" for name in ("kettle", "teapot")]
                if theme == "tea"
                else ["hiking-boots", "hiking-tent"]
            )
            for person, item in enumerate(items):
                for word in words:
                    handle.write(
                        json.dumps(
                            {
                                "user_id": f"p{person}",
                                "item_id": item,
                                "kind": "tag",
                                "text": word,
                                "timestamp": 1_800_000_000 + person,
                            }
                        )
                        + "\n"
                    )
    return folder


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_evaluate_command_runs_p4_rows_catalog_text_popularity_community_text_and_a_learned_side(tmp_path, monkeypatch):
    import json

    from django.db import connection

    from recommendations.evaluation import protocols
    from recommendations.models import CommunityVector

    folder = _p4_bundle(tmp_path / "bundle")
    learned = []

    def builder(data):
        # What a learned text side is given: the allowed events and the train queries only.
        learned.append((sorted(data.train_queries), CommunityVector.objects.count()))

    monkeypatch.setattr(protocols, "P4_TEXT_SIDES", [("+ learned text model (test builder)", builder)])

    call_command(
        "evaluate",
        str(folder),
        "--protocol",
        "p4",
        "--k",
        "3",
        "--out",
        str(tmp_path / "out"),
        "--database",
        f"{connection.settings_dict['NAME']}_eval_p4",
    )

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    test, train = protocols.p4_query_split(["brew", "hot drinks", "mountains", "trail"])
    assert report["protocol"] == "p4" and report["n_users"] == len(test) == 2
    names = [method["method"] for method in report["methods"]]
    assert names == [
        "catalog text only (no popularity term)",
        "catalog text + 0.02 x log popularity",
        "+ community text (weight 4, chosen on the validation split)",
        "+ learned text model (test builder)",
        "baseline: popularity",
    ]
    # The community text of the items tagged with a train word, never with a test word only.
    themes_taught = {"tea" if word in ("hot drinks", "brew") else "hiking" for word in train}
    assert learned == [(sorted(train), 2 * len(themes_taught))]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_p4_trains_its_text_model_rows_in_the_run_and_keeps_the_frozen_encoder_when_too_little_is_learned(
    tmp_path,
):
    import json

    from django.db import connection

    from recommendations.evaluation import protocols

    folder = _p4_bundle(tmp_path / "bundle")

    call_command(
        "evaluate",
        str(folder),
        "--protocol",
        "p4",
        "--k",
        "3",
        "--out",
        str(tmp_path / "out"),
        "--database",
        f"{connection.settings_dict['NAME']}_eval_p4tm",
    )

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    test, _train = protocols.p4_query_split(["brew", "hot drinks", "mountains", "trail"])
    assert report["protocol"] == "p4" and report["n_users"] == len(test) == 2
    names = [method["method"] for method in report["methods"]]
    # The learned rows of P4_TEXT_SIDES (the text model over the community vectors, against the
    # catalog then in-batch only, then over the catalog text alone), each trained inside the run
    # by the product's text_model_train.
    assert names[3:6] == [name for name, _side in protocols.P4_TEXT_SIDES]
    # Two train tags are far fewer pairs than a text model needs: refused, no version stored,
    # the frozen encoder answers those rows as it would in production.
    assert "text_models" not in report["models"]
    by_name = {method["method"]: method for method in report["methods"]}
    assert by_name[names[3]]["ndcg"] == by_name[names[2]]["ndcg"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_p1_asked_over_two_forked_processes_answers_as_one_process_does(tmp_path, caplog):
    """`evaluate --processes 2`: the ranker's training data and every variant's people are split
    over two forked processes; the answers, hence every figure, are those of one process."""
    from django.db import connection

    from bundles.reading import bundle_open
    from recommendations.evaluation.protocols import P1, Options, protocol_run

    database = f"{connection.settings_dict['NAME']}_eval_test"
    folder = _tiny_bundle(tmp_path / "bundle")

    one = protocol_run(P1, source=bundle_open(folder), database=database, options=Options(k=3))
    two = protocol_run(P1, source=bundle_open(folder), database=database, options=Options(k=3, processes=2))

    assert "cannot fork here" not in caplog.text  # the two processes were forked
    assert len(two.methods) == len(one.methods) >= 5
    for forked, single in zip(two.methods, one.methods, strict=True):
        assert {key: value for key, value in forked.items() if "latency" not in key} == {
            key: value for key, value in single.items() if "latency" not in key
        }
    assert len(two.latencies[two.methods[0]["method"]]) == 12  # every person asked once
