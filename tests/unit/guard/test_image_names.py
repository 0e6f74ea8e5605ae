"""Issue 16, images: an image's file name is shown in the library (the image's alt text) to every reader, so it
goes through the guard like the image's pixels. A name that carries a patient identifier ("홍길동 환자 CXR.jpg",
"MRN_12345678.png") is not kept; an ordinary one ("chest_ct_axial.png") is."""
from __future__ import annotations

import io
import logging
from dataclasses import replace

import pytest
from PIL import Image
from sqlalchemy import select

from relay.infra.db import transaction
from relay.library.cases import get_case
from relay.library.images import add_case_image, file_attachments
from relay.model.messages import Attachment
from relay.model.tables import CaseImage
from webhooks.app import create_app

IDENTIFYING = ["홍길동 환자 CXR.jpg", "홍길동_환자_CXR.png", "MRN_12345678.png", "patient_Jane_Doe_PA.png",
               "DOB 1955-03-15 chest.jpg", "010-1234-5678.jpg", "850315-1234567.png"]
ORDINARY = ["chest_ct_axial.png", "IMG_20200312_101500.jpg", "C12 day 3 PA.png", "scan 2020-03-12.jpg"]


def picture(shade: int) -> bytes:
    """A plain grey picture with no text in it (each shade other bytes, so none is a duplicate)."""
    out = io.BytesIO()
    Image.new("L", (200, 160), shade).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("name", IDENTIFYING)
def test_a_file_name_with_an_identifier_is_not_kept_or_shown(network, name, caplog):
    caplog.set_level(logging.WARNING, logger="relay.library.images")
    with transaction(network.sessions) as session:
        image = add_case_image(session, network.settings, get_case(session, "C1"), picture(90), name, "console")
        assert image.status == "stored"  # the picture itself is clean: filed, under no name
        assert image.filename == ""
        image_id = image.id
    page = create_app(services=network).test_client().get("/library/cases/C1").get_data(as_text=True)
    assert f"/library/cases/C1/images/{image_id}/thumb" in page
    stem = name.rsplit(".", 1)[0]
    assert stem not in page and stem.replace("_", " ") not in page
    assert "file name not kept" in caplog.text and stem not in caplog.text  # the kinds are logged, never the value


@pytest.mark.parametrize("name", ORDINARY)
def test_an_ordinary_file_name_is_kept(network, name):
    with transaction(network.sessions) as session:
        image = add_case_image(session, network.settings, get_case(session, "C1"), picture(120), name, "console")
        assert image.filename == name


def test_an_emailed_attachment_is_filed_without_its_identifying_name_and_the_notes_do_not_repeat_it(network):
    attachments = [Attachment("김철수 환자 PA.png", "image/png", picture(30)),
                   Attachment("MRN 12345678.gif", "image/gif", b"not an image at all"),
                   Attachment("lateral view.png", "image/png", picture(60))]
    with transaction(network.sessions) as session:
        filed, notes = file_attachments(session, network.settings, get_case(session, "C1"), attachments, "email")
        assert [image.filename for image in filed] == ["", "lateral view.png"]
    assert len(notes) == 1 and "12345678" not in notes[0] and "not filed" in notes[0]


def test_with_the_guard_off_the_name_is_kept(network):
    settings = replace(network.settings, guard="off")
    with transaction(network.sessions) as session:
        image = add_case_image(session, settings, get_case(session, "C1"), picture(150), "MRN_12345678.png", "console")
    with network.sessions() as session:
        assert session.scalar(select(CaseImage.filename).where(CaseImage.id == image.id)) == "MRN_12345678.png"


def _file_named(network, names: list[str]) -> list[int]:
    """Image rows as an older relay filed them, with the names as they came."""
    with transaction(network.sessions) as session:
        case = get_case(session, "C1")
        rows = [CaseImage(case_id=case.id, source="email", status="stored", sha256=f"{i:064x}", filename=name)
                for i, name in enumerate(names)]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def _names(network, ids: list[int]) -> list[str]:
    with network.sessions() as session:
        return [session.get(CaseImage, i).filename for i in ids]


@pytest.mark.parametrize("guard_mode, kept", [("hold", False), ("off", True)])
def test_the_migration_empties_the_identifying_names_filed_before(network, monkeypatch, guard_mode, kept):
    from alembic import command

    from relay.infra.migrate import alembic_config, upgrade

    ids = _file_named(network, ["홍길동_환자_CXR.png", "MRN 12345678.png", "chest_ct_axial.png", ""])
    monkeypatch.setenv("RELAY_GUARD", guard_mode)
    command.downgrade(alembic_config(network.settings.database_url), "0023")
    upgrade(network.settings.database_url)
    expected = ["홍길동_환자_CXR.png", "MRN 12345678.png"] if kept else ["", ""]
    assert _names(network, ids) == [*expected, "chest_ct_axial.png", ""]
