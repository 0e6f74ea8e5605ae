"""Case images: what comes in (an upload, an email attachment, an MMS picture) is checked, cleaned
and filed under a case.

- The type is sniffed from the content by Pillow, never taken from the name or a declared type:
  JPEG, PNG, GIF and WebP are accepted, anything else is refused with a reason (ImageRefused).
- Every image is decoded and re-encoded from its pixels alone, after the EXIF orientation has been
  applied: EXIF (GPS, camera, times), XMP, IPTC, comments and ICC profiles do not survive. Animated
  GIF/WebP keep their first frame. JPEG stays JPEG, WebP stays WebP, PNG and GIF become PNG.
- The pixel count is read from the header (Image.open is lazy) and an image over the cap
  (RELAY_IMAGE_MAX_PIXELS, default 40 megapixels) is refused before a single pixel is decoded: a
  decompression bomb of a few bytes is a clear refusal, never a worker's memory.
- A thumbnail (JPEG, at most THUMBNAIL_EDGE pixels a side) is made beside it.
- The guard reads the text in the pixels (Tesseract) and the file name (issue 16): an image with a finding
  in its pixels is held, a name with one is not kept (kept_filename).
- Files are named by the SHA-256 of the cleaned bytes in the media store (relay.library.media_store); the
  row's sha256 is that of the *original* bytes, unique per case, so the same picture sent again
  (a retried fetch, a mail re-sent) is not filed twice.
"""
from __future__ import annotations

import hashlib
import io
import logging
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import event, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from relay import guard
from relay.access import permissions
from relay.guard import ocr
from relay.guard.file_names import kinds_in_file_name
from relay.infra import audit
from relay.library.media_store import MediaStore, media_store_for
from relay.model.tables import Case, CaseImage, Post
from relay.model.translatable import N_, Translatable

log = logging.getLogger(__name__)

SOURCES = ("console", "email", "mms", "intake", "api")
ACCEPTED = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
THUMBNAIL_EDGE = 320
MAX_PIXELS = 40_000_000  # larger is a decompression bomb, not a clinical photo (RELAY_IMAGE_MAX_PIXELS)
# Pillow's own guard (a warning over it, an error over twice it) is the backstop for any other opener
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
OUTPUT = {"JPEG": ("JPEG", "image/jpeg", "jpg"), "WEBP": ("WEBP", "image/webp", "webp"),
          "PNG": ("PNG", "image/png", "png"), "GIF": ("PNG", "image/png", "png")}


class ImageRefused(Translatable, ValueError):
    """The bytes are not an image relay files (wrong type, too large, damaged); the message says why."""


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int
    thumbnail: bytes


def _fresh(image: Image.Image) -> Image.Image:
    """The pixels alone, in a new image with no info dictionary, EXIF or palette metadata."""
    if image.mode in ("P", "PA"):
        has_alpha = image.mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif image.mode not in ("1", "L", "LA", "RGB", "RGBA", "CMYK", "I;16", "I"):
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    return Image.frombytes(image.mode, image.size, image.tobytes())


def clean_image(data: bytes, max_bytes: int, max_pixels: int = MAX_PIXELS) -> CleanImage:
    """Check and re-encode one image; raises ImageRefused with a reason a person can act on."""
    if not data:
        raise ImageRefused(N_("the file is empty"))
    if len(data) > max_bytes:
        raise ImageRefused(N_("the image is %(size)s bytes; the limit is %(max)s"), size=f"{len(data):,}", max=f"{max_bytes:,}")
    if max_pixels > (Image.MAX_IMAGE_PIXELS or 0):  # a cap set above the default: Pillow's guard follows it
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            source = Image.open(io.BytesIO(data))  # reads the header only
            kind = source.format
            if kind not in ACCEPTED:
                raise ImageRefused(N_("%(kind)s images are not accepted (JPEG, PNG, GIF or WebP only)"), kind=kind or "this")
            if source.width * source.height > max_pixels:
                raise ImageRefused(N_("the image is %(width)dx%(height)d pixels, more than %(max)s pixels"),
                                   width=source.width, height=source.height, max=f"{max_pixels:,}")
            source.seek(0)
            source.load()
            upright = ImageOps.exif_transpose(source)
            pixels = _fresh(upright)
    except ImageRefused:
        raise
    except UnidentifiedImageError:
        raise ImageRefused(N_("not an image (JPEG, PNG, GIF or WebP only)")) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused(N_("the image has too many pixels (more than %(max)s)"), max=f"{max_pixels:,}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt data
        raise ImageRefused(N_("the image is damaged (%(why)s)"), why=str(exc)) from None
    pil_format, content_type, extension = OUTPUT[kind]
    if pil_format == "JPEG" and pixels.mode not in ("L", "RGB", "CMYK"):
        pixels = pixels.convert("RGB")
    out = io.BytesIO()
    options = {"quality": 90} if pil_format in ("JPEG", "WEBP") else {"optimize": True}
    pixels.save(out, pil_format, **options)
    return CleanImage(out.getvalue(), content_type, extension, pixels.width, pixels.height, _thumbnail(pixels))


def _thumbnail(image: Image.Image) -> bytes:
    thumb = image.copy()
    if thumb.mode in ("RGBA", "LA"):
        background = Image.new("RGB", thumb.size, "white")
        background.paste(thumb.convert("RGBA"), mask=thumb.convert("RGBA").getchannel("A"))
        thumb = background
    elif thumb.mode not in ("RGB", "L"):
        thumb = ImageOps.autocontrast(thumb.convert("L")) if thumb.mode.startswith("I") else thumb.convert("RGB")
    thumb.thumbnail((THUMBNAIL_EDGE, THUMBNAIL_EDGE))
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=80)
    return out.getvalue()


