"""The console's Reach page (issue 20, items 2 and 4): charts as server-side SVG with titles and text
alternatives, no script and nothing fetched from elsewhere; the period switch; English and Korean; each
chart's numbers as a table and a CSV whose totals are the database's; bad periods answered clearly."""
from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy import func, select

from relay.model.tables import Delivery, ReaderDay
from tests.unit.reach.seed import TODAY, at, seed, signed_in_coordinator


@pytest.fixture
def coordinator(network):
    seed(network)
    with signed_in_coordinator(network, english=True) as client:  # Kim reads Korean: tests/unit/reach/test_words.py
        yield client


def test_the_page_draws_eight_accessible_svg_charts_without_script(coordinator):
    page = coordinator.get("/console/reach")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    charts = re.findall(r'<svg [^>]*role="img"[^>]*aria-labelledby="([^"]+)"', html)
    assert len(charts) == 8
    for ids in charts:
        title_id, desc_id = ids.split()
        assert f'<title id="{title_id}">' in html and f'<desc id="{desc_id}">' in html
    assert "<script" not in html and not re.search(r'(src|href)="(https?:)?//', html)
    assert "Library readers per day" in html and "Total " in html
    assert html.count("<details>") == 8 and html.count("/console/reach.csv?") == 8
    assert "Acknowledgement rate per notice" in html and "held back by the ladder" in html
    assert "2026-11-01 – 2026-11-30" in html


def test_korean_labels(coordinator):
    coordinator.set_cookie("relay_lang", "ko")
    html = coordinator.get("/console/reach").get_data(as_text=True)
    assert "일별 라이브러리 독자" in html and "CSV 내려받기" in html and "Library readers per day" not in html


def test_the_period_switches(coordinator):
    html = coordinator.get("/console/reach?period=12m").get_data(as_text=True)
    assert "2025-12-01 – 2026-11-30" in html
    html = coordinator.get("/console/reach?period=custom&from=2026-11-10&to=2026-11-12").get_data(as_text=True)
    assert "2026-11-10 – 2026-11-12" in html


@pytest.mark.parametrize("query, says", [
    ("period=custom&from=2026-11-12&to=2026-11-10", "swap from and to"),
    ("period=custom&from=nope&to=2026-11-10", "YYYY-MM-DD"),
    ("period=fortnight", "choose 30d, 12m or custom")])
def test_a_bad_period_is_answered_clearly(coordinator, query, says):
    page = coordinator.get(f"/console/reach?{query}")
    assert page.status_code == 400 and says in page.get_data(as_text=True)
    assert coordinator.get(f"/console/reach.csv?chart=readers&{query}").status_code == 400
    assert "choose one of" in coordinator.get("/console/reach.csv?chart=everything").get_data(as_text=True)


def rows_of(response) -> list[list[str]]:
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_csv_totals_are_the_databases(coordinator, network):
    readers = rows_of(coordinator.get("/console/reach.csv?chart=readers&period=custom&from=2026-11-01&to=2026-11-30"))
    assert readers[0] == ["day", "visitors", "members"] and len(readers) == 31
    deliveries = rows_of(coordinator.get("/console/reach.csv?chart=deliveries"))
    with network.sessions() as session:
        visitors = session.scalar(select(func.sum(ReaderDay.visitors)).where(ReaderDay.day >= at(TODAY).date().replace(day=1)))
        by_channel = dict(session.execute(select(Delivery.channel, func.count()).where(
            Delivery.created_at >= at(TODAY.replace(day=1), 0)).group_by(Delivery.channel)).all())
    assert sum(int(row[1]) for row in readers[1:]) == visitors
    assert {row[0]: sum(int(cell) for cell in row[1:]) for row in deliveries[1:]} == by_channel


def test_the_new_charts_have_their_csv(coordinator):
    acks = rows_of(coordinator.get("/console/reach.csv?chart=acks"))
    assert acks[0][:5] == ["notice", "title", "rate", "recipients", "acknowledged"]
    held = rows_of(coordinator.get("/console/reach.csv?chart=held_back"))
    assert held[0][0] == "week" and len(held) > 1
