"""The new text a person wrote in an email reply: without the quoted history and without the signature.

Replies to case notices are relayed to colleagues by SMS and email, so what the mail client appended
(the quoted thread, "On … wrote:" / Outlook header blocks, "Sent from my iPhone", "-- " signatures)
must not travel with them. A single "On … wrote:" regex is not enough (PROTOCOLS.md §10 item 10):
Outlook puts an unquoted "From: … Sent: … To: … Subject: …" block above the history, clients
localise the attribution line, and some people bottom-post or answer inline between quoted lines.

The splitting is mail-parser-reply's (`EmailMessage.read()` with every language it supports). What it
misses is added here, each with its reason next to it (look for "EXTENSION"). The steps:

1. No text part: text is taken from the HTML part, with quote containers dropped (`html_to_text`).
2. Text is normalised (line endings, invisible characters, no-break spaces). The library searches a
   detection copy, line for line with the text: lines stripped (as the library does), lines that cannot
   be part of a header blanked, long lines shortened. The author's lines are returned as they were.
3. mail-parser-reply splits the text at every reply header it recognises (its patterns for all its
   languages, plus ours). The part before the first header is the author's (top posting). A part that
   starts with a header and whose body begins with ">" lines is a quote the author may have answered
   below or between (bottom posting, inline answers): its unquoted lines are the author's. A part whose
   body is unquoted text (Outlook) is history, and so is everything after it.
4. Quoted (">") lines are dropped; a dropped block between two kept lines becomes one blank line.
5. The signature is cut: "-- " delimiter, "Sent from my …"-style mobile lines, a closing
   ("Best regards,", "Thanks,") followed by a short block, a confidentiality footer, a "-Kim" sign-off.
6. Nothing is ever lost entirely: if the signature rule would leave nothing, the text before it is
   kept with its signature; if no line is the author's, the whole (trimmed) text is returned.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

from mailparser_reply import EmailMessage
from mailparser_reply.constants import MAIL_LANGUAGES

__all__ = ["visible_text", "html_to_text"]

#: Every language mail-parser-reply ships patterns for ("david" is a mail program's header format).
LANGUAGES = tuple(MAIL_LANGUAGES)

_QUOTE_PREFIX = r"(?:> ?)*"


# --------------------------------------------------------------------------------------------------
# Reply headers: the library's patterns plus EXTENSIONS.
# --------------------------------------------------------------------------------------------------

# The part of a localized "wrote" verb that ends an attribution line (used by the wrapped-line rule).
_WROTE_VERBS = (r"wrote|a [ée]crit|escribi[óo]|schrieb(?: [^\n]{0,80})?|написал\(а\)|написала?|пишет"
                r"|(?:님이 )?작성(?:하였습니다|했습니다)?|写道|寫道|の?メッセージ|のメール|書きました|ha scritto"
                r"|schreef|skrev|napisał\(a\)|napsal\(a\)")

_ORIGINAL_MESSAGE_WORDS = (
    r"Original Message|Forwarded message|Ursprüngliche Nachricht|Weitergeleitete Nachricht"
    r"|Message d'origine|Message transféré|Mensaje original|Mensaje reenviado|Исходное сообщение"
    r"|Пересылаемое сообщение|원본 메시지|전달된 메시지|元のメッセージ|転送されたメッセージ|原始邮件|原始郵件"
    r"|Messaggio originale|Oorspronkelijk bericht|Wiadomość oryginalna"
    r"|Původní zpráva|Ursprungligt meddelande|Oprindelig meddelelse")

_EXTENSION_HEADERS = [
    # EXTENSION (ko): Gmail writes "…님이 작성:" and iOS "… 작성:"; the library knows only "님이 작성하였습니다:",
    # and its ko pattern is preceded by a negative lookahead of itself, so it never matches.
    r"(?=[^\n]*\d)[^\n]*(?:님이 )?작성(?:하였습니다|했습니다)?\s?[:：]",
    # EXTENSION (zh): "Kim <…> 于2020年3月3日周二 上午9:00写道：" (name first) and zh-TW "於 … 寫道："; the
    # library's zh pattern also negates itself (never matches) and wants the line to start with the date.
    r"(?=[^\n]*\d)[^\n]*(?:写道|寫道)\s?[:：]",
    # EXTENSION (ja): Apple Mail/Outlook "2020/03/03 9:00、Kim <…>のメッセージ:" / "…のメール:" / "…は書きました:";
    # the library only knows Gmail's "2020年3月3日(火) 9:00 Kim <…>:".
    r"(?=[^\n]*\d)[^\n]*(?:の?メッセージ|のメール|(?:さん)?は?書きました)\s?[:：]",
    # EXTENSION (es): "El … escribió:", also wrapped before the verb; the library's es pattern negates
    # itself and so never matches.
    r"El\s[^\n]+(?:\n[^\n]+)?\sescribi[óo]\s?:",
    # EXTENSION (fr): "Le …\na écrit :" wrapped before the verb (the library's fr pattern is one line).
    r"Le\s[^\n]+\na [ée]crit\s?:",
    # EXTENSION (ru): no Russian in the library: Thunderbird "… пишет:", Apple/Outlook "… написал(а):".
    r"(?=[^\n]*\d)[^\n]*(?:пишет|написал\(а\)|написал\(a\)|написала?)\s?:",
    # EXTENSION (any language): Gmail in ja/ru/pl/… and mail.ru/Yandex end the attribution with just the
    # address: "вт, 3 мар. 2020 г. в 09:00, Ким <kim@…>:" — a time, an <address>, a final colon.
    r"(?=[^\n]*\d{1,2}:\d{2})[^\n]*<[^<>\s@]+@[^<>\s]+>\)?\s?[:：]",
    # EXTENSION (any language): Gmail hard-wraps a long attribution so that the verb starts the next
    # line ("On … Kim Lee <kim@…>\nwrote:"); the first line must carry a time, year or address.
    r"(?=[^\n]*(?:\d{1,2}:\d{2}|\d{4}|<[^<>\n]*@[^<>\n]*>))[^\n]*\n(?:" + _WROTE_VERBS + r")\s?[:：]",
    # EXTENSION (Outlook, ru/ja/zh-TW/full-width colon): header blocks the library has no words for.
    r"(?:(?:^|\n)" + _QUOTE_PREFIX + r"[* ]*(?:От|Отправлено|Кому|Тема|Дата|Копия|差出人|送信日時|宛先|件名|CC"
    r"|寄件者|寄件日期|收件者|主旨|副本|发件人|发送时间|收件人|主题|抄送|日期)\s?[:：][ *]*[^\n]*){2,}",
    # EXTENSION (Outlook/Hotmail/OWA): the underscore line above the header block. The library only
    # treats it as a signature, after a blank line; a reply typed right above it keeps it otherwise.
    r"_{20,}",
    # EXTENSION: localized "-----Original Message-----" (Outlook de/fr/es/ru/ko/ja, Foxmail/QQ
    # "------------------ 原始邮件 ------------------") and Gmail's "---------- Forwarded message ---------".
    r"-{3,} ?(?:" + _ORIGINAL_MESSAGE_WORDS + r") ?-{3,}",
    # EXTENSION: Apple Mail forwards ("Begin forwarded message:") carry history, not the author's text.
    r"(?:Begin forwarded message|Anfang der weitergeleiteten Nachricht|Début du message réexpédié"
    r"|Inicio del mensaje reenviado)\s?:",
]


def _uncapture(pattern: str) -> str:
    """`pattern` with every capturing group made non-capturing (character classes left alone)."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern[i + 1:i + 2] == "]":  # "[]...]" — a literal "]" first in the class
                out.append("[]")
                i += 2
                continue
        elif ch == "(" and pattern[i + 1:i + 2] != "?":
            out.append("(?:")
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


