"""The case library: search (number, title, findings), status and date filters, pages of 50, drafts
and members-only cases kept from signed-out visitors, the case page with its discussion, the view
counter, escaping, and the CLI that publishes cases and sets their visibility."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import pytest
from babel.dates import format_date
from click.testing import CliRunner
from sqlalchemy import select

from relay.cli import main
from relay.infra.db import transaction
from relay.library.cases import (
    CaseStateError,
    SearchError,
    close_case,
    create_case,
    get_case,
    parse_search_params,
    publish_case,
    search_cases,
    set_visibility,
)
from relay.model.tables import AuditEvent, Case, Member, Post
from tests.conftest import run_worker
from tests.helpers import at_once, record_sms
from webhooks.app import create_app

LEE = "+821012345602"


@pytest.fixture
def client(network):
    return create_app(services=network).test_client()


def add_case(services, title: str, *, findings: str = "", chief_complaint: str = "", draft: bool = False,
             visibility: str = "public", status: str | None = None, published: datetime | None = None,
             created: datetime | None = None) -> str:
    with transaction(services.sessions) as session:
        case = create_case(session, title, chief_complaint=chief_complaint, findings=findings, draft=draft,
                           visibility=visibility)
        if status:
            case.status = status
        if created:
            case.created_at = created
        if published or created:
            case.published_at = published
        return case.code


def listed(client, **args) -> list[str]:
    response = client.get("/library/", query_string=args)
    assert response.status_code == 200, response.get_data(as_text=True)
    return re.findall(r'href="/library/cases/(C\d+)"', response.get_data(as_text=True))


def found(services, q: str = "", **kwargs) -> list[str]:
    with services.sessions() as session:
        return [c.code for c in search_cases(session, q, **kwargs).cases]


def views(services, code: str) -> int:
    with services.sessions() as session:
        return get_case(session, code).views


# ---------------------------------------------------------------- search


@pytest.mark.parametrize("q", ["C2", "c2", "2", "#2", "  C2  "])
def test_search_by_number(client, network, q):
    add_case(network, "Cough after travel")
    add_case(network, "Dyspnoea, crazy paving")
    assert listed(client, q=q) == ["C2"]


def test_a_number_also_finds_it_in_the_text(network):
    add_case(network, "Cough after travel")  # C2
    add_case(network, "Two patients from ward 2", findings="")  # C3: '2' is in its title
    assert found(network, "2") == ["C3", "C2"]
    assert found(network, "C3") == ["C3"]


def test_search_title_and_findings_case_insensitively(client, network):
    add_case(network, "Cough after travel", findings="Peripheral CONSOLIDATION, right lower lobe")
    add_case(network, "Dyspnoea", findings="Crazy-paving pattern, bilateral")
    add_case(network, "간유리 음영을 보이는 폐렴", findings="양측 말초 간유리 음영")
    add_case(network, "Œdème pulmonaire", findings="Épanchement pleural")
    assert listed(client, q="ground-GLASS") == ["C1"]
    assert listed(client, q="consolidation") == ["C2"]
    assert listed(client, q="CRAZY-paving") == ["C3"]
    assert listed(client, q="dyspnoea bilateral") == ["C3"]  # every word, in the title or the findings
    assert listed(client, q="dyspnoea unilateral") == []
    assert listed(client, q="간유리") == ["C4"]
    assert listed(client, q="말초") == ["C4"]
    # Beyond ASCII, SQLite folds case the way PostgreSQL does.
    assert listed(client, q="œDÈME") == ["C5"]
    assert listed(client, q="ÉPANCHEMENT") == ["C5"]
    assert len(listed(client)) == 5


def test_search_ignores_the_other_summary_fields(network):
    add_case(network, "Cough", chief_complaint="haemoptysis")
    assert found(network, "haemoptysis") == []


@pytest.mark.parametrize("q,expected", [
    ("%", ["C2"]), ("_", ["C3"]), ("'", ["C4"]), ("' OR '1'='1", []), ("'; DROP TABLE cases; --", []),
    ("50%", ["C2"]), ("5%", []), ("0%", ["C2"]),
    ("a_b", ["C3"]), ("x_y", []),
    ("o'brien's", ["C4"]), ("n/a", ["C5"]), ("//", []), ("\\", ["C6"]), ("[ab]", []),
])
def test_sql_and_like_metacharacters_are_plain_text(client, network, q, expected):
    add_case(network, "Consolidation over 50% of the lung")  # C2
    add_case(network, "Marker a_b on film")  # C3
    add_case(network, "Dr O'Brien's patient")  # C4
    add_case(network, "Exposure N/A")  # C5
    add_case(network, "Path C:\\films")  # C6
    add_case(network, "Marker axb on film")  # C7: what an unescaped a_b would also match
    assert listed(client, q=q) == expected
    with network.sessions() as session:
        assert session.scalar(select(Case.id).where(Case.number == 1))  # the table is still there


def test_filter_by_status(client, network):
    add_case(network, "Closed one", status="closed")
    add_case(network, "Open one")
    assert listed(client, status="open") == ["C3", "C1"]
    assert listed(client, status="closed") == ["C2"]
    assert listed(client, status="") == ["C3", "C2", "C1"]
    assert listed(client, q="one", status="closed") == ["C2"]


def test_filter_by_date_published(client, network):
    utc = timezone.utc
    # created as a draft in January, published in March: it is listed under March
    add_case(network, "Published in March", created=datetime(2020, 1, 10, 9, tzinfo=utc),
             published=datetime(2020, 3, 2, 23, 59, tzinfo=utc))
    # a row with no publication date (an older row, or a draft closed before that was refused): not in the
    # library at all until it is published
    add_case(network, "Created in February", created=datetime(2020, 2, 15, 0, 0, tzinfo=utc), published=None)
    add_case(network, "Published 1 March", created=datetime(2020, 3, 1, tzinfo=utc),
             published=datetime(2020, 3, 1, 0, 0, tzinfo=utc))
    assert listed(client, **{"from": "2020-03-01", "to": "2020-03-31"}) == ["C2", "C4"]
    assert listed(client, **{"from": "2020-03-02", "to": "2020-03-02"}) == ["C2"]  # both ends inclusive
    assert listed(client, **{"from": "2020-01-01", "to": "2020-01-31"}) == []
    assert listed(client, **{"from": "2020-02-01", "to": "2020-02-29"}) == []
    assert listed(client, **{"to": "2020-02-29"}) == []
    assert listed(client, **{"from": "2020-03-02"}) == ["C1", "C2"]  # C1 was created today
    assert listed(client, **{"from": "2020-02-01", "status": "open", "q": "march"}) == ["C2", "C4"]
    with network.sessions() as session:
        result = search_cases(session, date_from=date(2020, 3, 1), date_to=date(2020, 3, 1))
        assert [c.code for c in result.cases] == ["C4"]


def test_newest_first(client, network):
    utc = timezone.utc
    add_case(network, "Old", created=datetime(2019, 1, 1, tzinfo=utc), published=datetime(2019, 1, 1, tzinfo=utc))
    add_case(network, "Draft long ago, published last", draft=True, created=datetime(2018, 1, 1, tzinfo=utc))
    with transaction(network.sessions) as session:
        publish_case(session, "C3")
    add_case(network, "Middle", created=datetime(2020, 1, 1, tzinfo=utc), published=datetime(2020, 1, 1, tzinfo=utc))
    assert listed(client) == ["C3", "C1", "C4", "C2"]


def test_pages_of_fifty(client, network):
    with transaction(network.sessions) as session:
        for n in range(2, 122):
            create_case(session, f"Case number {n} of the series")
    assert len(listed(client)) == 50
    first = client.get("/library/").get_data(as_text=True)
    assert "121 cases" in first and "page 1 of 3" in first
    assert listed(client)[0] == "C121" and listed(client)[-1] == "C72"
    assert listed(client, page=2)[0] == "C71"
    third = listed(client, page=3)
    assert len(third) == 21 and third[-1] == "C1"
    assert listed(client, page=4) == []
    # the next-page link keeps the search
    page = client.get("/library/", query_string={"q": "series", "status": "open"}).get_data(as_text=True)
    assert 'href="/library/?q=series&amp;status=open&amp;page=2"' in page
    assert listed(client, q="series", status="open", page=3) == [f"C{n}" for n in range(21, 1, -1)]
    with network.sessions() as session:
        result = search_cases(session, "series", page=3)
        assert (result.total, result.pages, result.has_next, result.has_previous) == (120, 3, False, True)


@pytest.mark.parametrize("args", [
    {"status": "draft"}, {"status": "pending"}, {"from": "2020-13-01"}, {"to": "yesterday"},
    {"from": "2020-03-02", "to": "2020-03-01"}, {"page": "0"}, {"page": "two"}, {"page": "-1"},
    {"q": "x" * 201}, {"from": "20200301"},
])
def test_bad_search_parameters_are_a_400_with_the_reason(client, args):
    response = client.get("/library/", query_string=args)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'class="error"' in page and "<form" in page
    with pytest.raises(SearchError):
        parse_search_params(args)


def test_search_cases_refuses_a_draft_status(network):
    with network.sessions() as session, pytest.raises(SearchError):
        search_cases(session, status="draft")


# ---------------------------------------------------------------- drafts and members-only cases


def test_drafts_are_never_listed_and_answer_404_until_published(client, network):
    code = add_case(network, "Intake waiting for review", draft=True, findings="ground-glass")
    assert code == "C2"
    assert listed(client) == ["C1"]
    assert listed(client, q="C2") == []
    assert listed(client, q="review") == []
    with network.sessions() as session:
        assert search_cases(session, include_member_only=True).total == 1
    response = client.get("/library/cases/C2")
    assert response.status_code == 404
    assert response.get_data(as_text=True) == client.get("/library/cases/C99").get_data(as_text=True).replace(
        "C99", "C2")  # a draft looks exactly like no case at all
    with transaction(network.sessions) as session:
        case = publish_case(session, "C2")
        assert case.status == "open" and case.published_at is not None
    assert listed(client) == ["C2", "C1"]
    assert client.get("/library/cases/C2").status_code == 200
    with transaction(network.sessions) as session, pytest.raises(CaseStateError):
        publish_case(session, "C2")


def test_closing_a_draft_does_not_publish_it(client, network):
    """Issue 15, item 1: a draft is published or left a draft, never closed or reopened into the library."""
    add_case(network, "Intake nobody reviewed", draft=True)  # C2
    with transaction(network.sessions) as session:
        for reopen in (False, True):
            with pytest.raises(CaseStateError, match="C2 is a draft: publish it first"):
                close_case(session, "C2", reopen=reopen)
        assert get_case(session, "C2").status == "draft"
    assert listed(client) == ["C1"] and client.get("/library/cases/C2").status_code == 404
    with transaction(network.sessions) as session:
        publish_case(session, "C2")
        close_case(session, "C2")
    assert listed(client, status="closed") == ["C2"]
    with transaction(network.sessions) as session:
        close_case(session, "C2", reopen=True)
        assert get_case(session, "C2").status == "open"
        actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))
                   if e.action.startswith("case.")]
    assert actions == ["case.publish", "case.close", "case.reopen"]


def test_the_library_shows_only_published_cases(client, network):
    """A closed or open row that was never published (closed as a draft by an older relay) stays out of
    the library, its digests and the API until it is published; publishing keeps its status."""
    add_case(network, "Closed as a draft by an older relay", draft=True, status="closed")  # C2
    assert listed(client, status="closed") == [] and client.get("/library/cases/C2").status_code == 404
    with network.sessions() as session:
        assert search_cases(session, include_member_only=True).total == 1
    with transaction(network.sessions) as session:
        case = publish_case(session, "C2")
        assert case.status == "closed" and case.published_at is not None
    assert listed(client, status="closed") == ["C2"] and client.get("/library/cases/C2").status_code == 200


def test_members_only_cases_are_hidden_from_signed_out_visitors(client, network):
    add_case(network, "Members only: staff cluster", visibility="members", findings="ground-glass")  # C2
    add_case(network, "Later made members-only")  # C3
    with transaction(network.sessions) as session:
        set_visibility(session, "C3", "members")
    assert listed(client) == ["C1"]
    assert listed(client, q="staff") == []
    assert listed(client, q="ground-glass") == ["C1"]
    for code in ("C2", "C3"):
        assert client.get(f"/library/cases/{code}").status_code == 404
        assert views(network, code) == 0
    with network.sessions() as session:
        assert [c.code for c in search_cases(session, include_member_only=True).cases] == ["C3", "C2", "C1"]
        assert [c.code for c in search_cases(session, "staff", include_member_only=True).cases] == ["C2"]
    with transaction(network.sessions) as session:
        set_visibility(session, "C2", "public")
    assert listed(client) == ["C2", "C1"]
    assert client.get("/library/cases/C2").status_code == 200


def test_set_visibility_refuses_anything_else(network):
    with transaction(network.sessions) as session, pytest.raises(ValueError):
        set_visibility(session, "C1", "everyone")
    with transaction(network.sessions) as session, pytest.raises(ValueError):
        create_case(session, "Bad", visibility="secret")


def test_create_case_defaults_to_open_public_and_published(network):
    with network.sessions() as session:
        case = get_case(session, "C1")
        assert (case.status, case.visibility, case.views) == ("open", "public", 0)
        assert case.published_at is not None


# ---------------------------------------------------------------- the case page


def test_case_page_shows_the_summary_and_the_discussion_in_order(client, network):
    with transaction(network.sessions) as session:
        case = get_case(session, "C1")
        case.symptoms, case.exposure_history, case.findings = "cough, myalgia", "Wuhan travel", "bilateral GGO"
    with transaction(network.sessions) as session:
        session.add(Post(thread_id=get_case(session, "C1").thread.id, kind="notice", channel="console",
                         body="New case C1"))
    record_sms(network, LEE, "C1 first: looks like OP")
    run_worker(network)
    with transaction(network.sessions) as session:
        thread_id = get_case(session, "C1").thread.id
        alice = session.scalar(select(Member).where(Member.email == "alice@example.org"))
        ben = session.scalar(select(Member).where(Member.email == "ben@example.org"))
        session.add(Post(thread_id=thread_id, author_id=alice.id, channel="email", body="second: agree"))
        session.add(Post(thread_id=thread_id, author_id=ben.id, channel="web", body="third: CT follow-up?"))
    page = client.get("/library/cases/C1").get_data(as_text=True)
    for text in ("Chief complaint", "fever", "Symptoms", "cough, myalgia", "Exposure history", "Wuhan travel",
                 "Findings", "bilateral GGO"):
        assert text in page
    first, second, third = page.index("first: looks like OP"), page.index("second: agree"), page.index("third:")
    assert first < second < third
    # issue 21: Babel's medium date in the reader's language (English here), the time to the minute, the zone
    assert re.search(r"Lee Minho · SMS · <time datetime=\"[0-9T:.+-]+\">[A-Z][a-z]{2} \d{1,2}, \d{4} \d\d:\d\d UTC", page)
    assert "Alice Moreau · Email ·" in page and "Ben Carter · Web ·" in page
    assert "Task force · Console ·" in page  # the notice


def test_views_are_counted_per_page_view(client, network):
    assert views(network, "C1") == 0
    assert "1 view<" in client.get("/library/cases/C1").get_data(as_text=True)
    client.get("/library/cases/c1")
    page = client.get("/library/cases/C1").get_data(as_text=True)
    assert '<span class="views">3 views</span>' in page
    assert views(network, "C1") == 3
    client.head("/library/cases/C1")  # not a view
    client.get("/library/")  # the list does not count either
    client.get("/library/cases/C99")
    assert views(network, "C1") == 3


def test_concurrent_views_are_all_counted(network):
    app = create_app(services=network)

    def view_five_times():
        with app.test_client() as c:
            for _ in range(5):
                assert c.get("/library/cases/C1").status_code == 200

    errors = at_once(view_five_times, 6)
    assert not errors, errors
    assert views(network, "C1") == 30


def test_member_text_is_escaped_everywhere(client, network):
    add_case(network, "<script>alert('title')</script> GGO", chief_complaint="<b>fever</b>",
             findings="<img src=x onerror=alert(1)> & <script>alert(2)</script>")
    with transaction(network.sessions) as session:
        case = get_case(session, "C2")
        session.add(Post(thread_id=case.thread.id, channel="web", body="</pre><script>alert(3)</script>"))
    for path in ("/library/", "/library/cases/C2", "/library/?q=%3Cscript%3E"):
        page = client.get(path).get_data(as_text=True)
        assert "<script" not in page and "<img" not in page and "<b>" not in page, path
        assert "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt; GGO" in page, path
    page = client.get("/library/cases/C2").get_data(as_text=True)
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert "&lt;/pre&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in page
    assert "&lt;b&gt;fever&lt;/b&gt;" in page
    searched = client.get("/library/", query_string={"q": '"><script>x</script>'}).get_data(as_text=True)
    assert "<script" not in searched and 'value="&#34;&gt;&lt;script&gt;x&lt;/script&gt;"' in searched


def test_pages_are_readable_on_a_phone(client):
    page = client.get("/library/").get_data(as_text=True)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "@media (max-width:" in page


# ---------------------------------------------------------------- CLI


def test_cli_add_draft_members_only_publish_and_visibility(settings, network, monkeypatch):
    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    runner = CliRunner()
    result = runner.invoke(main, ["cases", "add", "--title", "Intake", "--findings", "GGO", "--draft",
                                  "--members-only"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "C2"
    with network.sessions() as session:
        case = get_case(session, "C2")
        assert (case.status, case.visibility, case.published_at) == ("draft", "members", None)
    result = runner.invoke(main, ["cases", "publish", "C2"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "C2 is published"
    result = runner.invoke(main, ["cases", "publish", "c2"])
    assert result.exit_code != 0 and "C2 is already published (open)" in result.output
    result = runner.invoke(main, ["cases", "publish", "C9"])
    assert result.exit_code != 0 and "no case C9" in result.output
    result = runner.invoke(main, ["cases", "visibility", "C2", "public"])
    assert result.exit_code == 0 and result.output.strip() == "C2 is public"
    result = runner.invoke(main, ["cases", "visibility", "C1", "members"])
    assert result.exit_code == 0 and result.output.strip() == "C1 is members-only"
    result = runner.invoke(main, ["cases", "visibility", "C1", "everyone"])
    assert result.exit_code != 0
    result = runner.invoke(main, ["cases", "visibility", "C9", "public"])
    assert result.exit_code != 0 and "no case C9" in result.output
    with network.sessions() as session:
        c1, c2 = get_case(session, "C1"), get_case(session, "C2")
        assert (c1.visibility, c2.visibility, c2.status) == ("members", "public", "open")
        assert c2.published_at is not None
    result = runner.invoke(main, ["cases", "add", "--title", "Plain"])
    assert result.output.strip() == "C3"
    with network.sessions() as session:
        assert (get_case(session, "C3").status, get_case(session, "C3").visibility) == ("open", "public")
    result = runner.invoke(main, ["cases", "close", "C3"])
    assert result.output.strip() == "C3 is closed"


def test_cli_refuses_to_close_or_reopen_a_draft(settings, network, monkeypatch, client):
    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    runner = CliRunner()
    assert runner.invoke(main, ["cases", "add", "--title", "T", "--draft"]).output.strip() == "C2"
    for args in (["cases", "close", "C2"], ["cases", "close", "C2", "--reopen"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 1, result.output
        assert "C2 is a draft: publish it first (relay cases publish C2)" in result.output
    assert listed(client) == ["C1"] and client.get("/library/cases/C2").status_code == 404
    assert "C2" in runner.invoke(main, ["cases", "drafts"]).output
    result = runner.invoke(main, ["cases", "publish", "C2"])
    assert result.exit_code == 0 and result.output.strip() == "C2 is published"
    assert runner.invoke(main, ["cases", "close", "C2"]).output.strip() == "C2 is closed"
    assert runner.invoke(main, ["cases", "close", "C2", "--reopen"]).output.strip() == "C2 is open"
    assert listed(client) == ["C2", "C1"]


def test_dates_in_the_list_are_the_library_date(client, network):
    long_ago = datetime.now(timezone.utc) - timedelta(days=400)
    add_case(network, "Dated", created=long_ago, published=long_ago)
    # issue 21: Babel's medium date in the reader's language (English for a reader who asks for none)
    assert format_date(long_ago.date(), "medium", locale="en") in client.get("/library/").get_data(as_text=True)
