"""Blacking out what names a patient in a case image (issue 16, images): a chest radiograph held for the name
and number burned into its corner is still worth showing once they are gone.

A coordinator asks for it on a held (or stored) image: relay paints black boxes over the words in which the
guard finds an identifier (Tesseract's word boxes, `relay.guard.ocr.read_words`), or over boxes the coordinator
gives, then reads the new pixels again. The image is released into the library only when the guard finds
nothing more; else it stays held, saying what is left. The blacked-out pixels replace the image's files (the
originals are deleted unless another image row uses the same file) and the row keeps the original bytes' hash,
so the same picture sent again finds this row, not a new copy. Audited `guard.black_out`.

Written here, not taken from a library: Pillow paints the boxes, Tesseract finds the words, the guard finds the
identifiers; what joins them (which words a finding covers) is a few lines."""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from PIL import Image, ImageDraw
from sqlalchemy.orm import Session

from relay import guard
from relay.access import permissions
from relay.guard import ocr
from relay.infra import audit
from relay.library.images import (
    ImageRefused,
    clean_image,
    delete_after_commit,
    file_in_use,
    fill_row,
    guard_pixels,
    store_files,
)
from relay.library.media_store import MediaStore, media_store_for
from relay.model.tables import CaseImage
from relay.model.translatable import N_

log = logging.getLogger(__name__)

PAD = 4  # pixels around a word's box: Tesseract's boxes hug the ink, anti-aliasing reaches past them
MAX_BOXES = 50


@dataclass(frozen=True)
class Box:
    """A rectangle in the image's pixels: left, top, width, height."""

    left: int
    top: int
    width: int
    height: int


def found_boxes(words: list[ocr.Word]) -> list[Box]:
    """The boxes of the words in which the guard finds an identifier. The words are read as Tesseract laid them
    out (a space between words, a line break between lines), so a label and its value on one line are read
    together, as in a message."""
    text, spans = "", []
    for i, word in enumerate(words):
        if i:
            text += " " if word.line == words[i - 1].line else "\n"
        spans.append((len(text), len(text) + len(word.text)))
        text += word.text
    boxes = []
    for finding in guard.scan(text).findings:
        for word, (start, end) in zip(words, spans, strict=True):
            if start < finding.end and finding.start < end:
                boxes.append(Box(word.left - PAD, word.top - PAD, word.width + 2 * PAD, word.height + 2 * PAD))
    return list(dict.fromkeys(boxes))


def parse_boxes(text: str) -> list[Box]:
    """Boxes as a coordinator writes them: `left,top,width,height`, several separated by `;`."""
    boxes = []
    for part in filter(None, (p.strip() for p in (text or "").split(";"))):
        try:
            left, top, width, height = (int(v) for v in part.replace(" ", "").split(","))
        except ValueError:
            raise ImageRefused(N_("%(box)r is not a box: write left,top,width,height in pixels, boxes separated "
                                  "by ;"), box=part) from None
        if width <= 0 or height <= 0 or left < 0 or top < 0:
            raise ImageRefused(N_("%(box)r is not a box: left and top from 0, width and height above 0"), box=part)
        boxes.append(Box(left, top, width, height))
    if len(boxes) > MAX_BOXES:
        raise ImageRefused(N_("at most %(max)d boxes at a time"), max=MAX_BOXES)
    return boxes


def _painted(data: bytes, boxes: list[Box], content_type: str) -> bytes:
    """The image with each box filled black, in the format it was filed in (JPEG at a high quality; the
    caller re-encodes it as every image is filed)."""
    with Image.open(io.BytesIO(data)) as source:
        image = source.copy() if source.mode in ("L", "RGB", "RGBA") else source.convert(
            "RGBA" if "A" in source.getbands() else "RGB")
    draw = ImageDraw.Draw(image)
    black = 0 if image.mode == "L" else (0, 0, 0, 255)[:len(image.getbands())]
    for box in boxes:
        right, bottom = min(box.left + box.width, image.width), min(box.top + box.height, image.height)
        if box.left < image.width and box.top < image.height:
            draw.rectangle((max(box.left, 0), max(box.top, 0), right - 1, bottom - 1), fill=black)
    out = io.BytesIO()
    if content_type == "image/jpeg":
        image.convert("RGB" if image.mode != "L" else "L").save(out, "JPEG", quality=95)
    elif content_type == "image/webp":
        image.save(out, "WEBP", lossless=True)
    else:
        image.save(out, "PNG")
    return out.getvalue()


def black_out(session: Session, settings, image_id: int, actor: audit.Actor, roles, boxes: list[Box] | None = None,
              *, store: MediaStore | None = None) -> CaseImage:
    """Black out the guard's findings in an image (or `boxes`), read it again, and release it into the library
    when nothing is left (else it stays held, saying what is). Raises ImageRefused with the reason when there is
    nothing to black out. The caller commits."""
    permissions.require(roles, "held.decide")
    image = session.get(CaseImage, image_id, with_for_update=True) if 0 < image_id < 2**31 else None
    if image is None or image.status not in ("held", "stored"):
        raise ImageRefused(N_("no held or stored image %(id)d"), id=image_id)
    store = store or media_store_for(settings)
    data = store.get(image.stored_name)
    if not boxes:
        words = ocr.read_words(data)
        if words is None:
            raise ImageRefused(N_("the text in the image could not be read (tesseract): give the boxes to black "
                                  "out"))
        boxes = found_boxes(words)
        if not boxes:
            raise ImageRefused(N_("the guard finds nothing to black out in the image: give the boxes to black "
                                  "out, or release it"))
    cleaned = clean_image(_painted(data, boxes, image.content_type), max_bytes=2**62,
                          max_pixels=image.width * image.height + 1)
    old = (image.stored_name, image.thumbnail_name)
    fill_row(image, cleaned, store_files(store, cleaned), image.sha256 or "")
    guard_pixels(image, cleaned, settings)
    session.flush()
    delete_after_commit(session, store, [name for name in old if name not in (image.stored_name, image.thumbnail_name)
                                         and not file_in_use(session, name, image.id)])
    audit.record(session, "guard.black_out", f"image:{image.id}", actor, case_id=image.case_id, boxes=len(boxes),
                 released=image.status == "stored")
    log.info("image %s: %d box(es) blacked out, %s", image.id, len(boxes),
             "released into the library" if image.status == "stored" else "still held: " + image.error)
    return image

