"""The package's own documents, written from its metadata: a README (the data dictionary)
and a CHANGELOG of its releases, plain Markdown for people who download the package
without the site.

The README is the template ``templates/package-readme.md.j2``: prose lives there, this
module only gathers what it shows. Every value the template prints goes through one
function, :func:`markdown_text`, so text from the spec (titles, descriptions, category keys,
column names) always reads as text: HTML shows as typed, and Markdown links, images,
emphasis, headings, lists and table bars are inert. Only what this module builds as
Markdown (code spans and code blocks, whose fences are chosen longer than any backtick run
inside) is printed as it is.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2

__all__ = [
    "Markdown",
    "changelog",
    "changelog_entry",
    "loaders",
    "markdown_text",
    "privacy_units",
    "readme",
    "truncation_statements",
]

CHANGELOG_HEADER = "# Release history\n"
CHECKSUMS = "SHA256SUMS"
TOTAL_FLAG = "is_total"

# Characters with a Markdown meaning anywhere in a line: escapes, code, emphasis, links and
# images, table cells, strikethrough, headings (a closing '#' sequence).
_INLINE = re.compile(r"[\\`*\[\]|~#]")
# '_' opens emphasis only at a word's edge; inside a word (victim_id) it is plain.
_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
# What starts a block when it starts a line: lists, quotes, setext and thematic breaks.
_BLOCK_START = re.compile(r"^([-+=>])")
_ORDERED_START = re.compile(r"^(\d{1,9})([.)])(?=\s|$)")


class Markdown(str):
    """Markdown this module built itself (code spans and blocks): printed as it is."""


def markdown_text(value: object) -> str:
    """Any text as Markdown that renders as that text, on one line.

    HTML is escaped (``<img onerror>`` shows as typed), and every character that could start
    a link, an image, emphasis, code, a heading, a list or a table cell is escaped, so a
    ``[text](javascript:...)`` or ``![](https://tracker/...)`` in a spec is shown, never live.
    """
    if isinstance(value, Markdown):
        return str(value)
    text = html.escape(" ".join(str(value).split()), quote=False)
    text = _INLINE.sub(lambda match: "\\" + match.group(), text)
    text = _UNDERSCORE.sub(r"\\_", text)
    text = _BLOCK_START.sub(r"\\\1", text)
    return _ORDERED_START.sub(r"\1\\\2", text)


def _finalize(value: object) -> str:
    return "" if value is None else markdown_text(value)


def _code(value: object, *, in_table: bool = False) -> Markdown:
    """A code span of ``value``, fenced by more backticks than any run inside it."""
    text = " ".join(str(value).split())
    if in_table:
        text = text.replace("|", "\\|")  # GFM splits cells before it reads code spans
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") else text
    return Markdown(f"{fence}{padded}{fence}")


def _code_block(code: str, language: str) -> Markdown:
    fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", code)), default=0) + 1)
    return Markdown(f"{fence}{language}\n{code}\n{fence}")


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates' environment, made once (it keeps the compiled templates). jinja2 is
    imported here: a release imports it first on the thread of its dry run."""
    import jinja2

    folder = resources.files("publisher").joinpath("templates")
    environment = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: folder.joinpath(name).read_text(encoding="utf-8")
        ),
        # Markdown, not HTML: finalize escapes every printed value for Markdown instead.
        autoescape=False,  # noqa: S701
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["code"] = _code
    environment.filters["code_cell"] = lambda value: _code(value, in_table=True)
    environment.filters["code_block"] = _code_block
    return environment


# --- What the README shows, read from the descriptor ---------------------------------------


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _number(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def privacy_units(descriptor: dict[str, Any]) -> list[dict[str, str]]:
    """Each privacy unit of the release as the descriptor states it: its name, what it is,
    the loss it may suffer in this release and how its records are bounded. Read generically
    (a unit's own ``statement`` first), so the documents never word a guarantee themselves.
    """
    privacy = descriptor.get("privacy") or {}
    units = []
    for unit in privacy.get("units") or []:
        if not isinstance(unit, dict):
            continue
        name = unit.get("title") or unit.get("name") or unit.get("input") or ""
        losses = [
            f"{key} = {_number(unit[key])}" for key in ("rho", "epsilon", "delta") if key in unit
        ]
        reaches = [
            str(reach["bound_text"])
            for reach in unit.get("reaches") or []
            if isinstance(reach, dict) and reach.get("bound_text")
        ]
        if not reaches and unit.get("max_records_per_person") and unit.get("identifier"):
            most = unit["max_records_per_person"]
            reaches = [f"at most {most} record{'' if most == 1 else 's'} per {unit['identifier']}"]
        units.append(
            {
                "name": str(name),
                "description": str(unit.get("description") or ""),
                "guarantee": str(unit.get("statement") or ", ".join(losses)),
                "bounds": "; ".join(reaches),
            }
        )
    return units


def truncation_statements(descriptor: dict[str, Any]) -> list[str]:
    """The sentences saying what the per-person bounds removed, when the package has them."""
    items = descriptor.get("truncation")
    return [
        str(item["statement"])
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict) and item.get("statement")
    ]


