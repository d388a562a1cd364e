"""A feed whose bytes are not in the charset it declares.

Chinese portals often declare UTF-8 (in the HTTP header, the XML declaration, or by
declaring nothing) and send GB2312/GBK. feedparser then falls back to windows-1252
and returns mojibake (``±±¾©½ñÌì...``), flagged only by a bozo warning, which used to
be stored and published as if it were text.

``read_declared`` checks the bytes against the declared charset. When they are not
valid in it, charset-normalizer is asked what they are; its answer is used only when
it is unambiguous (no other candidate about as plausible that reads the bytes as
different text), or made so by the language the feed itself declares (``<language>``,
``xml:lang``: GB18030 and Korean cp949 read 16 GB2312 characters equally well), or
when the bytes look like Western text (non-ASCII bytes alone between ASCII letters,
as in "Öko-Tex"), which is read as windows-1252, the WHATWG reading of latin-1 and
feedparser's own fallback. The body is then transcoded to UTF-8 and declared so.
Otherwise the poll fails with an ``encoding`` problem and nothing is stored.
Single-byte charsets accept every byte, so a body mislabelled as one of them cannot
be told from a correct one and is read as declared.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass

from aggregator.errors import ParseError

_DECLARATION = re.compile(rb"""^(\s*<\?xml[^>]*encoding\s*=\s*["'])([^"']+)(["'])""")
_CHARSET = re.compile(r"""charset\s*=\s*["']?([\w.:-]+)["']?""", re.I)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
#: Candidates whose "chaos" (charset-normalizer's measure of implausible text) is
#: within this of the best one compete with it; if one reads the bytes as other text,
#: the answer is ambiguous. Measured: 16 GB2312 characters read as plausibly as
#: Korean cp949 (both 0.0); a paragraph of them left big5 0.075 behind.
_AMBIGUITY_MARGIN = 0.05
_LANGUAGE = re.compile(
    rb"""<(?:dc:)?language>\s*([A-Za-z]{2})([-_][A-Za-z]{2})?|xml:lang=["']([A-Za-z]{2})([-_][A-Za-z]{2})?"""
)
#: Charsets a feed in a language is likely to be in, by the codec names Python uses.
_LANGUAGE_CHARSETS = {
    "zh": {"gb18030", "gbk", "gb2312", "big5", "big5hkscs", "cp950"},
    "ja": {"cp932", "shift_jis", "euc_jp", "euc_jis_2004", "iso2022_jp"},
    "ko": {"cp949", "euc_kr", "johab"},
}
#: Share of non-ASCII bytes that must stand alone for the body to pass as Western text.
_WESTERN_ISOLATED = 0.8
_HIGH_RUN = re.compile(rb"[\x80-\xff]+")


@dataclass(frozen=True, slots=True)
class Decoded:
    """The body to parse, its headers, and what was repaired (None: nothing)."""

    body: bytes
    headers: Mapping[str, str]
    repair: str | None = None


def declared_charset(body: bytes, headers: Mapping[str, str]) -> str:
    """The charset a feed says it is in, as an XML processor reads it (RFC 7303):
    the HTTP charset, else a byte order mark, else the XML declaration, else UTF-8."""
    found = _CHARSET.search(headers.get("content-type", "").partition(";")[2])
    if found:
        return found.group(1).lower()
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name
    declared = _DECLARATION.match(body[:512])
    if declared:
        return declared.group(2).decode("ascii", "replace").lower()
    return "utf-8"


def read_declared(source_id: str, url: str, body: bytes, headers: Mapping[str, str]) -> Decoded:
    """``body`` as is when it is valid in its declared charset; else transcoded to
    UTF-8 when its real charset is clear; else ``ParseError`` of kind ``encoding``."""
    declared = declared_charset(body, headers)
    try:
        codec = codecs.lookup(declared).name
    except LookupError:
        return Decoded(body, headers)  # feedparser reports an unknown charset itself
    try:
        body.decode(codec)
    except UnicodeDecodeError as exc:
        problem = f"byte 0x{body[exc.start]:02x} at offset {exc.start}"
    else:
        return Decoded(body, headers)
    actual, text = _detect(body, exclude=codec, language=_language(body))
    if text is None and _looks_western(body):
        actual, text = "windows-1252", body.decode("cp1252", "replace")
    if actual is None or text is None:
        raise ParseError(
            source_id, url,
            f"the body is not valid {declared} as declared ({problem}) and its real "
            f"charset is unclear{f' ({actual})' if actual else ''}; nothing was stored",
            kind="encoding",
        )  # fmt: skip
    utf8 = text.encode("utf-8")
    if utf8.startswith(codecs.BOM_UTF8):
        utf8 = utf8[len(codecs.BOM_UTF8) :]
    utf8 = _DECLARATION.sub(rb"\g<1>utf-8\g<3>", utf8, count=1)
    fixed = {k: v for k, v in headers.items() if k != "content-type"}
    media = headers.get("content-type", "").partition(";")[0].strip() or "application/xml"
    fixed["content-type"] = f"{media}; charset=utf-8"
    return Decoded(utf8, fixed, repair=f"declared {declared} ({problem}); read as {actual}")


def _detect(body: bytes, *, exclude: str, language: str | None) -> tuple[str | None, str | None]:
    """(charset, text) when charset-normalizer's answer is unambiguous, or made so by
    the feed's language; (the competing charsets, None) when it is not; (None, None)
    when it has no answer."""
    from charset_normalizer import from_bytes

    matches = [m for m in from_bytes(body) if codecs.lookup(m.encoding).name != exclude]
    if not matches:
        return None, None
    best = min(matches, key=lambda m: m.chaos)
    plausible = [m for m in matches if m.chaos <= best.chaos + _AMBIGUITY_MARGIN]
    if len({str(m) for m in plausible}) == 1:
        return best.encoding, str(best)
    likely = _LANGUAGE_CHARSETS.get(language or "", set())
    fitting = [
        m for m in plausible if likely & {codecs.lookup(c).name for c in m.could_be_from_charset}
    ]
    if len({str(m) for m in fitting}) == 1:
        return fitting[0].encoding, str(fitting[0])
    return " or ".join(m.encoding for m in plausible[:3]), None


def _language(body: bytes) -> str | None:
    """The language the document declares for itself (two letters), if it does."""
    found = _LANGUAGE.search(body[:4096])
    if found is None:
        return None
    return (found.group(1) or found.group(3)).decode("ascii").lower()


def _looks_western(body: bytes) -> bool:
    """Whether the non-ASCII bytes mostly stand alone, as accented letters in Latin
    text do; a multi-byte charset puts them in runs of two or more."""
    runs = [len(run) for run in _HIGH_RUN.findall(body)]
    return bool(runs) and runs.count(1) >= _WESTERN_ISOLATED * len(runs)