def store_files(store: MediaStore, cleaned: CleanImage) -> tuple[str, str]:
    digest = hashlib.sha256(cleaned.data).hexdigest()
    name = f"{digest[:2]}/{digest}.{cleaned.extension}"
    thumb = f"{digest[:2]}/{digest}-thumb.jpg"
    if not store.exists(name):
        store.put(name, cleaned.data)
    if not store.exists(thumb):
        store.put(thumb, cleaned.thumbnail)
    return name, thumb


def fill_row(image: CaseImage, cleaned: CleanImage, names: tuple[str, str], sha: str) -> None:
    image.sha256, image.status, image.error = sha, "stored", ""
    image.stored_name, image.thumbnail_name = names
    image.content_type, image.width, image.height = cleaned.content_type, cleaned.width, cleaned.height
    image.size_bytes = len(cleaned.data)


HELD_BECAUSE = "held: the text in the image seems to hold "


def _guard_off(settings) -> bool:
    """RELAY_GUARD=off: an image's pixels are not read and its file name is kept as it came."""
    return getattr(settings, "guard", "hold") == "off"


def guard_pixels(image: CaseImage, cleaned: CleanImage, settings) -> None:
    """Issue 16: read the text burned into the image (Tesseract) and put it through the guard; an image with
    a finding is held (status "held": out of the library and the relays) until a coordinator releases it."""
    if _guard_off(settings):
        return
    text = ocr.read_text(cleaned.data)
    kinds = guard.scan(text).kinds if text else []
    if kinds:
        image.status, image.error = "held", HELD_BECAUSE + ", ".join(kinds)
        log.warning("image %s: held, the text in it seems to hold %s", image.id or "(new)", ", ".join(kinds))


def held_kinds(image: CaseImage) -> list[str]:
    """The kinds of identifier an image was held for (from the reason guard_pixels wrote), [] for one not held."""
    if image.status != "held" or not image.error.startswith(HELD_BECAUSE):
        return []
    return [kind.strip() for kind in image.error[len(HELD_BECAUSE):].split(",") if kind.strip()]


def kept_filename(filename: str | None, settings) -> str:
    """Issue 16: the name an image came with, or "" when the guard finds an identifier in it
    (relay/guard/file_names.py); the log names the kinds, never the name."""
    name = (filename or "")[:255]
    if not name or _guard_off(settings):
        return name
    kinds = kinds_in_file_name(name)
    if kinds:
        log.warning("image file name not kept: it seems to hold %s", ", ".join(kinds))
        return ""
    return name


def file_in_use(session: Session, name: str, other_than: int) -> bool:
    """Whether an image row other than `other_than` uses the media file `name` (files are named by their content,
    so the same picture filed under two cases shares them): a file is deleted only when none does."""
    return bool(session.scalar(select(func.count(CaseImage.id)).where(
        CaseImage.id != other_than, or_(CaseImage.stored_name == name, CaseImage.thumbnail_name == name))))


def delete_after_commit(session: Session, store: MediaStore, names: list[str]) -> None:
    """Delete media files once the caller's transaction commits (a rolled-back change keeps the files its rows
    still name)."""
    def delete(_session: Session) -> None:
        for name in names:
            store.delete(name)

    if names:
        event.listen(session, "after_commit", delete, once=True)


def held_images(session: Session, case: Case) -> list[CaseImage]:
    """The case's images held by the guard (shown to coordinators only)."""
    return list(session.scalars(select(CaseImage).where(CaseImage.case_id == case.id, CaseImage.status == "held")
                                .order_by(CaseImage.id)))


