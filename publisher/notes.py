"""The package's own documents, written from its metadata: a README (the data dictionary)
and a CHANGELOG of its releases. Both are plain Markdown for people who download the
package without the site; text from the spec is escaped so it reads as text.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["changelog", "changelog_entry", "readme"]

CHANGELOG_HEADER = "# Release history\n"


def _text(value: object) -> str:
    """Spec text as Markdown text: no HTML, no table-breaking bars, on one line."""
    return html.escape(" ".join(str(value).split()), quote=False).replace("|", "\\|")


def _row(*cells: object) -> str:
    return "| " + " | ".join(_text(cell) for cell in cells) + " |"


def readme(descriptor: dict[str, Any], files: list[tuple[str, str]]) -> str:
    """The data dictionary: what the package is, every file (the resources and ``files``,
    as path and title), every column and category."""
    release = descriptor.get("release", {})
    licence = descriptor["licenses"][0]
    lines = [f"# {_text(descriptor['title'])}", "", _text(descriptor.get("description", "")), ""]
    if release.get("synthetic"):
        lines += [
            "**Synthetic data.** These figures are computed from made-up demonstration data; "
            "they describe no real people or events.",
            "",
        ]
    lines += [
        f"- Version: {_text(descriptor['version'])} ({_text(release.get('status', 'final'))})",
        f"- Period: {_text(release.get('period', ''))}",
        f"- Geography: {_text(release.get('geography', ''))}",
        f"- Published: {_text(release.get('published', ''))}",
        f"- Licence: {_text(licence['title'])} <{_text(licence['path'])}>",
        f"- Contact: {_text(release.get('contact', {}).get('email', ''))}",
        "",
        "## How the figures were protected",
        "",
        _text(descriptor["privacy"]["statement"]),
        "",
        _text(descriptor.get("estimation", {}).get("description", "")),
        "",
        "## Files",
        "",
        _row("File", "What it holds"),
        _row("---", "---"),
        _row("datapackage.json", "Metadata of every file (Frictionless Data Package v2)"),
    ]
    for resource in descriptor["resources"]:
        lines.append(_row(resource["path"], resource["title"]))
    for path, title in files:
        lines.append(_row(path, title))
    lines += [
        _row("SHA256SUMS", "SHA-256 checksums of every file (check with `sha256sum -c`)"),
        _row("archive/", "Previous versions of this package, as they were published"),
        "",
        "## Markers",
        "",
        _row("Marker", "Meaning"),
        _row("---", "---"),
        *(_row(marker, meaning) for marker, meaning in descriptor.get("markers", {}).items()),
        "",
        "## Tables and their columns",
        "",
    ]
    for resource in descriptor["resources"]:
        about = f"`{resource['path']}`: {_text(resource.get('description', ''))}"
        lines += [f"### {_text(resource['title'])}", "", about, ""]
        lines += [_row("Column", "Type", "Meaning"), _row("---", "---", "---")]
        for field in resource["schema"]["fields"]:
            meaning = f"{field.get('title', '')}. {field.get('description', '')}"
            lines.append(_row(f"`{field['name']}`", field["type"], meaning))
        lines.append("")
        for dimension in resource.get("table", {}).get("dimensions", []):
            definitions = dimension.get("definitions", {})
            lines += [f"Values of `{dimension['name']}` ({_text(dimension['title'])}):", ""]
            for value in dimension["values"]:
                definition = definitions.get(value, "")
                lines.append(f"- {_text(value)}" + (f": {_text(definition)}" if definition else ""))
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def changelog_entry(descriptor: dict[str, Any], *, revises: str | None) -> str:
    """One release's entry: version, date, what it is, and what it revises."""
    release = descriptor.get("release", {})
    lines = [f"## {_text(descriptor['version'])} ({_text(release.get('published', ''))})", ""]
    status = "Provisional figures" if release.get("status") == "provisional" else "Final figures"
    lines.append(f"- {status} for {_text(release.get('period', ''))}.")
    if revises:
        lines.append(
            f"- Revises version {_text(revises)} for the same period: figures that changed "
            "are marked [r]. The previous version is kept under archive/."
        )
    return "\n".join(lines) + "\n"


def changelog(entry: str, previous: str | None) -> str:
    """The history with the new entry first, keeping every earlier entry as it was."""
    earlier = (previous or "").removeprefix(CHANGELOG_HEADER).lstrip("\n")
    return CHANGELOG_HEADER + "\n" + entry + ("\n" + earlier if earlier else "")
