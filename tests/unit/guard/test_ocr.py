"""Issue 16, images: text burned into an image is read with Tesseract and put through the guard; an image with
a finding is held (out of the library) until a coordinator releases it; a clean one is filed as usual; without
tesseract, images are filed unchecked with one clear log line."""
from __future__ import annotations

import io
import logging
import os

import pytest
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import select

from relay.access.permissions import Forbidden
from relay.guard import ocr
from relay.infra.audit import Actor
from relay.infra.db import transaction
from relay.library.cases import get_case
from relay.library.images import add_case_image, case_images, held_images, release_image
from relay.model.tables import AuditEvent, CaseImage
from tests.console_helpers import KIM, give_password, sign_in
from webhooks.app import create_app

needs_tesseract = pytest.mark.skipif(not ocr.available() and os.environ.get("CI") != "true",
                                     reason="tesseract-ocr is not installed (.ci/run installs it)")


def radiograph(lines: list[str]) -> bytes:
    """A dark 'radiograph' with white text burned in, as a PNG."""
    image = Image.new("L", (1400, 120 + 100 * len(lines)), 0)
    draw = ImageDraw.Draw(image)
    draw.ellipse((500, 60, 900, 100 + 100 * len(lines)), fill=60)  # something that is not text
    font = ImageFont.load_default(size=48)
    for i, line in enumerate(lines):
        draw.text((40, 40 + 100 * i), line, fill=255, font=font)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@needs_tesseract
def test_ocr_reads_the_burned_in_text():
    text = ocr.read_text(radiograph(["PATIENT ID 12345678", "DOB 1955-03-15"]))
    assert "12345678" in text and "1955-03-15" in text


@needs_tesseract
def test_an_image_with_a_name_and_number_burned_in_is_held_and_a_clean_one_is_not(network):
    with transaction(network.sessions) as session:
        case = get_case(session, "C1")
        held = add_case_image(session, network.settings, case, radiograph(["PATIENT ID 12345678",
                                                                           "DOB 1955-03-15 PA ERECT"]), "a.png", "console")
        clean = add_case_image(session, network.settings, case, radiograph(["PA ERECT", "120 KVP 2.5 MAS"]),
                               "b.png", "console")
        assert held.status == "held" and "record_number" in held.error and "12345678" not in held.error
        assert clean.status == "stored"
        assert [i.id for i in case_images(session, case)] == [clean.id]  # the library shows the clean one only
        held_id = held.id
    client = create_app(services=network).test_client()
    assert client.get(f"/library/cases/C1/images/{held_id}").status_code == 404
    give_password(network, KIM)
    sign_in(client, KIM)
    page = client.get("/console/cases/C1").get_data(as_text=True)
    assert f"/console/cases/C1/images/{held_id}/release" in page
    assert client.get(f"/console/cases/C1/images/{held_id}/thumb").status_code == 200  # coordinators may look
    with pytest.raises(Forbidden):
        with transaction(network.sessions) as session:
            release_image(session, held_id, Actor("member:2", "console", 2), frozenset({"member"}))
    from tests.console_helpers import csrf

    answer = client.post(f"/console/cases/C1/images/{held_id}/release", data={"csrf_token": csrf(client)})
    assert answer.status_code == 302
    with network.sessions() as session:
        assert session.get(CaseImage, held_id).status == "stored"
        assert held_images(session, get_case(session, "C1")) == []
        assert session.scalar(select(AuditEvent.action).where(AuditEvent.action == "guard.release_image"))
    assert client.get(f"/library/cases/C1/images/{held_id}").status_code == 200


def test_without_tesseract_images_are_filed_with_a_clear_log_line(network, monkeypatch, caplog):
    monkeypatch.setattr(ocr.shutil, "which", lambda name: None)
    monkeypatch.setattr(ocr, "_warned", False)
    caplog.set_level(logging.WARNING, logger="relay.guard.ocr")
    with transaction(network.sessions) as session:
        image = add_case_image(session, network.settings, get_case(session, "C1"),
                               radiograph(["PATIENT ID 12345678"]), "a.png", "console")
        assert image.status == "stored"
    assert "tesseract is not installed" in caplog.text