def release_image(session: Session, image_id: int, actor: audit.Actor, roles) -> CaseImage:
    """A coordinator releases a held image into the library (audited `guard.release_image`)."""
    permissions.require(roles, "held.decide")
    image = session.get(CaseImage, image_id)
    if image is None or image.status != "held":
        raise ImageRefused(N_("no held image %(id)d"), id=image_id)
    image.status, image.error = "stored", ""
    audit.record(session, "guard.release_image", f"image:{image.id}", actor, case_id=image.case_id)
    return image


def _existing(session: Session, case_id: int, sha: str) -> CaseImage | None:
    return session.scalar(select(CaseImage).where(CaseImage.case_id == case_id, CaseImage.sha256 == sha))


def add_case_image(session: Session, settings, case: Case, data: bytes, filename: str, source: str,
                   post: Post | None = None, *, store: MediaStore | None = None) -> CaseImage:
    """File one image under a case and return its row; the same bytes already filed under the case
    return the row there is (nothing is filed twice). Raises ImageRefused (nothing filed) when the
    bytes are not an acceptable image. The caller commits."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    sha = hashlib.sha256(data).hexdigest()
    existing = _existing(session, case.id, sha)
    if existing is not None:
        return existing
    cleaned = clean_image(data, settings.max_image_bytes, settings.image_max_pixels)
    names = store_files(store or media_store_for(settings), cleaned)
    image = CaseImage(case_id=case.id, post_id=post.id if post is not None else None, source=source,
                      filename=kept_filename(filename, settings))
    fill_row(image, cleaned, names, sha)
    guard_pixels(image, cleaned, settings)
    try:
        with session.begin_nested():
            session.add(image)
            session.flush()
    except IntegrityError:  # filed by someone else at the same moment: theirs stands
        found = _existing(session, case.id, sha)
        if found is None:
            raise
        return found
    log.info("image %s filed under %s (%s, %sx%s)", image.id, case.code, source, image.width, image.height)
    return image


def file_fetched(session: Session, settings, image: CaseImage, data: bytes,
                 store: MediaStore | None = None) -> CaseImage:
    """Fill a pending row (an MMS picture) with the bytes fetched for it: stored, failed (refused
    with the reason) or duplicate (the case already has these bytes)."""
    sha = hashlib.sha256(data).hexdigest()
    existing = _existing(session, image.case_id, sha)
    if existing is not None and existing.id != image.id:
        image.status, image.error = "duplicate", f"the same image as #{existing.id}"
        return image
    try:
        cleaned = clean_image(data, settings.max_image_bytes, settings.image_max_pixels)
    except ImageRefused as exc:
        image.status, image.error = "failed", str(exc)
        return image
    names = store_files(store or media_store_for(settings), cleaned)
    try:
        with session.begin_nested():
            fill_row(image, cleaned, names, sha)
            guard_pixels(image, cleaned, settings)
            session.flush()
    except IntegrityError:
        session.refresh(image)
        image.status, image.error = "duplicate", "the same image is already filed under the case"
    return image


def case_images(session: Session, case: Case) -> list[CaseImage]:
    """What the case page shows: stored images and failed fetches (never hidden), oldest first."""
    return list(session.scalars(select(CaseImage).where(CaseImage.case_id == case.id,
                                                        CaseImage.status.in_(("stored", "failed", "pending")))
                                .order_by(CaseImage.id)))


LOGO_EDGE = 48  # an email image smaller than this both ways is a signature logo or a tracking pixel


def _too_small(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.width < LOGO_EDGE and image.height < LOGO_EDGE
    except Exception:  # not an image at all: add_case_image says so
        return False


def file_attachments(session: Session, settings, case: Case, attachments, source: str,
                     post: Post | None = None) -> tuple[list[CaseImage], list[str]]:
    """File an email's image attachments under a case: (images filed, notes on what was not).
    Text and attached messages are not images and are passed over silently; tiny images (logos)
    are skipped; anything else refused is noted with its reason."""
    filed: list[CaseImage] = []
    notes: list[str] = []
    for attachment in attachments:
        if attachment.content_type.startswith(("text/", "message/", "multipart/")):
            continue
        name = kept_filename(attachment.filename, settings) or attachment.content_type
        if _too_small(attachment.content):
            notes.append(f"{name}: skipped (smaller than {LOGO_EDGE} pixels)")
            continue
        try:
            filed.append(add_case_image(session, settings, case, attachment.content, attachment.filename,
                                        source, post))
        except ImageRefused as exc:
            notes.append(f"{name}: not filed ({exc})")
    return filed, notes
