"""The free-text match confidence probe (#17, EVALUATION.md "Bilingual"): candidate signals for
telling a question that nothing in the catalog answers, outside the service.

    DJANGO_DEBUG=true .venv/bin/python docs/match_confidence_probe.py            # calibration half only
    DJANGO_DEBUG=true .venv/bin/python docs/match_confidence_probe.py --test     # and the test half

Builds the demo bundle in an isolated database as `calibrate_match_floor` does (its own name,
<live>_probe), then scores every question of bilingual_queries.jsonl against every demo item
with the served vectors of multilingual-e5-small (language-centred, community vectors at the
settings' weight), the item's own words (the snippets serving.reasons quotes) and, for the
second-opinion designs, all-MiniLM-L6-v2. Each design's floor is chosen on the CALIBRATION half
by the rule of `match_floor_choose` (most unanswerable questions below it while at most 5% of the
answerable ones are); `--test` applies it to the test half, once per design. F is the rule
served since (recommendations/serving/second_opinion.py), with MiniLM's floor from its card.
"""

import os
import sys
from collections.abc import Callable
from pathlib import Path

import django
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

E5 = "multilingual-e5-small"
MINILM = "all-MiniLM-L6-v2"
POPULARITY_WEIGHT = 0.02


def floor_choose(values: np.ndarray, answerable: np.ndarray) -> tuple[float, int, int]:
    """(floor, unanswerable below it, answerable below it): match_floor_choose's rule in counts."""
    from recommendations.evaluation.protocols import match_floor_choose

    floor, _told, _wrong = match_floor_choose([(float(v), bool(a)) for v, a in zip(values, answerable, strict=True)])
    return floor, int((values[~answerable] < floor).sum()), int((values[answerable] < floor).sum())


def auc(values: np.ndarray, answerable: np.ndarray) -> float:
    """Probability that an answerable question scores above an unanswerable one (ties half)."""
    above = values[answerable][:, None] - values[~answerable][None, :]
    return float((above > 0).mean() + 0.5 * (above == 0).mean())


