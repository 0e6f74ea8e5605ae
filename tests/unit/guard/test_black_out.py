"""Issue 16, images: a coordinator blacks out what names a patient in a held image (the guard's findings, read
with their word boxes, or boxes given), relay reads the new pixels again, and the image enters the library
only when nothing is left. The original pixels are gone from the media store; members may not do it."""
from __future__ import annotations

import io

import pytest
from PIL import Image
from sqlalchemy import select

from relay.access.permissions import Forbidden
from relay.guard import ocr
from relay.guard.ocr import Word
from relay.infra.audit import Actor
from relay.infra.db import transaction
from relay.library.black_out import Box, black_out, found_boxes, parse_boxes
from relay.library.cases import get_case
from relay.library.images import ImageRefused, add_case_image, case_images
from relay.library.media_store import media_store_for
from relay.model.tables import AuditEvent, CaseImage
from tests.console_helpers import KIM, csrf, give_password, reads_english, sign_in
from tests.unit.guard.test_ocr import needs_tesseract, radiograph
from webhooks.app import create_app

COORDINATOR = (Actor("member:1", "console", 1), frozenset({"coordinator"}))


def _line(texts: list[str], line: int, top: int) -> list[Word]:
    words, left = [], 40
    for text in texts:
        words.append(Word(text, left, top, 20 * len(text), 30, (1, 1, line)))
        left += 20 * len(text) + 15
    return words


def test_the_boxes_are_those_of_the_words_the_guard_finds_an_identifier_in():
    words = (_line(["PATIENT", "ID", "12345678"], 1, 50) + _line(["PA", "ERECT", "120", "KVP"], 2, 150)
             + _line(["DOB", "1955-03-15"], 3, 250))
    boxes = found_boxes(words)
    covered = {w.text for w in words for b in boxes if b.left <= w.left and w.left + w.width <= b.left + b.width
               and b.top <= w.top and w.top + w.height <= b.top + b.height}
    assert {"12345678", "1955-03-15"} <= covered
    assert not covered & {"PA", "ERECT", "120", "KVP"}  # what does not name the patient stays
    assert found_boxes(_line(["PA", "ERECT"], 1, 50)) == []


def test_boxes_a_coordinator_writes_are_read_or_refused_with_the_reason():
    assert parse_boxes(" 40,50,500,40; 0,0,10,10 ;") == [Box(40, 50, 500, 40), Box(0, 0, 10, 10)]
    assert parse_boxes("") == []
    for wrong, why in [("40,50,500", "not a box"), ("a,b,c,d", "not a box"), ("10,10,0,5", "above 0"),
                       ("-1,0,5,5", "from 0"), (";".join(["0,0,1,1"] * 51), "at most 50")]:
        with pytest.raises(ImageRefused, match=why):
            parse_boxes(wrong)


def _held(network, lines: list[str]) -> int:
    with transaction(network.sessions) as session:
        image = add_case_image(session, network.settings, get_case(session, "C1"), radiograph(lines), "cxr.png",
                               "console")
        assert image.status == "held", image.error
        return image.id


@needs_tesseract
def test_blacking_out_the_findings_releases_the_image_without_them(network):
    image_id = _held(network, ["PATIENT ID 12345678", "PA ERECT 120 KVP"])
    with network.sessions() as session:
        original = session.get(CaseImage, image_id).stored_name
    with transaction(network.sessions) as session:
        image = black_out(session, network.settings, image_id, *COORDINATOR)
        assert image.status == "stored", image.error
    store = media_store_for(network.settings)
    with network.sessions() as session:
        image = session.get(CaseImage, image_id)
        pixels = store.get(image.stored_name)
        assert [i.id for i in case_images(session, get_case(session, "C1"))] == [image_id]
        assert session.scalar(select(AuditEvent.action).where(AuditEvent.action == "guard.black_out"))
    text = ocr.read_text(pixels)
    assert "12345678" not in text and "ERECT" in text  # the number is gone, the technique is still there
    assert not store.exists(original)  # the pixels that named the patient are not kept
    with Image.open(io.BytesIO(pixels)) as picture:
        assert picture.size == (1400, 320) and picture.format == "PNG"
    client = create_app(services=network).test_client()
    assert client.get(f"/library/cases/C1/images/{image_id}").status_code == 200