# Types by Table Schema type; any other type is read as text.
_PANDAS = {"integer": "Int64", "number": "Float64", "boolean": "boolean"}
_POLARS = {"integer": "pl.Int64", "number": "pl.Float64", "boolean": "pl.Boolean"}
_DUCKDB = {"integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN"}
_READR = {"integer": "i", "number": "d", "boolean": "l"}


def _py(text: str) -> str:
    """A string literal for Python (and R): JSON's escapes are valid in both."""
    return json.dumps(text, ensure_ascii=False)


def _sql(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def loaders(resource: dict[str, Any]) -> list[tuple[str, str, str]]:
    """One line per tool that loads a CSV resource with the types of its schema: integers
    stay integers where a marker leaves a cell empty, text stays text. As (tool, language,
    code), with paths relative to the package's folder; empty for a resource without one."""
    schema = resource.get("schema")
    path = resource.get("path")
    if resource.get("format") != "csv" or not isinstance(schema, dict) or not path:
        return []
    fields = [
        (str(field.get("name")), str(field.get("type") or "string"))
        for field in schema.get("fields") or []
        if isinstance(field, dict)
    ]
    missing = [str(text) for text in schema.get("missingValues", [""])]
    quoted = _py(str(path))
    pandas_types = ", ".join(
        f"{_py(name)}: {_py(_PANDAS.get(kind, 'string'))}" for name, kind in fields
    )
    polars_types = ", ".join(
        f"{_py(name)}: {_POLARS.get(kind, 'pl.String')}" for name, kind in fields
    )
    polars_nulls = "" if missing == [""] else f", null_values=[{', '.join(map(_py, missing))}]"
    duckdb_types = ", ".join(
        f"{_sql(name)}: '{_DUCKDB.get(kind, 'VARCHAR')}'" for name, kind in fields
    )
    duckdb_nulls = "" if missing == [""] else f", nullstr = [{', '.join(map(_sql, missing))}]"
    readr_types = "".join(_READR.get(kind, "c") for _, kind in fields)
    return [
        (
            "pandas",
            "python",
            f"df = pd.read_csv({quoted}, dtype={{{pandas_types}}}, keep_default_na=False, "
            f"na_values=[{', '.join(map(_py, missing))}])",
        ),
        (
            "polars",
            "python",
            f"df = pl.read_csv({quoted}, schema_overrides={{{polars_types}}}{polars_nulls})",
        ),
        (
            "DuckDB",
            "sql",
            # Shown to the reader, never run here; every name is quoted by _sql.
            f"SELECT * FROM read_csv({_sql(str(path))}, header = true, "  # noqa: S608
            f"columns = {{{duckdb_types}}}{duckdb_nulls});",
        ),
        (
            "R (readr)",
            "r",
            f'df <- readr::read_csv({quoted}, col_types = "{readr_types}", '
            f"na = c({', '.join(map(_py, missing))}))",
        ),
    ]


def _fields(resource: dict[str, Any]) -> list[dict[str, str]]:
    schema = resource.get("schema")
    return [
        {
            "name": str(field.get("name", "")),
            "type": str(field.get("type", "")),
            "title": str(field.get("title", "")),
            "description": str(field.get("description", "")),
        }
        for field in (schema.get("fields") or [] if isinstance(schema, dict) else [])
        if isinstance(field, dict)
    ]


def _dimensions(resource: dict[str, Any]) -> list[dict[str, Any]]:
    dimensions = []
    for dimension in _get(resource, "table", "dimensions") or []:
        if not isinstance(dimension, dict):
            continue
        definitions = dimension.get("definitions") or {}
        dimensions.append(
            {
                "name": str(dimension.get("name", "")),
                "title": str(dimension.get("title", "")),
                "values": [
                    (str(value), str(definitions.get(value, "")))
                    for value in dimension.get("values") or []
                ],
            }
        )
    return dimensions


def _files(
    descriptor: dict[str, Any], not_yet_listed: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    listed = [("datapackage.json", "Metadata of every file (Frictionless Data Package v2)")]
    for entry in [*(descriptor.get("resources") or []), *(descriptor.get("files") or [])]:
        if isinstance(entry, dict) and entry.get("path"):
            listed.append((str(entry["path"]), str(entry.get("title") or entry["path"])))
    listed += list(not_yet_listed)
    listed.append((CHECKSUMS, "SHA-256 checksums of every file"))
    if descriptor.get("archive"):
        listed.append(("archive/", "Previous versions of this package, as they were published"))
    return listed


def readme(descriptor: dict[str, Any], not_yet_listed: Iterable[tuple[str, str]] = ()) -> str:
    """The data dictionary: what the package is and how it was protected, every file, how
    to load each table in one line per tool, every column and category.

    ``not_yet_listed`` are files (path, title) the descriptor does not list yet: the README
    itself and what is written after it.
    """
    release = descriptor.get("release") or {}
    licence = (descriptor.get("licenses") or [{}])[0]
    disclosure = descriptor.get("disclosure") or {}
    tables = [r for r in descriptor.get("resources") or [] if isinstance(r, dict)]
    resources_by_name = {str(r.get("name")): r for r in tables}
    context = {
        "title": descriptor.get("title", ""),
        "description": descriptor.get("description", ""),
        "synthetic": release.get("synthetic") is True,
        "version": descriptor.get("version", ""),
        "status": release.get("status") or "final",
        "period": release.get("period", ""),
        "geography": release.get("geography") or "",
        "published": release.get("published", ""),
        "licence": (licence.get("title", ""), licence.get("path", "")),
        "contact": _get(release, "contact", "email") or "",
        "privacy_statement": _get(descriptor, "privacy", "statement") or "",
        "units": privacy_units(descriptor),
        "truncation": truncation_statements(descriptor),
        "estimation": _get(descriptor, "estimation", "description") or "",
        "files": _files(descriptor, not_yet_listed),
        "spreadsheets": [f for f in descriptor.get("files") or [] if isinstance(f, dict)],
        "markers": list((descriptor.get("markers") or {}).items()),
        "total_label": disclosure.get("total_label") or "Total",
        "has_totals": any(_get(r, "table", "totals") is True for r in tables),
        "flag": TOTAL_FLAG,
        "filters": [
            ("pandas", f"df = df[~df[{_py(TOTAL_FLAG)}]]"),
            ("polars", f"df = df.filter(~pl.col({_py(TOTAL_FLAG)}))"),
            ("DuckDB, at the end of the query", f"WHERE NOT {TOTAL_FLAG}"),
            ("R", f"df <- df[!df${TOTAL_FLAG}, ]"),
        ],
        "flagged": any(f["name"] == TOTAL_FLAG for r in tables for f in _fields(r)),
        "shares": [
            {
                "title": share.get("title", ""),
                "numerator": share.get("numerator_description", ""),
                "denominator": share.get("denominator_description", ""),
                "table": _get(resources_by_name.get(str(share.get("table"))), "title")
                or share.get("table", ""),
            }
            for share in descriptor.get("shares") or []
            if isinstance(share, dict)
        ],
        "resources": [
            {
                "title": resource.get("title") or resource.get("name", ""),
                "path": resource.get("path", ""),
                "description": resource.get("description", ""),
                "fields": _fields(resource),
                "loaders": loaders(resource),
                "dimensions": _dimensions(resource),
            }
            for resource in tables
        ],
    }
    text = _environment().get_template("package-readme.md.j2").render(context)
    # Optional parts leave runs of blank lines: one blank line between blocks.
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def changelog_entry(descriptor: dict[str, Any], *, revises: str | None) -> str:
    """One release's entry: version, date, what it is, and what it revises."""
    release = descriptor.get("release", {})
    text = markdown_text
    lines = [f"## {text(descriptor['version'])} ({text(release.get('published', ''))})", ""]
    status = "Provisional figures" if release.get("status") == "provisional" else "Final figures"
    lines.append(f"- {status} for {text(release.get('period', ''))}.")
    if revises:
        lines.append(
            f"- Revises version {text(revises)} for the same period: figures that changed "
            "are marked \\[r\\]. The previous version is kept under archive/."
        )
    return "\n".join(lines) + "\n"


def changelog(entry: str, previous: str | None) -> str:
    """The history with the new entry first, keeping every earlier entry as it was."""
    earlier = (previous or "").removeprefix(CHANGELOG_HEADER).lstrip("\n")
    return CHANGELOG_HEADER + "\n" + entry + ("\n" + earlier if earlier else "")