class _Message(EmailMessage):
    """mail-parser-reply's EmailMessage with a header regex that it can split on correctly."""

    _combined: re.Pattern | None = None

    @property
    def HEADER_REGEX(self) -> re.Pattern:  # noqa: N802 — the library's name
        cls = type(self)
        if cls._combined is None:
            library = super().HEADER_REGEX.pattern
            # EXTENSION: the pl Outlook pattern accepts a single "Do:"/"Data:"/"Temat:" line as a whole
            # header block, so an author's line "Do: repeat CT" would cut the reply; ask for two lines.
            pl = MAIL_LANGUAGES.get("pl", {}).get("from_header")
            if pl:
                library = library.replace(pl, pl.replace("){1,}", "){2,}"))
            # EXTENSION: read() splits at every non-empty group of every match, so a pattern with an
            # inner group (fr "Le\s(.+?)a écrit") splits again inside its own header; one group each.
            alternatives = [_uncapture(p) for p in _split_alternatives(library)]
            alternatives += [r"^" + _QUOTE_PREFIX + p + r"$" for p in _EXTENSION_HEADERS]
            cls._combined = re.compile("|".join(f"({p})" for p in alternatives),
                                       flags=re.MULTILINE | re.IGNORECASE)
        return cls._combined

    def _process_signatures_disclaimers(self, text: str) -> tuple[list[str], str]:
        # Signatures and disclaimers are found by _signature_start, on the author's lines only: the
        # library's SIGNATURE_REGEX also matches inside quotes and would take a bottom-posted answer.
        return [], ""