def main(show_test: bool) -> None:
    django.setup()
    from django.conf import settings

    from bundles.reading import bundle_open
    from catalog.models import Item, ItemVector
    from core.vector_wire import VectorBytes, vector_from_bytes
    from recommendations.evaluation.databases import isolated_database
    from recommendations.evaluation.protocols import Options, _bilingual_prepare, _build, _in_memory_source
    from recommendations.ml.encoder import get_encoder
    from recommendations.ml.language_centring import REFERENCE_PAIRS, chinese_share
    from recommendations.retrieval.popular import item_stats_for
    from recommendations.serving.reasons import CHINESE_FROM_SHARE, community_snippets, item_snippets

    folder = ROOT / "bundles" / "demo_bundle"
    source = bundle_open(folder)
    setup = _bilingual_prepare(source, Options(queries_file=str(folder / "bilingual_queries.jsonl")))
    with isolated_database(f"{settings.DATABASES['default']['NAME']}_probe"):
        _build(_in_memory_source(source, setup.items, setup.imported), {})
        items = Item.objects.in_bulk()
        rows = list(
            ItemVector.objects.filter(model_name=E5)
            .annotate(raw=VectorBytes("embedding"))
            .values_list("item_id", "raw")
            .order_by("item_id")
        )
        ids = [item_id for item_id, _raw in rows]
        served = np.stack([vector_from_bytes(raw) for _item_id, raw in rows])
        stats = item_stats_for(item_ids=ids)
        popularity = np.array([np.log1p(stats[item_id].people) if item_id in stats else 0.0 for item_id in ids])
        others = community_snippets(item_ids=ids, items=items, model_name=E5, exclude_user_id=None)
        snippets = [
            (index, words)
            for index, item_id in enumerate(ids)
            for words in [words for _kind, words in item_snippets(items[item_id])] + others.get(item_id, [])
        ]
        texts = [items[item_id].embedding_text() for item_id in ids]
        questions = list(setup.labels)
        e5 = get_encoder(E5)
        query_vectors = e5.encode(questions, kind="query").vectors
        snippet_vectors = e5.encode([words for _index, words in snippets], kind="passage").vectors
        reference_queries = e5.encode([text for pair in REFERENCE_PAIRS for text in pair], kind="query").vectors
        minilm = get_encoder(MINILM)
        minilm_queries = minilm.encode(questions, kind="query").vectors
        minilm_items = minilm.encode(texts, kind="passage").vectors

    answerable = np.array([question in setup.split.test for question in questions])
    split = np.array([setup.labels[question]["split"] for question in questions])
    asked_in_chinese = np.array([chinese_share(question) >= CHINESE_FROM_SHARE for question in questions])
    chinese_item = np.array([chinese_share(text) >= CHINESE_FROM_SHARE for text in texts])

    cosines = query_vectors @ served.T  # question x item, the service's `semantic`
    best = cosines.max(axis=1)
    ranked = np.argsort(-(cosines + POPULARITY_WEIGHT * popularity[None, :]), axis=1)

    def language_margin(similarities: np.ndarray, queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        # Each item's cosine less the question's cosine to the mean vector of the items of that
        # item's language (= the mean cosine to them): how far the item stands out of its language.
        chinese_mean, english_mean = vectors[chinese_item].mean(axis=0), vectors[~chinese_item].mean(axis=0)
        background = np.where(
            chinese_item[None, :], (queries @ chinese_mean)[:, None], (queries @ english_mean)[:, None]
        )
        return (similarities - background).max(axis=1)

    snippet_item = np.array([index for index, _words in snippets])
    snippet_cosines = query_vectors @ snippet_vectors.T
    closest_words = np.full(cosines.shape, -1.0)
    for row, question_row in zip(closest_words, snippet_cosines, strict=True):
        np.maximum.at(row, snippet_item, question_row)
    closest_words_top5 = np.take_along_axis(closest_words, ranked[:, :5], axis=1).max(axis=1)
    hubness = np.sort(reference_queries @ served.T, axis=0)[-10:].mean(axis=0)
    question_hubness = np.sort(cosines, axis=1)[:, -10:].mean(axis=1)
    minilm_cosines = minilm_queries @ minilm_items.T
    margin = language_margin(cosines, query_vectors, served)
    minilm_margin = language_margin(minilm_cosines, minilm_queries, minilm_items)

    designs: dict[str, Callable[[], np.ndarray]] = {
        "best item cosine (e5's floor alone)": lambda: best,
        "A language margin: max(cos - cos to the mean item of its language)": lambda: margin,
        "B English questions: 0.5 e5 + 0.5 MiniLM best cosine": lambda: np.where(
            asked_in_chinese, best, 0.5 * best + 0.5 * minilm_cosines.max(axis=1)
        ),
        "C 0.75 best cosine + 0.25 closest words of the top 5": lambda: 0.75 * best + 0.25 * closest_words_top5,
        "D CSLS (reference sentences, k 10)": lambda: (2 * cosines - hubness[None, :]).max(axis=1) - question_hubness,
        "E A; English questions 0.5 A + 0.5 MiniLM margin": lambda: np.where(
            asked_in_chinese, margin, 0.5 * margin + 0.5 * minilm_margin
        ),
    }
    calibration, test = split == "calibration", split == "test"
    for name, design in designs.items():
        values = design()
        floor, told, wrong = floor_choose(values[calibration], answerable[calibration])
        line = (
            f"{name}\n    calibration: AUC {auc(values[calibration], answerable[calibration]):.3f}, floor {floor:.4f},"
            f" unanswerable told {told} of {(calibration & ~answerable).sum()},"
            f" answerable wrongly {wrong} of {(calibration & answerable).sum()}"
        )
        if show_test:
            unanswerable = test & ~answerable
            line += (
                f"\n    test: unanswerable told {(values[unanswerable] < floor).sum()} of {unanswerable.sum()}"
                f" (zh {(values[unanswerable & asked_in_chinese] < floor).sum()},"
                f" en {(values[unanswerable & ~asked_in_chinese] < floor).sum()}),"
                f" answerable wrongly {(values[test & answerable] < floor).sum()} of {(test & answerable).sum()}"
            )
        print(line)

    # F, the served rule (serving.second_opinion): e5's floor, and for an English question whose
    # nearest e5 item is English, MiniLM's own card floor over its best cosine among the nearest
    # `nearest` items (None: every item).
    from recommendations.ml.model_cards import model_card

    e5_floor, _told, _wrong = floor_choose(best[calibration], answerable[calibration])
    minilm_floor = model_card(MINILM).match_floor
    assert minilm_floor is not None
    by_cosine = np.argsort(-cosines, axis=1)
    english_nearest = ~chinese_item[by_cosine[:, 0]] & ~asked_in_chinese
    verdicts = {}
    for nearest in (None, 1, 3, 5, 10, 100):
        read = minilm_cosines if nearest is None else np.take_along_axis(minilm_cosines, by_cosine[:, :nearest], 1)
        verdicts[nearest] = (best < e5_floor) | (english_nearest & (read.max(axis=1) < minilm_floor))
    none = verdicts[None]
    print(
        f"F e5 floor {e5_floor:.4f}, English second opinion at MiniLM's floor {minilm_floor}\n"
        f"    calibration: unanswerable told {none[calibration & ~answerable].sum()}"
        f" of {(calibration & ~answerable).sum()}, answerable wrongly {none[calibration & answerable].sum()}"
        f" of {(calibration & answerable).sum()}\n"
        "    MiniLM reading only the nearest N items changes the verdicts of: "
        + ", ".join(f"N={n}: {(verdicts[n] != none).sum()}" for n in verdicts if n is not None)
    )
    if show_test:
        print(
            f"    test: unanswerable told {none[test & ~answerable].sum()} of {(test & ~answerable).sum()}"
            f" (zh {none[test & ~answerable & asked_in_chinese].sum()},"
            f" en {none[test & ~answerable & ~asked_in_chinese].sum()}),"
            f" answerable wrongly {none[test & answerable].sum()} of {(test & answerable).sum()}"
        )


if __name__ == "__main__":
    main(show_test="--test" in sys.argv[1:])
