"""Case images: type sniffed from the bytes, metadata (EXIF with GPS, PNG text, XMP) really gone
when read back, orientation applied first, thumbnails sized, the same bytes never filed twice, and
the library serving them under the case page's visibility rule."""
from __future__ import annotations

import io
import re
import struct
import time
import zlib

import pytest
from PIL import Image, ImageFile
from sqlalchemy import func, select

from relay.infra.db import transaction
from relay.infra.settings import Settings, SettingsError
from relay.library.cases import get_case, publish_case, set_visibility
from relay.library.images import MAX_PIXELS, THUMBNAIL_EDGE, ImageRefused, add_case_image, clean_image
from relay.library.media_store import LocalMediaStore, media_store_for
from relay.model.tables import CaseImage
from tests.helpers import at_once
from webhooks.app import create_app

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def photo(fmt: str = "JPEG", size=(400, 200), orientation: int | None = None, gps: bool = True,
          color=(200, 30, 30)) -> bytes:
    """A photo with the metadata a phone writes: camera make, time, GPS position, orientation."""
    image = Image.new("RGB", size, color)
    image.paste((0, 0, 255), (0, 0, 40, 40))  # a marker in the top left corner, to follow the rotation
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0132] = "2026:11:27 10:00:00"  # DateTime
    if orientation:
        exif[ORIENTATION] = orientation
    if gps:
        exif[GPS_IFD] = {1: "N", 2: (37.0, 33.0, 59.0), 3: "E", 4: (126.0, 58.0, 40.0)}
    out = io.BytesIO()
    options = {"exif": exif.tobytes()}
    if fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("Comment", "patient Hong Gildong")
        info.add_text("XML:com.adobe.xmp", "<x:xmpmeta>GPS 37.56</x:xmpmeta>")
        options["pnginfo"] = info
    image.save(out, fmt, **options)
    return out.getvalue()


def test_the_photo_really_carries_gps_before_cleaning():
    read = Image.open(io.BytesIO(photo()))
    assert read.getexif().get_ifd(GPS_IFD)[1] == "N"  # so the test below can fail


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_gps_and_text_metadata_are_gone(fmt):
    cleaned = clean_image(photo(fmt), 10_000_000)
    read = Image.open(io.BytesIO(cleaned.data))
    assert dict(read.getexif()) == {}
    assert read.getexif().get_ifd(GPS_IFD) == {}
    assert not {"exif", "xmp", "XML:com.adobe.xmp", "Comment", "icc_profile"} & set(read.info)
    assert b"PhoneMaker" not in cleaned.data and b"Hong Gildong" not in cleaned.data
    assert b"Exif\x00\x00" not in cleaned.data
    thumb = Image.open(io.BytesIO(cleaned.thumbnail))
    assert dict(thumb.getexif()) == {} and b"PhoneMaker" not in cleaned.thumbnail


def test_orientation_is_applied_before_stripping():
    cleaned = clean_image(photo(size=(400, 200), orientation=6), 10_000_000)  # 6: rotate 90° clockwise
    assert (cleaned.width, cleaned.height) == (200, 400)
    read = Image.open(io.BytesIO(cleaned.data)).convert("RGB")
    assert read.size == (200, 400)
    r, g, b = read.getpixel((180, 20))  # the blue marker moved from the top left to the top right
    assert b > 150 and r < 120


@pytest.mark.parametrize("size, expected", [((4000, 1000), (THUMBNAIL_EDGE, 80)), ((100, 50), (100, 50)),
                                            ((600, 1200), (160, THUMBNAIL_EDGE))])
def test_thumbnails_fit_the_edge(size, expected):
    cleaned = clean_image(photo(size=size, gps=False), 10_000_000)
    thumb = Image.open(io.BytesIO(cleaned.thumbnail))
    assert thumb.format == "JPEG" and thumb.size == expected
    assert (cleaned.width, cleaned.height) == size


def test_gif_and_transparent_png_are_filed_as_png():
    out = io.BytesIO()
    Image.new("P", (30, 20), 3).save(out, "GIF", comment=b"secret comment")
    cleaned = clean_image(out.getvalue(), 10_000_000)
    assert cleaned.content_type == "image/png" and b"secret comment" not in cleaned.data
    out = io.BytesIO()
    Image.new("RGBA", (30, 20), (0, 0, 0, 0)).save(out, "PNG")
    cleaned = clean_image(out.getvalue(), 10_000_000)
    assert Image.open(io.BytesIO(cleaned.data)).mode == "RGBA"