def _split_alternatives(pattern: str) -> list[str]:
    """The top-level `|` alternatives of `pattern` (the library joins one pattern per language)."""
    parts, depth, start, i, in_class = [], 0, 0, 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern[i + 1:i + 2] == "]":
                i += 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return [p for p in parts if p]


# --------------------------------------------------------------------------------------------------
# Signatures: the library's word lists, with line-shape guards (EXTENSIONS).
# --------------------------------------------------------------------------------------------------

def _library_list(key: str) -> list[str]:
    words: list[str] = []
    for spec in MAIL_LANGUAGES.values():
        value = spec.get(key)
        if isinstance(value, str):
            value = [value] if value else []
        words += [w for w in (value or []) if w]
    return words


# EXTENSION: the library's SIGNATURE_REGEX treats a closing word as a prefix anywhere after line one and
# cuts to the end ("Tak"/"Kh" from da match "Take a look…"/"Khan…"), and with hyphen lists kept it loses
# "-Kim". The same words are used here only when the line is the closing alone, or with a short name.
_CLOSINGS = _library_list("signatures") + [
    # EXTENSION: closings the lists lack (no comma in "Thanks"/"Regards" on phones; no ru list).
    r"Thanks", r"Thank you", r"Many thanks", r"Cheers", r"Regards", r"Warm regards", r"Best wishes",
    r"Best", r"Kind regards", r"Sincerely", r"С уважением", r"Спасибо", r"よろしくお願いします",
    r"よろしくお願いいたします", r"Saludos", r"Merci", r"Bien à vous", r"Viele Grüße",
]
_CLOSING_RE = re.compile(
    r"^" + _QUOTE_PREFIX + r"(?:" + "|".join(_CLOSINGS) + r")(?:(?<=[,.!:;])|\b)"
    r"[ \t,.!:;。、！]*(?P<rest>[^\n]*)$", flags=re.IGNORECASE)
_TITLES = frozenset({"dr", "dr.", "prof", "prof.", "md", "phd"})


def _looks_like_name(text: str) -> bool:
    """"", "Kim", "Dr. Jiwon Kim", "JW", "Алексей", "김지원": up to three capitalised (or uncased,
    short) words — not "will book the CT"."""
    tokens = text.strip(" \t-–—.!").replace(",", " ").split()
    if len(tokens) > 3:
        return False
    for token in tokens:
        first = token[0]
        if token.lower() in _TITLES or first.isupper():
            continue
        if not first.islower() and token.isalpha() and len(token) <= 4:  # CJK names have no case
            continue
        return False
    return True

_SENT_FROM_RE = re.compile(
    r"^(?:" + "|".join(_library_list("sent_from")) + "|"
    # EXTENSION: mobile/webmail lines the library lacks ("Sent from Outlook", "Sent from Yahoo Mail for
    # iPhone", "Sent via …", Samsung/Huawei phrasings, and ja/zh-TW/ru/de/fr/es/pt/it device lines).
    r"Sent from\s|Sent via\s|Sent with\s|Sent using\s|Sent on the go|Envoy[ée] de mon\s|Envoy[ée] depuis"
    r"|Enviado desde\s|Enviado do meu\s|Enviado a partir|Von meinem .{1,40} gesendet|Gesendet von|Gesendet mit"
    r"|Inviato da|Отправлено с\s|Отправлено из\s|Отправлено с помощью|Download Outlook for|Get Outlook for"
    r"|Holen Sie sich Outlook|Obtenir Outlook|Obtener Outlook|[^\n]{1,30}から送信$|[^\n]{0,10}发自我的"
    r"|[^\n]{0,10}發自我的|從我的 ?.{1,30}傳送|从我的 ?.{1,30}发送|내 .{1,30}에서 보냄"
    r")", flags=re.IGNORECASE)
