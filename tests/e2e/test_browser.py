"""The console and the library in a real headless Chromium against real processes: gunicorn, a Celery
worker on Redis (private broker prefix), a fresh PostgreSQL database, the Twilio stand-in and the SMTP
sink.

A coordinator signs in, creates a case, publishes it, previews a Korean notice (the page shows UCS-2
and the segment count), sends it to a list and watches the delivery counts rise as the stand-in and
the sink receive the messages; a member opens the library link from the SMS the stand-in received and
sees the case and its discussion; a <script> sent by SMS shows as text, never runs. A member signs in
from the library and posts to the discussion; the post is relayed by SMS."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from relay.access.accounts import set_password
from relay.infra.db import transaction
from relay.members.directory import find_member, import_members
from relay.model.tables import Delivery, Post
from relay.render.segments import count_segments
from tests.conftest import DEMO_CSV, IN_CI
from tests.helpers import sms_form
from tests.i18n_helpers import assert_korean
from tests.paths import REPO_ROOT

from .browser import chromium  # noqa: F401  (the fixture)
from .processes import wait_until
from .shared_cluster import SharedCluster, logs_on_failure, shared_cluster  # noqa: F401  (the fixture)
from .test_distributed import KIM, LEE, WAIT

pytestmark = pytest.mark.e2e

PASSWORD = "browser test password"
COORDINATOR, MEMBER = "jiwon@example.org", "minho@example.org"  # Kim (Korean, coordinator), Lee (member)
KOREAN_TITLE = "새 증례: 54세 남성, 발열과 양측 간유리 음영"
KOREAN_CASE = "54세 남성, 발열과 양측 간유리 음영"


BrowserCluster = SharedCluster


@pytest.fixture
def cluster(shared_cluster: SharedCluster, request):
    """The shared cluster (tests/e2e/shared_cluster.py), reset, with the demo members and two passwords. It is
    reached and addressed at http://127.0.0.1:PORT (so the library links in the messages open in the browser;
    session cookies are then not Secure, as for any plain-http base)."""
    shared_cluster.reset()
    with transaction(shared_cluster.services.sessions) as session:
        report = import_members(session, DEMO_CSV)
        assert not report.errors, report.errors
        for email in (COORDINATOR, MEMBER):
            set_password(session, find_member(session, email), PASSWORD)
    yield shared_cluster
    logs_on_failure(request, shared_cluster)


def english(context, base_url: str):
    """The profile's pages in English whoever signs in (the language switch's cookie; issue 21)."""
    context.add_cookies([{"name": "relay_lang", "value": "en", "url": base_url}])
    return context


def sign_in(page, base_url: str, email: str, expect_path: str) -> None:
    page.fill('form[action="/signin"] input[name=email]', email)
    page.fill('form[action="/signin"] input[name=password]', PASSWORD)
    page.click('form[action="/signin"] button[type=submit]')
    page.wait_for_url(f"{base_url}{expect_path}")


def test_coordinator_publishes_and_broadcasts_and_a_member_reads(cluster: BrowserCluster, chromium):
    base = cluster.base_url
    coordinator = english(chromium(), base).new_page()  # Kim reads Korean: this pass is the English one
    dialogs = []
    coordinator.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    # Signed out, the console sends the browser to sign-in, and back after it.
    coordinator.goto(f"{base}/console/cases/new")
    assert coordinator.url.startswith(f"{base}/signin")
    sign_in(coordinator, base, COORDINATOR, "/console/cases/new")

    # A case: created as a draft, reviewed, published.
    coordinator.fill("input[name=title]", "54-year-old with fever and ground-glass opacities")
    coordinator.fill("textarea[name=chief_complaint]", "Fever and dry cough for 5 days")
    coordinator.fill("textarea[name=findings]", "CT: bilateral peripheral ground-glass opacities")
    coordinator.set_input_files('form[action="/console/cases/"] input[name=images]',
                                files=[{"name": "ct-axial.png", "mimeType": "image/png", "buffer": _ct_image()}])
    coordinator.click('form[action="/console/cases/"] button[type=submit]')
    coordinator.wait_for_url(f"{base}/console/cases/C1")
    assert coordinator.text_content("#case-status") == "draft"
    coordinator.click('form[action="/console/cases/C1/publish"] button')
    coordinator.wait_for_url(f"{base}/console/cases/C1")
    assert coordinator.text_content("#case-status") == "open"

    # A Korean new-case notice to list tft: the preview shows UCS-2 and the segments.
    coordinator.click("text=Compose a notice about C1")
    coordinator.wait_for_url(re.compile(r".*/console/notices/new\?case=C1.*"))
    coordinator.fill("input[name=title]", KOREAN_TITLE)
    coordinator.check('input[name=lists][value="tft"]')
    coordinator.click('form[action="/console/notices"] button[type=submit]')
    coordinator.wait_for_url(re.compile(rf"{re.escape(base)}/console/notices/\d+$"))
    korean = coordinator.locator('.sms-meta[data-language="ko"]')
    assert korean.locator(".encoding").text_content() == "UCS-2"
    sms_text = coordinator.locator('pre.sms-text[data-language="ko"]').text_content()
    assert "새 증례 C1" in sms_text  # the Korean template
    expected = count_segments(sms_text)
    assert expected.encoding == "UCS-2" and expected.segments >= 2
    assert int(korean.locator(".segments").text_content()) == expected.segments
    assert int(korean.locator(".characters").text_content()) == expected.characters
    assert "5</b> recipients" in coordinator.content()

    # Send now: the counts on the page rise (polled, no reload) as the stand-in and the sink receive.
    # The stand-in stalls and refuses the first SMS (503), so one delivery is retried seconds later and
    # the rise is there to see however fast the rest goes.
    cluster.standin.fail_next(503, None, "busy", delay=1.0)
    coordinator.click("#send-now button")
    coordinator.wait_for_selector("#counts")
    seen = [int(coordinator.text_content("#count-sent"))]
    coordinator.evaluate("window.__stillHere = true")  # gone if the page reloads
    wait_until(lambda: seen.append(int(coordinator.text_content("#count-sent"))) or seen[-1] == 10, WAIT,
               "the page to count 10 sent deliveries", interval=0.5, watch=[cluster.web, cluster.worker])
    assert seen == sorted(seen) and seen[0] < 10  # it rose
    assert coordinator.evaluate("window.__stillHere") is True
    assert coordinator.text_content("#count-queued") == "0" and coordinator.text_content("#count-failed") == "0"
    sms = cluster.standin.accepted
    assert len(sms) == 5 and len(cluster.sent()) == 6 and len(cluster.mails()) == 5
    to_kim = next(r for r in sms if r.form["To"] == KIM)
    assert to_kim.form["Body"] == sms_text  # what the preview showed is what went out

    # A member opens the library link from the SMS the stand-in received.
    to_lee = next(r for r in sms if r.form["To"] == LEE)
    link = re.search(r"https?://\S+/library/cases/C1", to_lee.form["Body"]).group(0)
    member = chromium().new_page()
    member.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    member.goto(link)
    assert member.locator("h1").text_content() == "C1: 54-year-old with fever and ground-glass opacities"
    assert "Fever and dry cough for 5 days" in member.text_content("dl.summary")
    assert member.locator(".post.notice").count() == 1  # the notice is the discussion's first post
    thumb = member.locator('img[src*="/images/"]')
    assert thumb.count() == 1  # the image uploaded with the case, shown to the member, loaded
    member.wait_for_function("() => { const img = document.querySelector('img[src*=\"/images/\"]');"
                             " return img && img.complete; }", timeout=WAIT * 1000)  # loaded, on a busy machine too
    assert member.evaluate("document.querySelector('img[src*=\"/images/\"]').naturalWidth") > 0

    # A <script> sent by SMS is shown as text, never run.
    script = "<script>window.__pwned = 1; alert('x')</script>"
    response = cluster.post_signed("/webhooks/twilio/sms", sms_form(LEE, f"C1 {script} looks like organising pneumonia"),
                                   signed_base=base)
    assert response.status_code == 200
    wait_until(lambda: cluster.scalar(select(Post).where(Post.kind == "reply")), WAIT, "the SMS reply to be posted",
               watch=[cluster.web, cluster.worker])
    member.reload()
    reply = member.locator(".post.reply pre")
    assert reply.text_content() == f"{script} looks like organising pneumonia"
    assert member.locator(".post.reply .meta").text_content().split(" · ")[1] == "SMS"
    assert member.evaluate("window.__pwned") is None and dialogs == []


def _ct_image() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (640, 480), (40, 40, 40)).save(out, "PNG")
    return out.getvalue()


def test_member_signs_in_and_posts_from_the_library(cluster: BrowserCluster, chromium):
    from relay.library.cases import create_case
    from relay.notices.lifecycle import new_case_notice

    with transaction(cluster.services.sessions) as session:
        create_case(session, "Rash after travel", chief_complaint="rash")
    new_case_notice(cluster.services, "C1", ["tft"])  # the list follows C1
    cluster.wait_for_sent(5, "the notice")
    base = cluster.base_url
    page = chromium().new_page()
    page.goto(f"{base}/library/cases/C1")
    assert page.locator("form.post-form").count() == 0
    page.click('a[href="/signin?next=/library/cases/C1"]')
    sign_in(page, base, MEMBER, "/library/cases/C1")
    text = "Web opinion: consider <b>dengue</b> serology"
    page.fill("form.post-form textarea[name=text]", text)
    page.click("form.post-form button[type=submit]")
    page.wait_for_url(re.compile(rf"{re.escape(base)}/library/cases/C1#post-\d+$"))
    post = page.locator(".post.reply").last
    assert post.locator("pre").text_content() == text  # escaped: shown as typed
    assert post.locator(".meta").text_content().split(" · ")[1] == "Web"
    relays = cluster.wait_for_sent(5 + 4, "the web post relayed by SMS")[5:]
    assert sorted(r.form["To"] for r in relays) == sorted(["+821012345601", "+821012345603", "+33612345604",
                                                           "+12025550105"])
    assert all("dengue" in r.form["Body"] for r in relays)
    posts = cluster.rows(select(Post).where(Post.kind == "reply"))
    assert [(p.body, p.channel) for p in posts] == [(text, "web")]
    # The member's session cannot use the console.
    response = page.goto(f"{base}/console/")
    assert response.status == 403 and "Not allowed" in page.content()
    assert cluster.rows(select(Delivery).where(Delivery.purpose == "relay", Delivery.channel == "sms"))


def test_hold_pauses_sending_until_resumed(cluster: BrowserCluster, chromium):
    """The hold switch with a real worker: a notice sent while on hold reaches nobody (its deliveries
    wait queued), and resuming sends every one of them, once."""
    from relay.library.cases import create_case

    with transaction(cluster.services.sessions) as session:
        create_case(session, "Rash after travel", chief_complaint="rash")
    base = cluster.base_url
    page = english(chromium(), base).new_page()
    page.goto(f"{base}/signin")
    sign_in(page, base, COORDINATOR, "/console/")
    page.fill('form[action="/console/hold"] input[name=reason]', "wrong list chosen")
    page.click('form[action="/console/hold"] button[value=on]')
    page.wait_for_url(f"{base}/console/")
    assert "ON HOLD" in page.text_content("#hold-state")

    page.goto(f"{base}/console/notices/new?case=C1&kind=new_case")
    page.check('input[name=lists][value="tft"]')
    page.uncheck('input[name=channels][value="email"]')
    page.click('form[action="/console/notices"] button[type=submit]')
    page.wait_for_url(re.compile(rf"{re.escape(base)}/console/notices/\d+$"))
    page.click("#send-now button")
    page.wait_for_selector("#counts")

    def all_held():
        rows = cluster.rows(select(Delivery))
        return len(rows) == 5 and all(d.status == "queued" and d.error_code == "held" for d in rows)

    wait_until(all_held, WAIT, "the five deliveries to wait, held", watch=[cluster.web, cluster.worker])
    from .processes import stays
    stays(lambda: cluster.sent() == [], 2.0, "nothing sent while on hold")
    assert page.text_content("#count-queued") == "5"

    page.goto(f"{base}/console/")
    page.click('form[action="/console/hold"] button[value=off]')
    page.wait_for_url(f"{base}/console/")
    assert "running" in page.text_content("#hold-state")
    sent = cluster.wait_for_sent(5, "the held notice after resuming")
    stays(lambda: len(cluster.sent()) == 5, 2.0, "each held delivery sent once")
    assert sorted(r.form["To"] for r in sent) == sorted(["+821012345601", "+821012345602", "+821012345603",
                                                         "+33612345604", "+12025550105"])


SCREENSHOTS = REPO_ROOT / "var" / "screenshots"  # issue 21: kept for a reader to look at


def test_korean_pass_a_coordinator_previews_and_sends_and_a_member_reads_and_posts(cluster: BrowserCluster,
                                                                                   chromium):
    """Issue 21: the same flows in Korean, in Korean browsers. Kim (coordinator, language ko) composes,
    previews and sends a new-case notice; Lee (made a Korean reader here) opens the library link from his
    Korean SMS, signs in and posts. Every page is Korean with no English UI string of the catalogue left;
    the compose page and the case page are saved as screenshots under var/screenshots/."""
    from relay.library.cases import create_case

    with transaction(cluster.services.sessions) as session:
        create_case(session, KOREAN_CASE, chief_complaint="5일간 발열과 마른기침", findings="CT: 양측 말초 간유리 음영")
        find_member(session, MEMBER).language = "ko"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    base = cluster.base_url

    coordinator = chromium("ko-KR").new_page()
    coordinator.goto(f"{base}/signin")
    assert coordinator.text_content("h1") == "로그인"  # Accept-Language: ko, signed out
    assert_korean(coordinator.content())
    sign_in(coordinator, base, COORDINATOR, "/console/")
    assert_korean(coordinator.content())
    coordinator.goto(f"{base}/console/cases/C1")
    assert coordinator.text_content("#case-status") == "진행 중"
    coordinator.click("#compose-about-case")
    coordinator.wait_for_url(re.compile(r".*/console/notices/new\?case=C1.*"))
    assert coordinator.text_content("h1") == "알림 작성"
    assert_korean(coordinator.content())
    coordinator.check('input[name=lists][value="tft"]')
    coordinator.screenshot(path=str(SCREENSHOTS / "ko-console-compose.png"), full_page=True)
    coordinator.click('form[action="/console/notices"] button[type=submit]')
    coordinator.wait_for_url(re.compile(rf"{re.escape(base)}/console/notices/\d+$"))
    assert_korean(coordinator.content())
    assert "받는 사람 <b>5</b>명" in coordinator.content()
    sms_ko = coordinator.locator('pre.sms-text[data-language="ko"]').text_content()
    assert f"새 증례 C1: {KOREAN_CASE}" in sms_ko
    coordinator.screenshot(path=str(SCREENSHOTS / "ko-console-preview.png"), full_page=True)
    coordinator.click("#send-now button")
    coordinator.wait_for_selector("#counts")
    wait_until(lambda: coordinator.text_content("#count-sent") == "10", WAIT, "the page to count 10 sent",
               interval=0.5, watch=[cluster.web, cluster.worker])
    assert coordinator.text_content("#notice-status") in ("보내는 중", "보냄")  # polled, said in Korean

    to_lee = next(r for r in cluster.standin.accepted if r.form["To"] == LEE)
    assert to_lee.form["Body"] == sms_ko  # Lee reads Korean now: the Korean text the preview showed
    link = re.search(r"https?://\S+/library/cases/C1", to_lee.form["Body"]).group(0)
    member = chromium("ko-KR").new_page()
    member.goto(link)
    assert member.locator("h1").text_content() == f"C1: {KOREAN_CASE}"
    assert_korean(member.content())
    member.click('a[href="/signin?next=/library/cases/C1"]')
    sign_in(member, base, MEMBER, "/library/cases/C1")
    assert "임상 요약" in member.content() and "토론에 글쓰기" in member.content()
    text = "웹 의견: 뎅기열 혈청 검사를 고려하세요"
    member.fill("form.post-form textarea[name=text]", text)
    member.click("form.post-form button[type=submit]")
    member.wait_for_url(re.compile(rf"{re.escape(base)}/library/cases/C1#post-\d+$"))
    post = member.locator(".post.reply").last
    assert post.locator("pre").text_content() == text
    assert post.locator(".meta").text_content().split(" · ")[1] == "웹"  # the channel label, in Korean
    assert_korean(member.content())
    member.screenshot(path=str(SCREENSHOTS / "ko-library-case.png"), full_page=True)
    # The screenshots show Hangul, not boxes (a Korean font is installed): read back by OCR.
    assert "임상 요약" in read_korean(SCREENSHOTS / "ko-library-case.png")
    assert "알림 작성" in read_korean(SCREENSHOTS / "ko-console-compose.png")


def read_korean(image) -> str:
    """The text tesseract (Korean) reads in an image; skipped without tesseract, failed under CI."""
    import shutil
    import subprocess

    if shutil.which("tesseract") is None or "kor" not in subprocess.run(
            ["tesseract", "--list-langs"], capture_output=True, text=True).stdout.split():
        if IN_CI:
            pytest.fail("tesseract-ocr with Korean (tesseract-ocr-kor) is needed to read the screenshots")
        pytest.skip("no tesseract-ocr-kor to read the Korean screenshots")
    return subprocess.run(["tesseract", str(image), "-", "-l", "kor"], capture_output=True, text=True,
                          timeout=120).stdout