@pytest.mark.parametrize("data, reason", [
    (b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "not an image"),
    (b"", "empty"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not an image"),
])
def test_other_content_is_refused_with_a_reason(data, reason):
    with pytest.raises(ImageRefused, match=reason):
        clean_image(data, 10_000_000)


def test_the_type_comes_from_the_content_not_the_name():
    out = io.BytesIO()
    Image.new("RGB", (20, 20)).save(out, "BMP")
    with pytest.raises(ImageRefused, match="BMP images are not accepted"):
        clean_image(out.getvalue(), 10_000_000)  # whatever it is called, a BMP is a BMP
    assert clean_image(photo("PNG"), 10_000_000).content_type == "image/png"


def test_damaged_and_oversized_images_are_refused():
    data = photo()
    with pytest.raises(ImageRefused, match="damaged"):
        clean_image(data[: len(data) // 2], 10_000_000)
    with pytest.raises(ImageRefused, match="limit is 1,024"):
        clean_image(data + b"\0" * 2048, 1024)


def test_the_local_store_keeps_names_inside_its_root(tmp_path):
    store = LocalMediaStore(tmp_path / "media")
    store.put("ab/x.jpg", b"1")
    assert store.get("ab/x.jpg") == b"1" and store.exists("ab/x.jpg")
    for name in ("../escape", "/etc/passwd", "ab/../../x"):
        with pytest.raises(ValueError):
            store.put(name, b"2")


def test_media_store_threads_writing_one_name_at_once_all_succeed(tmp_path):
    """Content-addressed names mean two threads of one worker may write the same file at the same
    moment (the same picture filed twice at once); each must get a temporary file of its own, so
    neither finds its temporary file renamed away by the other (FileNotFoundError in CI)."""
    store = LocalMediaStore(tmp_path / "media")
    data = b"x" * 200_000  # large enough that the writes overlap
    for round_ in range(20):
        name = f"ab/{round_}.jpg"
        errors = at_once(lambda name=name: store.put(name, data), 8)
        assert not errors, errors
        assert store.get(name) == data
    assert not [path for path in (tmp_path / "media").rglob(".*") if path.is_file()]  # no temporary file left


# ---------------------------------------------------------------- filing under a case


def file_image(services, code: str, data: bytes, filename: str = "ct.jpg", source: str = "console") -> int:
    with transaction(services.sessions) as session:
        return add_case_image(session, services.settings, get_case(session, code), data, filename, source).id


def test_add_case_image_stores_a_clean_file_and_thumbnail(network):
    image_id = file_image(network, "C1", photo(orientation=8))
    with network.sessions() as session:
        image = session.get(CaseImage, image_id)
        assert (image.status, image.source, image.filename, image.content_type) == (
            "stored", "console", "ct.jpg", "image/jpeg")
        assert (image.width, image.height) == (200, 400) and len(image.sha256) == 64
        store = media_store_for(network.settings)
        assert (network.settings.var_dir / "media" / image.stored_name).is_file()
        stored = Image.open(io.BytesIO(store.get(image.stored_name)))
        assert stored.getexif().get_ifd(GPS_IFD) == {} and stored.size == (200, 400)
        assert max(Image.open(io.BytesIO(store.get(image.thumbnail_name))).size) == THUMBNAIL_EDGE


def test_the_same_image_is_not_filed_twice(network):
    first = file_image(network, "C1", photo())
    again = file_image(network, "C1", photo(), filename="again.jpg", source="email")
    assert again == first
    other = file_image(network, "C1", photo(color=(10, 200, 10)))
    assert other != first
    with network.sessions() as session:
        assert session.scalar(select(func.count(CaseImage.id))) == 2


def test_a_refused_image_files_nothing(network):
    with pytest.raises(ImageRefused):
        file_image(network, "C1", b"MZ\x90\x00 not a picture", filename="photo.jpg")
    with network.sessions() as session:
        assert session.scalar(select(func.count(CaseImage.id))) == 0


def test_an_unknown_source_is_a_programming_error(network):
    with pytest.raises(ValueError, match="source must be"):
        file_image(network, "C1", photo(), source="fax")


# ---------------------------------------------------------------- the library


@pytest.fixture
def client(network):
    return create_app(services=network).test_client()


def test_the_case_page_shows_thumbnails_linking_the_full_image(client, network):
    image_id = file_image(network, "C1", photo(size=(800, 600)))
    page = client.get("/library/cases/C1").get_data(as_text=True)
    assert f'href="/library/cases/C1/images/{image_id}"' in page
    assert f'src="/library/cases/C1/images/{image_id}/thumb"' in page
    full = client.get(f"/library/cases/C1/images/{image_id}")
    assert full.status_code == 200 and full.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(full.data)).size == (800, 600)
    assert full.headers["X-Content-Type-Options"] == "nosniff"
    thumb = client.get(f"/library/cases/C1/images/{image_id}/thumb")
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.data)).size == (320, 240)


def test_failed_fetches_are_shown_not_hidden(client, network):
    with transaction(network.sessions) as session:
        case = get_case(session, "C1")
        session.add(CaseImage(case_id=case.id, source="mms", status="failed", error="HTTP 404 from Twilio"))
    page = client.get("/library/cases/C1").get_data(as_text=True)
    assert "Image could not be fetched" in page and "HTTP 404 from Twilio" in page