_URL_IN_ANGLES = re.compile(r"<(?:https?://|mailto:)[^>]*>|\(?https?://\S+\)?")

_DISCLAIMER_START = re.compile(
    r"^[\[*\s]*(?:" + "|".join(_library_list("disclaimers")) + "|"
    # EXTENSION: hospital footers start "CONFIDENTIALITY NOTICE:" or "This e-mail … is confidential / intended …".
    r"CONFIDENTIALITY NOTICE|Confidentiality notice|PRIVILEGED AND CONFIDENTIAL|NOTICE:"
    r"|This (?:e-?mail|message|communication)\b[^\n]{0,80}\b(?:confidential|intended|privileged))",
    flags=re.IGNORECASE)
_DISCLAIMER_BODY = re.compile(r"intended (?:recipient|solely|only)|addressee|confidential|privileged"
                              r"|originated (?:from )?outside|Empfänger|destinataire|destinatario"
                              r"|수신인|受信者|收件人|адресат", re.IGNORECASE)

# "-- " (RFC 3676 §4.3; most clients drop the space), "__", and a rule of dashes ("——————", zh/ja).
_DELIMITER_RE = re.compile(r"^(?:--|__|[—–―]{2,})[ \t]*$")
# EXTENSION: a last line "-Kim", "— JW", "- Dr Lee" signs off (the library's "- ?\w" rule also eats
# hyphen lists, so it is switched off with keep_hyphen_lists and this narrower rule used instead).
_SIGN_OFF_RE = re.compile(r"^[-–—~]\s?(?P<rest>[^\W\d_][^\n]{0,40})$")

_MAX_SIGNATURE_LINES = 8


def _signature_start(lines: list[str]) -> int | None:
    """Index of the first signature line in the author's `lines` (stripped), or None."""
    content = [i for i, line in enumerate(lines) if line]
    if not content:
        return None
    for i in content:
        line = lines[i]
        if _DELIMITER_RE.match(line):
            return i
        bare = _URL_IN_ANGLES.sub("", line).strip()
        if _SENT_FROM_RE.match(bare) and len(bare) <= 60 and "," not in bare:
            return i
        later = [j for j in content if j > i]
        closing = _CLOSING_RE.match(line)
        if (i != content[0] and len(later) < _MAX_SIGNATURE_LINES and closing
                and _looks_like_name(closing["rest"])):
            return i
        if i != content[0] and _DISCLAIMER_START.match(line) and _DISCLAIMER_BODY.search(
                " ".join(lines[i:])):
            return i
    last = content[-1]
    sign_off = _SIGN_OFF_RE.match(lines[last])
    if (len(content) > 1 and sign_off and _looks_like_name(sign_off["rest"])
            and not re.match(r"^[-–—*•]", lines[content[-2]])):
        return last
    return None


# --------------------------------------------------------------------------------------------------
# Text normalisation and the split.
# --------------------------------------------------------------------------------------------------

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u200e\u200f\u00ad"), None)
# EXTENSION: Gmail puts U+202F before "AM"/"PM" and French clients a no-break space before ":"; the
# library's patterns expect plain spaces ("a écrit :", "9:00 AM").
_SPACES = dict.fromkeys(map(ord, "\u00a0\u202f\u2007\u2009"), " ")
# The library deletes a long "____"/"----" line after a blank line (shifting line numbers); shortening
# such runs in the detection copy keeps its lines one-to-one with ours.
_LONG_RULE = re.compile(r"^([_-]{31})[_-]+")
# Some library patterns ("On\s(?:.+?\s?.+?)\s?wrote:") take time quadratic in the line length: a
# 7,000-character paragraph starting with "On" costs seconds. No header line is that long, so the
# detection copy keeps the start and end of long lines only.
_MAX_DETECT_LINE = 300
_COLONS = (":", "\uff1a")