@needs_tesseract
def test_boxes_that_miss_an_identifier_leave_the_image_held_saying_what_is_left(network):
    image_id = _held(network, ["PATIENT ID 12345678", "DOB 1955-03-15 PA ERECT"])
    with transaction(network.sessions) as session:
        image = black_out(session, network.settings, image_id, *COORDINATOR, boxes=[Box(0, 0, 1400, 110)])
        assert image.status == "held" and "birth_date" in image.error and "record_number" not in image.error
    with transaction(network.sessions) as session:  # then the rest, as the guard finds it
        assert black_out(session, network.settings, image_id, *COORDINATOR).status == "stored"


def test_a_member_may_not_black_out_and_nothing_to_black_out_is_a_clear_refusal(network, monkeypatch):
    with transaction(network.sessions) as session:
        image = add_case_image(session, network.settings, get_case(session, "C1"), radiograph(["PA ERECT"]),
                               "cxr.png", "console")
        image_id = image.id
    with pytest.raises(Forbidden):
        with transaction(network.sessions) as session:
            black_out(session, network.settings, image_id, Actor("member:2", "console", 2), frozenset({"member"}))
    if ocr.available():
        with pytest.raises(ImageRefused, match="finds nothing to black out"):
            with transaction(network.sessions) as session:
                black_out(session, network.settings, image_id, *COORDINATOR)
    monkeypatch.setattr(ocr.shutil, "which", lambda name: None)
    with pytest.raises(ImageRefused, match="could not be read"):
        with transaction(network.sessions) as session:
            black_out(session, network.settings, image_id, *COORDINATOR)
    with pytest.raises(ImageRefused, match="no held or stored image"):
        with transaction(network.sessions) as session:
            black_out(session, network.settings, 999_999, *COORDINATOR)


@needs_tesseract
def test_the_console_blacks_out_a_held_image(network):
    image_id = _held(network, ["PATIENT ID 12345678", "PA ERECT"])
    give_password(network, KIM)
    client = reads_english(create_app(services=network).test_client())
    sign_in(client, KIM)
    page = client.get("/console/cases/C1").get_data(as_text=True)
    assert f"/console/cases/C1/images/{image_id}/black-out" in page and "1400 x 320 pixels" in page
    wrong = client.post(f"/console/cases/C1/images/{image_id}/black-out",
                        data={"csrf_token": csrf(client), "boxes": "here"})
    assert wrong.status_code == 400 and "is not a box" in wrong.get_data(as_text=True)
    elsewhere = client.post(f"/console/cases/C2/images/{image_id}/black-out", data={"csrf_token": csrf(client)})
    assert elsewhere.status_code in (400, 404)  # another case's page does not reach this image
    done = client.post(f"/console/cases/C1/images/{image_id}/black-out", data={"csrf_token": csrf(client)})
    assert done.status_code == 302
    with network.sessions() as session:
        assert session.get(CaseImage, image_id).status == "stored"


def test_a_black_out_rolled_back_keeps_the_files_its_row_still_names(network):
    """The original files go only when the black-out commits: a rollback leaves the row and its files as they were."""
    with transaction(network.sessions) as session:
        image = add_case_image(session, network.settings, get_case(session, "C1"), radiograph(["PA ERECT"]),
                               "cxr.png", "console")
        image_id, original = image.id, image.stored_name
    store = media_store_for(network.settings)
    with pytest.raises(RuntimeError):
        with transaction(network.sessions) as session:
            black_out(session, network.settings, image_id, *COORDINATOR, boxes=[Box(30, 30, 400, 70)])
            raise RuntimeError("something after it failed")
    assert store.exists(original)
    with network.sessions() as session:
        assert session.get(CaseImage, image_id).stored_name == original
    with transaction(network.sessions) as session:
        black_out(session, network.settings, image_id, *COORDINATOR, boxes=[Box(30, 30, 400, 70)])
    assert not store.exists(original)
