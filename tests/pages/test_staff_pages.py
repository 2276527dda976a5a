"""Staff pages: dashboard, preview as a person, pin/ban, ranker versions, the item admin."""

import base64

import pytest
from django.urls import reverse

from catalog.models import Item, Placement
from recommendations.models import EvaluationRun, RankerModel, Recommendation
from tests.factories import ItemFactory, UserFactory

pytestmark = pytest.mark.django_db

STAFF_PAGES: list[tuple[str, list[int]]] = [
    ("recommendations:staff_dashboard", []),
    ("recommendations:staff_preview", []),
    ("recommendations:staff_rankers", []),
    ("recommendations:staff_experiments", []),
]
# A 1x1 PNG, as `manage.py evaluate` stores its charts.
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()


@pytest.mark.parametrize(("name", "args"), STAFF_PAGES)
def test_staff_pages_send_visitors_to_sign_in_and_refuse_other_people(client, user, name, args):
    anonymous = client.get(reverse(name, args=args))
    client.force_login(user)
    signed_in = client.get(reverse(name, args=args))

    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("users:login"))
    assert signed_in.status_code == 403


def test_staff_only_actions_are_refused_to_other_people(client, user):
    item = ItemFactory()
    ranker = RankerModel.objects.create(version=1, algorithm="lambdarank", artifact=b"")
    client.force_login(user)

    pinned = client.post(reverse("recommendations:staff_item_placement", args=[item.pk]), {"placement": "pinned"})
    activated = client.post(reverse("recommendations:staff_ranker_activate", args=[ranker.pk]))

    assert pinned.status_code == 403 and activated.status_code == 403
    assert Item.objects.get(pk=item.pk).placement == Placement.NORMAL


def test_dashboard_without_any_evaluation_or_ranker(client, staff_user):
    ItemFactory()
    client.force_login(staff_user)

    page = client.get(reverse("recommendations:staff_dashboard"))

    assert page.status_code == 200
    html = page.content.decode()
    assert "No evaluation yet" in html and "No ranker has been trained yet" in html
    assert '<svg class="chart" role="img"' in html


def test_dashboard_shows_coverage_ranker_metrics_and_the_latest_evaluation(client, staff_user):
    ItemFactory(embedding_status="ok")
    ItemFactory(embedding_status="pending")
    ItemFactory(embedding_status="failed", embedding_error="encoder exploded")
    for version, ndcg in [(1, 0.12), (2, 0.15)]:
        RankerModel.objects.create(
            version=version,
            algorithm="lambdarank",
            artifact=b"",
            validation_metrics={"ndcg@20": ndcg},
            is_active=version == 2,
        )
    EvaluationRun.objects.create(protocol="p1", dataset="old", figures={"methods": []})
    EvaluationRun.objects.create(
        protocol="p1",
        dataset="movielens-small",
        figures={"methods": [{"method": "served", "recall": 0.2, "ndcg": 0.1612, "mrr": 0.3, "coverage": 0.4}]},
        charts={"ndcg_by_method": PIXEL},
    )
    client.force_login(staff_user)

    html = client.get(reverse("recommendations:staff_dashboard")).content.decode()

    assert "encoder exploded" in html
    assert "data-backlog>1<" in html
    assert "ndcg@20" in html and "<polyline" in html
    assert "movielens-small" in html and "0.1612" in html
    assert f'src="data:image/png;base64,{PIXEL}"' in html


def test_preview_shows_what_a_person_sees_with_reasons_and_sources_without_logging(client, staff_user, shop):
    client.force_login(staff_user)

    page = client.get(reverse("recommendations:staff_preview"), {"user": "hiker2"})

    assert page.status_code == 200
    html = page.content.decode()
    assert "Camping gas stove" in html and "because you bought" in html, html
    assert "behaviour" in html.split("sources:")[1].split("<")[0]
    assert not Recommendation.objects.exists()