def _detection_copy(stripped: list[str]) -> str:
    """The text the library searches for headers, line for line with `stripped`. Every header pattern
    ends in a colon or is a rule line ("-----Original Message-----", "____"), possibly wrapped after a
    line without a colon; other lines are blanked so the search stays fast on long histories."""
    out = []
    for n, line in enumerate(stripped):
        following = stripped[n + 1] if n + 1 < len(stripped) else ""
        bare = line.lstrip("> ")
        if line and not (any(c in line for c in _COLONS) or bare[:1] in ("-", "_")
                         or any(c in following for c in _COLONS)):
            out.append(".")  # not empty: read() drops empty parts, and so would lose the top text
            continue
        if len(line) > _MAX_DETECT_LINE:
            half = _MAX_DETECT_LINE // 2
            line = line[:half] + line[-half:]
        out.append(_LONG_RULE.sub(r"\1", line))
    return "\n".join(out)


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.translate(_INVISIBLE).translate(_SPACES)


def _is_quoted(stripped_line: str) -> bool:
    return stripped_line.startswith(">")


_GAP = object()  # where a quoted block was dropped


def _segments(lines: list[str]) -> list[tuple[int, int, int]] | None:
    """(first line, first body line, end line) of each part mail-parser-reply splits the text into."""
    detect = _detection_copy([line.strip() for line in lines])
    message = _Message(text=detect, languages=list(LANGUAGES), keep_hyphen_lists=True)
    if message.text != detect:  # the library normalised differently: line numbers would not match
        return None
    message.read()
    segments, cursor = [], 0
    for reply in message.replies:
        start = detect.find(reply.content, cursor) if reply.content else cursor
        if start < 0:
            return None
        end = start + len(reply.content)
        cursor = end
        first = detect.count("\n", 0, start)
        body = first
        if reply.headers and reply.content.startswith(reply.headers):
            body = first + reply.headers.count("\n") + 1
        segments.append((first, body, detect.count("\n", 0, end) + 1))
    return segments


def _author_lines(lines: list[str]) -> list:
    stripped = [line.strip() for line in lines]
    segments = _segments(lines)
    if segments is None:
        segments = [(0, 0, len(lines))]
    kept: list = []

    def keep_unquoted(begin: int, end: int) -> None:
        for i in range(begin, end):
            if _is_quoted(stripped[i]):
                if not kept or kept[-1] is not _GAP:
                    kept.append(_GAP)
            else:
                kept.append(i)

    for n, (first, body, end) in enumerate(segments):
        if n == 0 and body == first:  # text before the first header: the author's (top posting)
            keep_unquoted(first, end)
            continue
        opening = next((stripped[i] for i in range(body, end) if stripped[i]), "")
        if not opening:
            continue  # a header right above another ("-----Original Message-----" over "From: …")
        if not _is_quoted(opening):
            break  # unquoted history under a header (Outlook): it and all after it are not the author's
        # A quote under its header: the author's lines are those after or between quoted lines.
        if kept and kept[-1] is not _GAP:
            kept.append(_GAP)
        keep_unquoted(body, end)
    return kept


def _render(lines: list[str], kept: list) -> str:
    out: list[str] = []
    pending_gap = False
    for item in kept:
        if item is _GAP:
            pending_gap = True
            continue
        line = lines[item].rstrip()
        if pending_gap:
            while out and not out[-1].strip():
                out.pop()
            if out and line.strip():
                out.append("")
            if not line.strip():
                continue
            pending_gap = False
        out.append(line)
    return "\n".join(out).strip()


def _once(text: str) -> str:
    text = _normalise(text)
    if not text.strip():
        return ""
    lines = text.split("\n")
    kept = _author_lines(lines)
    indices = [i for i in kept if i is not _GAP]
    if not any(lines[i].strip() for i in indices):
        return text.strip()  # everything looks quoted: never return nothing
    cut = _signature_start([lines[i].strip() for i in indices])
    if cut is not None:
        unsigned = _render(lines, kept[:kept.index(indices[cut])])
        if unsigned:
            return unsigned
    return _render(lines, kept)


