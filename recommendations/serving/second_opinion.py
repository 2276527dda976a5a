"""A second opinion on whether anything is close to an English question (#17's honest answers).

The multilingual default (multilingual-e5-small) rates English near misses as close: "where can
I charge my electric car" meets a USB charger above its match floor. An English-only model
(all-MiniLM-L6-v2, named by the serving model's card as `english_second_opinion`) does not: when
an English question's nearest item is an English one, it reads the question and the text of the
nearest items too, and if none of them reaches ITS calibrated floor (its own card's match_floor),
nothing is close. A Chinese question, or one whose nearest item is Chinese, is left to the
serving model: the English model cannot read Chinese. Measured on the bilingual set
(EVALUATION.md "Bilingual"): on the test half 18 of 20 unanswerable questions told "none"
against 13 of 20 with the serving model's floor alone, no answerable one more hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog.models import Item
from recommendations.ml.model_cards import model_card
from recommendations.retrieval.candidates import Candidate
from recommendations.serving.reasons import CHINESE_FROM_SHARE, passage_matrix

# The nearest items (by the serving model's similarity) the second model reads. On the bilingual
# set its verdicts were the same for every question with 3 to 100 of them (docs/
# match_confidence_probe.py; with 1, three differed); each is an item text the second model
# encodes the first time it is read (then kept: reasons.passage_matrix's cache), so few.
SECOND_OPINION_ITEMS = 5


@dataclass(frozen=True)
class SecondOpinion:
    model: str
    similarity: float  # the second model's best cosine between the question and the nearest items
    floor: float  # the second model's own match floor

    @property
    def nothing_close(self) -> bool:
        return self.similarity < self.floor


def second_opinion(*, text: str, candidates: dict[int, Candidate], model_name: str) -> SecondOpinion | None:
    """The English model's verdict on the nearest candidates, or None where it is not asked: the
    serving model's card names none (or one without a floor), the question is not English, or
    its nearest item is not."""
    from recommendations.ml.encoder import get_encoder
    from recommendations.ml.language_centring import chinese_share

    second = model_card(model_name).english_second_opinion
    floor = model_card(second).match_floor if second else None
    if second is None or floor is None or not candidates or chinese_share(text) >= CHINESE_FROM_SHARE:
        return None
    nearest = sorted(candidates.values(), key=lambda candidate: (-candidate.semantic, candidate.item_id))
    ids = [candidate.item_id for candidate in nearest[:SECOND_OPINION_ITEMS]]
    items = Item.objects.only("title", "category", "tags", "description").in_bulk(ids)
    if ids[0] not in items or chinese_share(items[ids[0]].embedding_text()) >= CHINESE_FROM_SHARE:
        return None
    passages = passage_matrix([items[item_id].embedding_text() for item_id in ids if item_id in items], second)
    query = get_encoder(second).encode([text], kind="query").vectors[0]
    return SecondOpinion(model=second, similarity=float((passages @ query).max()), floor=floor)
