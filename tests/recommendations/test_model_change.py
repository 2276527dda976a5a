"""Changing the encoder: a 512-dimension Chinese model (m3e-small) beside all-MiniLM-L6-v2 (384)."""

import pytest
from django.db import connection

from catalog.models import Item, ItemVector
from core.vector_indexes import vector_index_name
from recommendations.ml import encoder as encoder_module
from recommendations.ml.encoder import get_encoder
from recommendations.retrieval.filters import ItemFilters
from recommendations.retrieval.semantic import semantic_candidates
from recommendations.serving.service import recommend_for_text
from recommendations.vectors import embedding
from tests.factories import UserFactory
from users.services import activity_record

# transaction=True: a new model's index is built CONCURRENTLY, outside any transaction.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHINESE_ITEMS = {
    "refund": ("如何申请退款", "退款会在5到10个工作日内原路退回到您的银行卡或支付账户。"),
    "thermos": ("316不锈钢保温杯", "真空保温杯，热水可保温12小时，适合上班族泡茶。"),
    "boots": ("防水登山鞋", "户外徒步登山鞋，防水耐磨，冬季山路也不打滑。"),
    "picture-book": ("儿童睡前绘本", "适合三到六岁孩子的睡前故事书，画面温暖。"),
}


@pytest.fixture(autouse=True)
def _fresh_encoders():
    encoder_module.reset_encoder()
    yield
    encoder_module.reset_encoder()


def test_switching_to_a_512_dimension_model_reembeds_everything_and_ranks_chinese_queries(settings):
    for external_id, (title, description) in CHINESE_ITEMS.items():
        Item.objects.create(external_id=external_id, title=title, description=description)
    person = UserFactory()
    activity_record(user=person, kind="search", text="保温杯哪个牌子好")
    embedding.embeddings_process_pending()
    assert ItemVector.objects.filter(model_name="all-MiniLM-L6-v2", dimensions=384).count() == 4

    settings.RECOMMENDER = {**settings.RECOMMENDER, "ENCODER_MODEL": "m3e-small"}
    assert embedding.embeddings_waiting_count() == {
        "items": 4,
        "activities": 1,
        "users": 0,
        "text_model_items": 0,
        "community": 0,
        "community_weight": 0,
    }
    done = embedding.embeddings_process_pending()

    assert (done["items"], done["activities"], done["failed"]) == (4, 1, 0)
    assert set(Item.objects.values_list("embedding_model", flat=True)) == {"m3e-small"}
    # The old model's vectors stay until the switch is complete: both models can serve.
    assert ItemVector.objects.filter(model_name="all-MiniLM-L6-v2", dimensions=384).count() == 4
    assert ItemVector.objects.filter(model_name="m3e-small", dimensions=512).count() == 4
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s",
            [vector_index_name("catalog_itemvector", "m3e-small")],
        )
        assert "(embedding)::vector(512)" in cursor.fetchone()[0]

    chinese = get_encoder("m3e-small")
    assert chinese.dimensions == 512
    for query, expected in [
        ("我想退钱，怎么申请退款？", "refund"),
        ("冬天爬山穿什么鞋", "boots"),
        ("给孩子睡前讲的故事", "picture-book"),
    ]:
        ranked = semantic_candidates(
            vectors=[chinese.encode([query], kind="query").vectors[0]],
            model_name="m3e-small",
            filters=ItemFilters(),
            k=4,
            exact=False,
        )
        top = Item.objects.get(id=ranked[0][0]).external_id
        assert top == expected, (query, ranked)
    # A 384-wide query against the old model's vectors still works; widths never mix.
    english = get_encoder("all-MiniLM-L6-v2").encode(["refund"], kind="query").vectors[0]
    assert (
        len(
            semantic_candidates(
                vectors=[english], model_name="all-MiniLM-L6-v2", filters=ItemFilters(), k=4, exact=False
            )
        )
        == 4
    )
    with pytest.raises(ValueError, match="384 numbers, but m3e-small vectors have 512"):
        semantic_candidates(vectors=[english], model_name="m3e-small", filters=ItemFilters(), k=4, exact=False)


UPGRADE_ITEMS = {
    "down-jacket": ("北岭 轻量连帽羽绒服", "90%白鸭绒，连帽设计，轻便保暖，适合冬季通勤。"),
    "thermos": ("316不锈钢保温杯", "真空保温杯，热水可保温12小时，适合上班族泡茶。"),
    "parcel-late": (
        "My parcel hasn't arrived",
        "What to do when a delivery is late or shows as delivered but is missing.",
    ),
    "yoga-mat": ("Non-slip yoga mat", "A 6 mm mat with a grippy surface for home workouts."),
}


def test_upgrading_a_minilm_install_to_e5_keeps_answering_with_minilm_until_the_e5_vectors_are_built(settings):
    # README "Changing the encoder": an existing install on the old default moves to the new one.
    settings.RECOMMENDER = {**settings.RECOMMENDER, "ENCODER_MODEL": "all-MiniLM-L6-v2", "SERVING_MODEL": None}
    items = {
        external_id: Item.objects.create(external_id=external_id, title=title, description=description)
        for external_id, (title, description) in UPGRADE_ITEMS.items()
    }
    embedding.embeddings_process_pending()
    before = [result.item.external_id for result in recommend_for_text(text="我的包裹还没到", k=4, log=False).results]

    # Step 1: the new model writes, the old one keeps answering; half the vectors are built.
    settings.RECOMMENDER = {
        **settings.RECOMMENDER,
        "ENCODER_MODEL": "multilingual-e5-small",
        "SERVING_MODEL": "all-MiniLM-L6-v2",
    }
    embedding.item_embeddings_refresh(item_ids=[items["down-jacket"].id, items["yoga-mat"].id])
    assert embedding.embeddings_waiting_count()["items"] == 2
    during = recommend_for_text(text="我的包裹还没到", k=4, log=False)
    assert [result.item.external_id for result in during.results] == before  # MiniLM, all four items
    assert ItemVector.objects.filter(model_name="multilingual-e5-small").count() == 2

    embedding.embeddings_process_pending()
    assert embedding.embeddings_waiting_count()["items"] == 0
    assert ItemVector.objects.filter(model_name="all-MiniLM-L6-v2").count() == 4  # kept until deleted

    # Step 2: unset the serving model: e5 answers, across languages too.
    settings.RECOMMENDER = {**settings.RECOMMENDER, "SERVING_MODEL": None}
    for question, expected in [
        ("我的包裹还没到", "parcel-late"),
        ("a warm down jacket for winter", "down-jacket"),
        ("a flask that keeps my tea hot all day", "thermos"),
    ]:
        answer = recommend_for_text(text=question, k=4, log=False)
        assert answer.results[0].item.external_id == expected, (question, answer.results)
