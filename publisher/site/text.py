"""The template filters: escaping untrusted text for each medium, and numbers for people.

Every value a template prints goes through one of these filters: the template
environment refuses anything else (see :mod:`publisher.site.render`). Each returns
:class:`Escaped` text, which the environment can mark when it traces where text comes
from (the test that finds every sentence of the site in a template).

Text from a package is untrusted: a title containing ``<script>``, ``|`` or ``[x](y)``
must show as exactly that text and break nothing, whether it lands in Markdown
(:func:`md`), in raw HTML or SVG (:func:`html`), in a page title the theme prints raw
(:func:`plain`), or in BibTeX (:func:`bibtex`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from markupsafe import Markup

__all__ = [
    "FILTERS",
    "Escaped",
    "bibtex",
    "html",
    "md",
    "one_line",
    "percents",
    "plain",
]

SAFE_URL = re.compile(r"^https://[^\s<>()\[\]\"'`\\|]+$")
_SAFE_CODE = re.compile(r"^[A-Za-z0-9_.\-/]+$")
# Month names spelled out here: strftime("%B") would follow the locale.
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


class Escaped(Markup):
    """Text a filter made safe for its medium: the only kind a template may print."""

    __slots__ = ()


# Characters that are Markdown or HTML syntax anywhere in a line. Backslash escapes are
# understood by Python-Markdown (``|`` by the tables extension); ``~`` and ``^`` become
# entities because their meaning depends on extensions we might enable later.
_INLINE_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        "`": "\\`",
        "*": "\\*",
        "_": "\\_",
        "{": "\\{",
        "}": "\\}",
        "[": "\\[",
        "]": "\\]",
        "#": "\\#",
        "|": "\\|",
        "!": "\\!",
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        "~": "&#126;",
        "^": "&#94;",
    }
)
# Characters that start a block (list, definition, details, setext) at the start of a line.
_LINE_START = {"-": "&#45;", "+": "&#43;", ":": "&#58;", "?": "&#63;", "=": "&#61;"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# HTML escapes plus entities for what means something to Markdown or its extensions, so
# that text placed in raw HTML (tables, charts) stays inert even if a Markdown parser ever
# saw it. One pass: escaping twice would turn "&#91;" into "&amp;#91;".
_HTML_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "'": "&#39;",
        **{character: f"&#{ord(character)};" for character in "[]{}*_`\\|~^!"},
    }
)

# BibTeX's special characters, so metadata text is text in a citation manager too.
_BIBTEX_ESCAPES = str.maketrans(
    {
        "\\": r"\textbackslash{}",
        "{": r"\{",
        "}": r"\}",
        "%": r"\%",
        "&": r"\&",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
)


def one_line(text: str) -> str:
    """Collapse all whitespace (newlines would end a table row or a heading)."""
    return " ".join(_CONTROL.sub("", text).split())


def md(text: object) -> str:
    """Escape text so that Markdown renders exactly that text, on one line."""
    line = one_line(str(text)).translate(_INLINE_ESCAPES)
    if line[:1] in _LINE_START:
        line = _LINE_START[line[0]] + line[1:]
    # "1. x" at the start of a line would become an ordered list.
    return re.sub(r"^(\d+)\.(?=\s|$)", r"\1\\.", line)


def md_paragraphs(text: str) -> list[str]:
    """Escape multi-paragraph text: one escaped line per paragraph."""
    return [md(paragraph) for paragraph in re.split(r"\n\s*\n", text) if paragraph.strip()]


def html(text: object) -> str:
    """Escape text for raw HTML or SVG (element text and quoted attributes)."""
    return one_line(str(text)).translate(_HTML_ESCAPES)


def plain(text: str) -> str:
    """Text safe to place raw into HTML by a theme template (page titles, site name, nav).

    MkDocs templates do not autoescape, and Material unescapes titles with ``striptags``,
    so an escaped entity could come back as markup: drop the markup characters instead.
    """
    line = one_line(text).replace("&", "and").replace("'", "\u2019").replace('"', "\u201d")
    return line.replace("<", "").replace(">", "").strip() or "Untitled"


def front_title(text: str) -> str:
    """A page title for YAML front matter: plain text, quoted as JSON (valid YAML)."""
    return json.dumps(plain(text), ensure_ascii=False)


def code(name: str) -> str:
    """A column or file name as inline code when that is safe, else as escaped text."""
    return f"`{name}`" if _SAFE_CODE.match(name) else md(name)


def path(text: str) -> str:
    """A path or name the package or the site already checked (letters, digits, '-',
    '_', '.', '/'), printed as it is, in a link or an attribute."""
    if not _SAFE_CODE.fullmatch(text) and text:
        raise ValueError(f"not a plain path: {text!r}")
    return text


def link(text: str, url: str) -> str:
    """A link to an external https URL from metadata, or plain text if the URL is odd."""
    return f"[{md(text)}]({url})" if SAFE_URL.match(url) else md(text)


_PLAIN_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")


def mailto(name: str, email: str) -> str:
    """A name linked to an email address (a mailto: link), when the address is plain."""
    if _PLAIN_EMAIL.match(email):
        return f"[{md(name or email)}](mailto:{email})"
    return f"{md(name)} ({md(email)})" if name else md(email)


def safe_url(url: str) -> str:
    """An https URL from metadata as it is, or "" when it could carry markup."""
    return url if SAFE_URL.match(url) else ""


def bibtex(text: str) -> str:
    """Escape text for a BibTeX field."""
    return one_line(text).translate(_BIBTEX_ESCAPES)


def count(text: str) -> str:
    """A published count with thousands separators ("4195" -> "4,195"), else escaped."""
    return f"{int(text):,}" if re.fullmatch(r"-?\d+", text) else md(text)


def html_count(text: str) -> str:
    """A count for raw HTML: with thousands separators, or escaped as it is."""
    return f"{int(text):,}" if re.fullmatch(r"-?\d+", text) else html(text)


def whole(number: int) -> str:
    """A whole number with thousands separators."""
    return f"{number:,}"


def loss(value: float | None) -> str:
    """A privacy parameter as published (never recomputed), e.g. 0.1667 or 10⁻⁷."""
    if value is None:
        return "not stated"
    if value != 0 and abs(value) < 1e-3:
        mantissa, exponent = f"{value:.3e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        superscript = str(int(exponent)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
        return (
            f"10{superscript}"
            if mantissa == "1"
            else f"{mantissa} \N{MULTIPLICATION SIGN} 10{superscript}"
        )
    if abs(value) >= 1e6:  # a noise scale in a strategy's integer units: 5,165,210
        return f"{value:,.0f}"
    return f"{value:g}"


def day(text: str) -> str:
    """An ISO date as people write it (25 November 2026), independent of the locale."""
    try:
        parsed = date.fromisoformat(text[:10])
    except ValueError:
        return md(text)
    return f"{parsed.day} {_MONTHS[parsed.month - 1]} {parsed.year}"


def size(number: int) -> str:
    """A file size as people read it (4 KB); the Downloads page also gives the bytes."""
    if number < 1024:
        return f"{number} bytes"
    if number < 1024 * 1024:
        return f"{round(number / 1024)} KB"
    return f"{number / (1024 * 1024):.1f} MB"


def coordinate(value: float) -> str:
    """An SVG coordinate, to a tenth of a pixel (byte-stable, and small)."""
    return f"{value:.1f}"


def pixels(value: float) -> str:
    """An SVG size in whole pixels."""
    return f"{value:.0f}"


def _decimal(value: float) -> Decimal:
    # repr gives the shortest decimal that round-trips, so 0.29 is 0.29, not 0.28999...
    return Decimal(repr(value))


def percents(estimate: float, lower: float, upper: float) -> tuple[str, str, str]:
    """A share and its interval as percentages, with precision matched to the width.

    The interval is widened outwards to the shown precision, so what we print always
    contains the published interval.
    """
    width = (_decimal(upper) - _decimal(lower)) * 100
    decimals = 0 if width >= 2 else 1 if width >= Decimal("0.2") else 2
    step = Decimal(1).scaleb(-decimals)

    def percent(value: float, rounding: str) -> str:
        return f"{(_decimal(value) * 100).quantize(step, rounding=rounding):f}%"

    return (
        percent(estimate, ROUND_HALF_UP),
        percent(lower, ROUND_FLOOR),
        percent(upper, ROUND_CEILING),
    )


def json_script(value: object) -> str:
    """JSON for a ``<script type="application/ld+json">`` element: nothing in it can end
    the element or start markup (``<``, ``>`` and ``&`` are written as escapes)."""
    text = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _escaping(function: Callable[..., str]) -> Callable[..., Escaped]:
    def escaped(*args: Any) -> Escaped:
        return Escaped(function(*args))

    escaped.__name__ = function.__name__
    escaped.__doc__ = function.__doc__
    return escaped


def join_and(words: Iterable[str]) -> Escaped:
    """Already escaped words as a list in English: "a", "a and b", "a, b and c"."""
    items: Sequence[str] = list(words)
    if len(items) <= 1:
        return Escaped("".join(items))
    return Escaped(", ".join(items[:-1]) + " and " + items[-1])


#: The filters every template may use, by name.
FILTERS: dict[str, Callable[..., Any]] = {
    "md": _escaping(md),
    "html": _escaping(html),
    "plain": _escaping(plain),
    "front_title": _escaping(front_title),
    "code": _escaping(code),
    "link": _escaping(link),
    "path": _escaping(path),
    "url": _escaping(safe_url),
    "mailto": _escaping(mailto),
    "bibtex": _escaping(bibtex),
    "count": _escaping(count),
    "html_count": _escaping(html_count),
    "whole": _escaping(whole),
    "loss": _escaping(loss),
    "day": _escaping(day),
    "size": _escaping(size),
    "xy": _escaping(coordinate),
    "px": _escaping(pixels),
    "json_script": _escaping(json_script),
    "md_paragraphs": lambda text: [Escaped(line) for line in md_paragraphs(text)],
    "join_and": join_and,
}
