import pytest
from django.urls import reverse

from catalog.models import Item
from recommendations.models import RankerModel, Recommendation, RecommendedItem, UserInterest
from tests.factories import ActivityFactory, ItemFactory

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "admin:catalog_item_changelist",
    "admin:users_activity_changelist",
    "admin:users_user_changelist",
    "admin:recommendations_userinterest_changelist",
    "admin:recommendations_rankermodel_changelist",
    "admin:recommendations_recommendation_changelist",
]


@pytest.fixture
def populated(user):
    item = ItemFactory(title="Alpine boot", description="Waterproof leather boot", category="Outdoor")
    ActivityFactory(user=user, item=item, kind="review", text="Kept my feet dry", rating=5)
    UserInterest.objects.create(
        user=user, embedding=[0.1] * 384, dimensions=384, embedding_model="all-MiniLM-L6-v2", n_events=1
    )
    ranker = RankerModel.objects.create(version=1, algorithm="blend", artifact=b"", validation_metrics={"ndcg": 0.1})
    recommendation = Recommendation.objects.create(user=user, context="user", ranker=ranker)
    RecommendedItem.objects.create(recommendation=recommendation, item=item, position=0, score=1.0, sources=["popular"])
    return {"item": item, "ranker": ranker, "recommendation": recommendation, "user": user}


@pytest.mark.parametrize("name", CHANGELISTS)
def test_staff_can_open_every_list_and_change_page(client, staff_user, populated, name):
    client.force_login(staff_user)

    assert client.get(reverse(name)).status_code == 200


def test_staff_can_open_change_pages_with_readonly_embedding_metadata(client, staff_user, populated):
    client.force_login(staff_user)

    page = client.get(reverse("admin:catalog_item_change", args=[populated["item"].pk]))
    assert page.status_code == 200
    assert b"embedding_status" not in page.content or b'name="embedding_status"' not in page.content
    assert b"Embedding" in page.content
    for name, obj in [
        ("admin:recommendations_rankermodel_change", populated["ranker"]),
        ("admin:recommendations_recommendation_change", populated["recommendation"]),
        ("admin:users_user_change", populated["user"]),
    ]:
        assert client.get(reverse(name, args=[obj.pk])).status_code == 200


@pytest.mark.parametrize("name", CHANGELISTS)
def test_non_staff_and_anonymous_people_are_refused(client, user, populated, name):
    assert client.get(reverse(name)).status_code == 302
    client.force_login(user)
    response = client.get(reverse(name))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_item_search_finds_by_title_description_and_external_id(client, staff_user):
    ItemFactory(external_id="sku-77", title="Steel kettle", description="Boils fast")
    ItemFactory(external_id="sku-78", title="Alpine boot", description="Waterproof leather")
    client.force_login(staff_user)
    url = reverse("admin:catalog_item_changelist")

    for query, expected in [("kettle", "Steel kettle"), ("waterproof", "Alpine boot"), ("sku-78", "Alpine boot")]:
        result = [item.title for item in client.get(url, {"q": query}).context["cl"].result_list]
        assert result == [expected]


def test_item_filters_by_category_activity_and_embedding_status(client, staff_user):
    ItemFactory(title="A", category="Kitchen", embedding_status="failed")
    ItemFactory(title="B", category="Outdoor", is_active=False)
    client.force_login(staff_user)
    url = reverse("admin:catalog_item_changelist")

    def titles(**params):
        return [item.title for item in client.get(url, params).context["cl"].result_list]

    assert titles(category="Kitchen") == ["A"]
    assert titles(is_active__exact="0") == ["B"]
    assert titles(embedding_status__exact="failed") == ["A"]


@pytest.mark.parametrize(
    ("action", "field", "expected"),
    [
        ("deactivate", "is_active", False),
        ("activate", "is_active", True),
        ("queue_reembedding", "embedding_status", "pending"),
    ],
)
def test_bulk_actions_change_the_selected_items(client, staff_user, action, field, expected):
    items = [ItemFactory(is_active=action != "activate", embedding_status="ok") for _ in range(3)]
    client.force_login(staff_user)

    response = client.post(
        reverse("admin:catalog_item_changelist"),
        {"action": action, "_selected_action": [item.pk for item in items[:2]]},
    )

    assert response.status_code == 302
    values = dict(Item.objects.values_list("pk", field))
    assert [values[item.pk] for item in items[:2]] == [expected, expected]
    assert values[items[2].pk] != expected


def test_editing_item_text_in_admin_marks_it_for_embedding(client, staff_user):
    item = ItemFactory(embedding_status="ok")
    item.refresh_text_hash()
    Item.objects.filter(pk=item.pk).update(text_hash=item.text_hash, embedding_status="ok")
    client.force_login(staff_user)

    response = client.post(
        reverse("admin:catalog_item_change", args=[item.pk]),
        {
            "external_id": item.external_id,
            "title": "Renamed boot",
            "description": item.description,
            "category": item.category,
            "tags": "running,outdoor",
            "price": "",
            "attributes": "{}",
            "is_active": "on",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    item.refresh_from_db()
    assert item.title == "Renamed boot" and item.embedding_status == "pending"