def test_images_follow_the_case_visibility(client, network):
    image_id = file_image(network, "C1", photo())
    with transaction(network.sessions) as session:
        set_visibility(session, "C1", "members")
    for path in (f"/library/cases/C1/images/{image_id}", f"/library/cases/C1/images/{image_id}/thumb",
                 "/library/cases/C1"):
        assert client.get(path).status_code == 404
    with transaction(network.sessions) as session:
        set_visibility(session, "C1", "public")
    response = client.get(f"/library/cases/C1/images/{image_id}")
    assert response.status_code == 200 and "public" in response.headers["Cache-Control"]


def test_a_drafts_images_are_not_served(client, network):
    from relay.library.cases import create_case

    with transaction(network.sessions) as session:
        code = create_case(session, "Draft case", draft=True).code
    image_id = file_image(network, code, photo())
    assert client.get(f"/library/cases/{code}/images/{image_id}").status_code == 404
    with transaction(network.sessions) as session:
        publish_case(session, code)
    assert client.get(f"/library/cases/{code}/images/{image_id}").status_code == 200


def test_an_image_is_only_served_under_its_own_case(client, network):
    from relay.library.cases import create_case

    image_id = file_image(network, "C1", photo())
    with transaction(network.sessions) as session:
        create_case(session, "Another case")
    assert client.get(f"/library/cases/C2/images/{image_id}").status_code == 404
    assert client.get("/library/cases/C1/images/99999999999").status_code == 404
    assert client.get(f"/library/cases/C1/images/{image_id}/big").status_code == 404
    assert re.search(r"no image|Not Found", client.get("/library/cases/C1/images/12345").get_data(as_text=True))


@pytest.mark.parametrize("size", [(8000, 8000), (12000, 12000)])  # over relay's limit; over Pillow's too
def test_decompression_bombs_are_refused_before_decoding(size):
    out = io.BytesIO()
    Image.new("1", size).save(out, "PNG")  # a few kilobytes that would decode to 64-144 megapixels
    assert len(out.getvalue()) < 100_000
    with pytest.raises(ImageRefused, match="too large|too many pixels"):
        clean_image(out.getvalue(), 10_000_000)


def declared_png(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header declares width x height pixels (its data is a stub)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.fixture
def no_decoding(monkeypatch):
    """Fails the test if Pillow starts decoding pixels."""
    def load(self):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.parametrize("size", [(7000, 7000), (8000, 6000), (100_000, 100_000), (1, 2**31 - 1)])
def test_an_image_over_the_pixel_cap_is_refused_from_its_header_alone(no_decoding, size):
    data = declared_png(*size)
    assert len(data) < 200
    started = time.process_time()
    with pytest.raises(ImageRefused, match="pixels"):
        clean_image(data, 10_000_000)
    assert time.process_time() - started < 0.5


def test_the_pixel_cap_is_a_setting(network, monkeypatch):
    assert Settings.from_env({}).image_max_pixels == MAX_PIXELS == 40_000_000
    assert Settings.from_env({"RELAY_IMAGE_MAX_PIXELS": "2000000"}).image_max_pixels == 2_000_000
    with pytest.raises(SettingsError, match="RELAY_IMAGE_MAX_PIXELS"):
        Settings.from_env({"RELAY_IMAGE_MAX_PIXELS": "lots"})
    network.settings = network.settings.replace(image_max_pixels=1_000_000)
    with transaction(network.sessions) as session, pytest.raises(ImageRefused, match="1200x1000 pixels"):
        add_case_image(session, network.settings, get_case(session, "C1"), photo(size=(1200, 1000)), "ct.jpg",
                       "console")
    clean_image(photo(size=(1000, 1000)), 10_000_000, max_pixels=1_000_000)  # at the cap: filed


def test_concurrent_filing_of_the_same_image_keeps_one_row(postgres_only_url, tmp_path):
    """The (case, sha256) unique constraint, not the check in Python, is what holds under a race."""
    from relay.infra.dispatch import RecordingDispatcher
    from relay.library.cases import create_case
    from relay.services import build_services
    from tests.conftest import make_settings

    services = build_services(make_settings(tmp_path / "var", postgres_only_url), dispatcher=RecordingDispatcher(),
                              senders={})
    try:
        with transaction(services.sessions) as session:
            code = create_case(session, "Race").code
        data, ids = photo(size=(1600, 1200)), []
        errors = at_once(lambda: ids.append(file_image(services, code, data)), 4)
        assert not errors, errors
        assert len(ids) == 4 and len(set(ids)) == 1
        with services.sessions() as session:
            assert session.scalar(select(func.count(CaseImage.id))) == 1
    finally:
        services.dispose()
