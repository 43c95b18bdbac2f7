"""The Jinja2 environments, and every page rendered from its template.

Two environments read ``publisher/site/templates``:

- pages (``*.md.j2``, Markdown with raw HTML): every ``{{ ... }}`` must print text that a
  filter of :mod:`publisher.site.text` escaped (or a macro built from such text); any other
  value is refused with an error naming the template, so an unescaped title can never
  reach a page;
- chart words (``chart-words.txt.j2``): plain text that the chart template escapes as a
  whole.

``trace=True`` marks every value a filter printed with the private-use characters
:data:`OPEN` and :data:`CLOSE`, and what a macro printed with :data:`BREAK` on each side,
so a test can tell the templates' own words from the package's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, TemplateRuntimeError
from markupsafe import Markup

from publisher.model import Package
from publisher.site.text import FILTERS, Escaped
from publisher.site.views import Views, build_views

__all__ = ["BREAK", "CLOSE", "OPEN", "PAGES", "render_pages"]

#: Marks around every printed value when tracing (Unicode private use: never in text).
OPEN = "\ue000"
CLOSE = "\ue001"
#: Marks where the output of a macro starts and ends, when tracing.
BREAK = "\ue002"

#: Each generated page: its path in the generated folder and its template.
PAGES = {
    "README.md": "readme.md.j2",
    "index.md": "release.md.j2",
    "methodology.md": "methodology.md.j2",
    "data-dictionary.md": "data-dictionary.md.j2",
    "tables/index.md": "tables.md.j2",
    "downloads.md": "downloads.md.j2",
    "cite.md": "cite.md.j2",
    "history.md": "history.md.j2",
    "glossary.md": "glossary.md.j2",
}
TABLE_TEMPLATE = "table.md.j2"
WORDS_TEMPLATE = "chart-words.txt.j2"


def _escaped_only(value: object) -> object:
    """Refuse a value no filter escaped (autoescaping alone would not escape Markdown)."""
    if isinstance(value, Markup):
        return value
    raise TemplateRuntimeError(
        f"a template prints {type(value).__name__} {str(value)[:40]!r} without escaping it: "
        "pass it through a filter of publisher.site.text (md, html, whole, ...)"
    )


def _traced_escaped_only(value: object) -> object:
    checked = _escaped_only(value)
    if isinstance(checked, Escaped):
        return checked
    return Markup(f"{BREAK}{checked}{BREAK}")  # noqa: S704 - a mark around escaped text


def _traced(function: Callable[..., Any]) -> Callable[..., Any]:
    def traced(*args: Any) -> Any:
        result = function(*args)
        if isinstance(result, list):
            return [Escaped(f"{OPEN}{item}{CLOSE}") for item in result]
        return Escaped(f"{OPEN}{result}{CLOSE}")

    return traced


def _environment(*, trace: bool, plain: bool) -> Environment:
    common: dict[str, Any] = {
        "loader": PackageLoader("publisher.site", "templates"),
        "trim_blocks": True,
        "lstrip_blocks": True,
        "keep_trailing_newline": True,
        "undefined": StrictUndefined,
    }
    if plain:
        environment = Environment(
            autoescape=False,  # noqa: S701 - plain text, escaped as a whole by chart.svg.j2
            finalize=(lambda value: f"{OPEN}{value}{CLOSE}") if trace else None,
            **common,
        )
        environment.filters["join_and"] = lambda words: str(FILTERS["join_and"](words))
        return environment
    environment = Environment(
        autoescape=True, finalize=_traced_escaped_only if trace else _escaped_only, **common
    )
    environment.filters.update(
        {
            name: _traced(function) if trace and name != "join_and" else function
            for name, function in FILTERS.items()
        }
    )
    return environment


class _Words(Mapping[str, Callable[..., str]]):
    """The macros of the chart-words template, by name."""

    def __init__(self, environment: Environment, *, trace: bool) -> None:
        self.module = environment.get_template(WORDS_TEMPLATE).module
        self.trace = trace

    def __getitem__(self, name: str) -> Callable[..., str]:
        macro: Callable[..., str] = getattr(self.module, name)
        if not self.trace:
            return macro
        return lambda *args: f"{BREAK}{macro(*args)}{BREAK}"

    def __iter__(self) -> Any:
        return iter(name for name in dir(self.module) if not name.startswith("_"))

    def __len__(self) -> int:
        return len(list(iter(self)))


def render_pages(package: Package, *, trace: bool = False) -> dict[str, str]:
    """Every generated page of ``package``, by its path in the generated folder."""
    words = _Words(_environment(trace=trace, plain=True), trace=trace)
    views: Views = build_views(package, words)
    environment = _environment(trace=trace, plain=False)
    context = {"views": views, "package": package}
    pages = {
        path: environment.get_template(template).render(context) for path, template in PAGES.items()
    }
    table = environment.get_template(TABLE_TEMPLATE)
    for view in views.tables:
        pages[f"tables/{view.name}.md"] = table.render({**context, "table": view})
    return pages