def visible_text(text: str, html: str = "") -> str:
    """The text the sender wrote in this reply: no quoted history, no signature, trimmed, line breaks
    kept. `html` is used only when `text` is empty. Never empty when the sender wrote something."""
    if not (text or "").strip():
        text = html_to_text(html or "")
    result = _once(text)
    # A second pass finds what the first exposed (a "-Kim" that stood above a "-- " signature); two
    # passes more at most, so visible_text(visible_text(x)) == visible_text(x).
    for _ in range(3):
        again = _once(result)
        if again == result:
            break
        result = again
    return result


# --------------------------------------------------------------------------------------------------
# HTML part
# --------------------------------------------------------------------------------------------------

# Containers whose whole subtree is quoted history or signature.
_DROP_MARKERS = ("gmail_quote", "gmail_attr", "yahoo_quoted", "protonmail_quote", "moz-cite-prefix",
                 "gmail_signature", "moz-signature", "applemailsignature")
# Containers after which everything is history: Outlook puts the header block in divRplyFwdMsg (OWA,
# often with an "x_" prefix), "OriginalMessage"/"OutlookMessageHeader" (older Outlook and mobile),
# "appendonsend" and the reference-message container (new Outlook), and the history as their siblings.
_CUT_MARKERS = ("divrplyfwdmsg", "originalmessage", "outlookmessageheader", "appendonsend",
                "mail-editor-reference-message-container", "ms-outlook-mobile-reference-message",
                "olk_src_body_section",  # Outlook for Mac
                "stopspelling",  # Hotmail/Outlook.com: <hr id="stopSpelling"> above the header lines
                "zwchr")  # Zimbra: <hr id="zwchr"> above the header lines
# Outlook desktop has no id: its header block sits in a div with a thin top border of these colours.
_OUTLOOK_BORDER = re.compile(r"border-top:\s*solid\s+#(?:e1e1e1|b5c4df)", re.IGNORECASE)

_BLOCK_TAGS = frozenset("p div li ul ol tr table tbody thead h1 h2 h3 h4 h5 h6 blockquote pre hr dl dt dd "
                        "section article header footer address center form fieldset".split())
_SKIP_TAGS = frozenset("script style head title template noscript xml".split())
_VOID_TAGS = frozenset("br img hr meta link input area base col embed source track wbr".split())


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = [""]
        self.skip_tag: str | None = None
        self.skip_depth = 0
        self.stopped = False

    def _newline(self, force: bool = False) -> None:
        if force or self.lines[-1].strip():
            self.lines.append("")

    @staticmethod
    def _marker(attrs: list[tuple[str, str | None]], markers: tuple[str, ...]) -> bool:
        for name, value in attrs:
            if name in ("id", "class", "name") and value:
                tokens = value.lower().split()
                if any(marker in token for token in tokens for marker in markers):
                    return True
                if name == "id" and value.lower().removeprefix("x_") in ("signature", "signature_container"):
                    return True
        return False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.stopped:
            return
        if self.skip_tag is not None:
            if tag == self.skip_tag:
                self.skip_depth += 1
            return
        style = next((v for k, v in attrs if k == "style" and v), "")
        if self._marker(attrs, _CUT_MARKERS) or (tag == "div" and _OUTLOOK_BORDER.search(style)):
            self.stopped = True
            return
        if tag not in _VOID_TAGS and (tag in _SKIP_TAGS or tag == "blockquote"
                                      or self._marker(attrs, _DROP_MARKERS)):
            self.skip_tag, self.skip_depth = tag, 1
            if tag in _BLOCK_TAGS:
                self._newline()
            return
        if tag == "br":
            self._newline(force=True)
        elif tag in _BLOCK_TAGS:
            self._newline()
            if tag == "li":
                self.lines[-1] = "- "

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.stopped:
            return
        if self.skip_tag is not None:
            if tag == self.skip_tag:
                self.skip_depth -= 1
                if self.skip_depth == 0:
                    self.skip_tag = None
                    if tag in _BLOCK_TAGS:
                        self._newline()
            return
        if tag in _BLOCK_TAGS:
            self._newline()

    def handle_data(self, data: str) -> None:
        if self.stopped or self.skip_tag is not None:
            return
        self.lines[-1] += re.sub(r"[ \t\r\n\f]+", " ", data)


def html_to_text(html: str) -> str:
    """Plain text of an HTML mail body with its quote, signature and history containers dropped."""
    if not html.strip():
        return ""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.translate(_SPACES).strip() for line in parser.lines]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()
