"""Decoding stored webhook bodies (form-urlencoded or multipart/form-data) without a web framework,
keeping each field's bytes so a provider's declared charsets can be honoured (SendGrid `charsets`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from urllib.parse import parse_qsl


class BadForm(ValueError):
    """The body is not the form its Content-Type says."""


@dataclass(frozen=True)
class FormPart:
    name: str
    data: bytes = field(repr=False)
    filename: str | None = None
    content_type: str = "text/plain"
    charset: str | None = None

    def text(self, charset: str | None = None) -> str:
        """The field as text, in the given charset (else its own, else UTF-8); never raises."""
        for candidate in (charset, self.charset, "utf-8"):
            if not candidate:
                continue
            try:
                return self.data.decode(candidate)
            except (LookupError, UnicodeError):
                continue
        return self.data.decode("utf-8", "replace")


def parse_form(content_type: str, body: bytes) -> list[FormPart]:
    """Every field of a form body, in order (files included, with their filename)."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    if mimetype == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
        except ValueError as exc:
            raise BadForm(f"malformed form body: {exc}") from None
        return [FormPart(name.encode("latin-1").decode("utf-8", "replace"), value.encode("latin-1"))
                for name, value in pairs]
    if mimetype == "multipart/form-data":
        if "boundary=" not in content_type:
            raise BadForm("multipart/form-data without a boundary")
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
        try:
            return _multipart_parts(BytesParser(policy=policy.HTTP).parsebytes(head + body))
        except (RecursionError, UnicodeError, LookupError) as exc:  # hostile part headers
            raise BadForm(f"unparseable form: {type(exc).__name__}") from None
    raise BadForm(f"expected a form, got Content-Type {mimetype or 'none'!r}")


def _multipart_parts(message) -> list[FormPart]:
    if not message.is_multipart():
        raise BadForm("multipart/form-data body has no parts")
    parts = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        payload = part.get_payload(decode=True) or b""
        parts.append(FormPart(str(name), payload, part.get_filename(), part.get_content_type(),
                              part.get_content_charset()))
    return parts


def fields_of(parts: list[FormPart], charsets: dict[str, str] | None = None) -> dict[str, str]:
    """Non-file fields as text (first value of a repeated name), decoded with `charsets` per field."""
    fields: dict[str, str] = {}
    for part in parts:
        if part.filename is None and part.name not in fields:
            fields[part.name] = part.text((charsets or {}).get(part.name))
    return fields