def test_preview_of_an_unknown_person_says_so(client, staff_user):
    client.force_login(staff_user)

    assert (
        "No person matches" in client.get(reverse("recommendations:staff_preview"), {"user": "nobody"}).content.decode()
    )


def test_staff_pins_and_bans_an_item_and_returns_to_the_page(client, staff_user):
    item = ItemFactory()
    client.force_login(staff_user)
    url = reverse("recommendations:staff_item_placement", args=[item.pk])

    pinned = client.post(url, {"placement": "pinned", "next": "/staff/preview/?user=x"})
    assert pinned.status_code == 302 and pinned["Location"] == "/staff/preview/?user=x"
    assert Item.objects.get(pk=item.pk).placement == Placement.PINNED

    banned = client.post(url, {"placement": "banned", "next": "https://evil.example/"})
    assert banned["Location"] == reverse("recommendations:item", args=[item.pk])
    assert Item.objects.get(pk=item.pk).placement == Placement.BANNED

    client.post(url, {"placement": "sideways"})
    assert Item.objects.get(pk=item.pk).placement == Placement.BANNED


def test_ranker_versions_list_their_validation_metrics(client, staff_user):
    RankerModel.objects.create(version=3, algorithm="lambdarank", artifact=b"", validation_metrics={"ndcg@20": 0.1661})
    RankerModel.objects.create(version=4, algorithm="logistic_regression", artifact=b"", is_active=True)
    client.force_login(staff_user)

    html = client.get(reverse("recommendations:staff_rankers")).content.decode()

    assert "v3" in html and "0.1661" in html and "badge-active" in html


def test_item_admin_shows_neighbours_embedding_status_and_pins_or_bans(client, staff_user, shop):
    client.force_login(staff_user)
    boots, tent = shop["items"]["boots"], shop["items"]["tent"]

    change = client.get(reverse("admin:catalog_item_change", args=[boots.pk])).content.decode()
    assert "Nearest neighbours" in change and tent.title in change and "Embedding" in change

    changelist = reverse("admin:catalog_item_changelist")
    client.post(changelist, {"action": "pin", "_selected_action": [boots.pk]})
    client.post(changelist, {"action": "ban", "_selected_action": [tent.pk]})
    assert Item.objects.get(pk=boots.pk).placement == Placement.PINNED
    assert Item.objects.get(pk=tent.pk).placement == Placement.BANNED
    client.post(changelist, {"action": "release", "_selected_action": [tent.pk]})
    assert Item.objects.get(pk=tent.pk).placement == Placement.NORMAL


def test_item_page_shows_the_placement_control_to_staff_only(client, staff_user):
    item = ItemFactory()
    url = reverse("recommendations:item", args=[item.pk])

    assert "data-placement" not in client.get(url).content.decode()
    client.force_login(UserFactory())
    assert "data-placement" not in client.get(url).content.decode()
    client.force_login(staff_user)
    assert "data-placement" in client.get(url).content.decode()


def test_staff_activates_a_ranker_version_and_the_other_one_stops_serving(client, staff_user):
    old = RankerModel.objects.create(version=1, algorithm="lambdarank", artifact=b"", is_active=True)
    new = RankerModel.objects.create(
        version=2,
        algorithm="logistic_regression",
        artifact=b"",
        validation_metrics={"ndcg@20": 0.17, "single_sources": {"behaviour": 0.15}, "training_people": 480},
    )
    client.force_login(staff_user)

    page = client.get(reverse("recommendations:staff_rankers")).content.decode()
    assert "behaviour alone" in page and "0.15" in page and ">480<" in page
    response = client.post(reverse("recommendations:staff_ranker_activate", args=[new.pk]))

    assert response.status_code == 302 and response["Location"] == reverse("recommendations:staff_rankers")
    assert RankerModel.objects.get(pk=new.pk).is_active and not RankerModel.objects.get(pk=old.pk).is_active
    assert "Ranker v2 is now active." in client.get(response["Location"]).content.decode()
