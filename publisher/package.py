"""Write the release as a Frictionless data package, validate it, then swap it into place.

The package is built in a staging directory beside the destination, validated with
frictionless, and only then renamed into place, so readers never see half a package and a
failed release leaves the previous one intact.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import polars as pl

from publisher import checks, files, guarantee, model, notes
from publisher import staging as staging_folders
from publisher.disclosure import LOW, MARKERS, PROVISIONAL, REVISED
from publisher.errors import PackageError, PublisherError
from publisher.postprocess import ShareEstimate, TruncationEstimate
from publisher.privacy import Measurements
from publisher.spec import LICENCES, SEMVER, Release, ReleaseSpec, Share, Table
from publisher.spreadsheet import MEDIATYPES, write_spreadsheets

__all__ = [
    "DESCRIPTOR",
    "SHARES_RESOURCE",
    "TOTAL_FLAG",
    "UNROUNDED",
    "PreviousRelease",
    "ReleaseContent",
    "build",
    "check_destination",
    "check_plain",
    "discard",
    "generated_names",
    "least_shown_count",
    "named_as",
    "previous_release",
    "revised_version",
    "share_descriptions",
    "stage",
    "swap_in",
    "validate",
    "with_flag",
    "write",
    "zip_folder",
    "zip_name",
]

DESCRIPTOR = "datapackage.json"
README = "README.md"
CHANGELOG = "CHANGELOG.md"
CHECKSUMS = "SHA256SUMS"
ARCHIVE = "archive"
SHARES_RESOURCE = "headline-shares"
# The column of every table of counts that says whether a row is a total (tidy data).
TOTAL_FLAG = "is_total"
UNROUNDED = "unrounded"
NOISY_MEASUREMENTS = "noisy-measurements"
UNROUNDED_RESOURCE_SUFFIX = f"-{UNROUNDED}"  # a table's unrounded estimates
PROFILE = "https://datapackage.org/profiles/2.0/datapackage.json"


@dataclass(frozen=True)
class PreviousRelease:
    """The package a release replaces, verified: kept under ``archive/`` and compared for
    revisions. ``files`` is every file it holds (SHA256SUMS's list, each verified, and
    SHA256SUMS itself) with its SHA-256: nothing else of its folder is ever read."""

    directory: Path
    name: str
    version: str
    period: str
    changelog: str | None
    tables: dict[str, pl.DataFrame]  # published tables by name, values as integers
    files: dict[str, str]

    @property
    def archived_versions(self) -> list[str]:
        """The earlier versions it keeps under ``archive/``, newest first."""
        found = {path.split("/")[1] for path in self.files if path.startswith(f"{ARCHIVE}/")}
        return sorted(found, key=_version_order, reverse=True)


@dataclass(frozen=True)
class ReleaseContent:
    """What a release publishes: the rules applied and the measurements they came from."""

    spec: ReleaseSpec
    measurements: Measurements
    tables: dict[str, pl.DataFrame]  # published tables by name, columns in order
    shares: list[ShareEstimate]
    previous: PreviousRelease | None = None
    truncation: tuple[TruncationEstimate, ...] = ()
    # Per table, when the spec publishes them: unrounded estimates and standard errors of
    # every published row, and the noisy counts as OpenDP drew them.
    unrounded: dict[str, pl.DataFrame] | None = None

    @property
    def revises(self) -> str | None:
        """The version this release revises: the previous one, when for the same period."""
        return revised_version(self.previous, self.spec.release.period)

    @property
    def markers(self) -> dict[str, str]:
        """The markers this release can show, with their meanings."""
        used = [LOW]
        if self.spec.release.status == "provisional":
            used.append(PROVISIONAL)
        elif self.revises:
            used.append(REVISED)
        return {marker: MARKERS[marker] for marker in used}


def revised_version(previous: PreviousRelease | None, period: str) -> str | None:
    """The version a release of ``period`` revises: ``previous``, if it has that period."""
    if previous is None or previous.period != period:
        return None
    return previous.version


def previous_release(out_dir: Path) -> PreviousRelease | None:
    """The package currently at ``out_dir``, if there is one, verified before anything is
    spent: it must validate (every file listed in SHA256SUMS with its hash, no link, no
    unknown file), read as the one package model (:func:`model.read`: plain paths, plain
    versions, every stated hash), and hold only the files a package has (its descriptor,
    what the descriptor lists, its zip, earlier versions under ``archive/`` each listed in
    their own SHA256SUMS). Otherwise :class:`PackageError` names the file: an unverified
    folder is never archived, so nothing private is ever published through it."""
    if not os.path.lexists(out_dir / DESCRIPTOR):
        return None
    problems, verified = _validated(out_dir)
    if verified is None:
        raise PackageError(
            [
                f"{out_dir}: the package there is not valid, so a release can neither replace "
                "nor archive it (nothing was spent): restore it from the published copy, or "
                "choose another --out",
                *problems,
            ]
        )
    hashes = dict(verified.checksums)
    hashes[CHECKSUMS] = hashlib.sha256(model.read_file(out_dir, CHECKSUMS)).hexdigest()
    return PreviousRelease(
        directory=out_dir,
        name=verified.name,
        version=verified.version,
        period=verified.period,
        changelog=verified.changelog,
        tables={resource.name: _published_values(resource) for resource in verified.tables},
        files=hashes,
    )


def _published_values(resource: model.Resource) -> pl.DataFrame:
    """A published table's keys and values (empty where a marker stands instead)."""
    by = [dimension.name for dimension in resource.dimensions]
    return pl.DataFrame(
        {
            **{column: [row[column] for row in resource.rows] for column in by},
            "value": [int(row["value"]) if row["value"] else None for row in resource.rows],
        },
        schema={**dict.fromkeys(by, pl.String), "value": pl.Int64},
    )


def _model_problems(package_dir: Path) -> tuple[list[str], model.Package | None]:
    """What the one package model refuses (:func:`model.read`, which the site and the next
    release read through), and the files no package of ours holds: so that a package
    ``validate`` passes is one they accept. With the package as read, when it passes."""
    try:
        verified = model.read(package_dir)
    except PackageError as error:
        return [line for line in error.problems if line != model.advice(package_dir)], None
    problems = _unknown_files(verified)
    return problems, None if problems else verified


def _unknown_files(verified: model.Package) -> list[str]:
    """The files of a valid package that no package of ours holds: a stray export, or a
    copy of the spec or the data, dropped into the folder (and perhaps listed in
    SHA256SUMS to pass validation); and its own zip, if it is missing."""
    out_dir = verified.directory
    own_zip = f"{verified.name}-{verified.version}.zip"
    known = {
        item.path for item in verified.files if item.kind != "checksummed" or item.path == own_zip
    }
    missing = (
        []
        if own_zip in verified.checksums
        else [
            f"{out_dir / own_zip}: missing from SHA256SUMS (the zip of the version is part of "
            "the package); restore it from the published copy, or release again"
        ]
    )
    problems = missing + [
        f"{out_dir / relative}: is not a file of the package (its descriptor does not list it): "
        "remove it from the folder and from SHA256SUMS, it would be published in the archive"
        for relative in sorted({*verified.unlisted, *verified.checksums})
        if relative not in known and relative != CHECKSUMS and not _archived(relative)
    ]
    archived: dict[str, set[str]] = {}
    for relative in verified.checksums:
        if _archived(relative):
            _, older, rest = relative.split("/", 2)
            archived.setdefault(older, set()).add(rest)
    for older, paths in sorted(archived.items()):
        problems += _unknown_archived(out_dir, f"{ARCHIVE}/{older}", paths)
    return problems


def _archived(relative: str) -> bool:
    """Whether a path is a file of an earlier version kept under ``archive/VERSION/``."""
    parts = relative.split("/")
    return parts[0] == ARCHIVE and len(parts) > 2 and re.fullmatch(SEMVER, parts[1]) is not None


def _unknown_archived(out_dir: Path, folder: str, paths: set[str]) -> list[str]:
    """An archived version holds what its own SHA256SUMS lists, with those hashes."""
    own, _ = checks.read_checksums(out_dir / folder)
    if own is None or CHECKSUMS not in paths:
        return [f"{out_dir / folder}: the archived version has no {CHECKSUMS} of its own"]
    problems = []
    for relative in sorted(paths - {CHECKSUMS}):
        expected = own.get(relative)
        data = model.read_file(out_dir, f"{folder}/{relative}")
        if expected is None or hashlib.sha256(data).hexdigest() != expected[0]:
            problems.append(
                f"{out_dir / folder / relative}: is not a file of the archived version (its "
                f"{CHECKSUMS} does not list it with this content): remove it"
            )
    return problems


def _version_order(version: str) -> tuple[Any, ...]:
    """Semantic versioning's precedence: 1.0.0-rc.1 < 1.0.0 < 1.0.1 (anything else first)."""
    match = re.fullmatch(SEMVER, version)
    if match is None:
        return (-1,)
    pre = version.partition("-")[2]
    identifiers = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split(".") if pre
    )
    return (*(int(part) for part in match.groups()[:3]), not pre, identifiers)


def _refuse_an_earlier_version(content: ReleaseContent) -> None:
    """A package is only replaced by a later version of the same release: one it holds
    already (a re-draw of published figures, with another ledger) or an earlier one would
    publish two sets of figures under one version, or make the latest version go back."""
    previous = content.previous
    version = content.spec.release.version
    if previous is None:
        return
    if previous.name != content.spec.release.id:
        # Its versions would be archived and revised as this release's.
        raise PackageError(
            f"{previous.directory}: holds the release '{previous.name}', not "
            f"'{content.spec.release.id}' (a package folder keeps the versions of one "
            "release): choose another --out"
        )
    held = [previous.version, *previous.archived_versions]
    if version in held or _version_order(version) <= _version_order(previous.version):
        raise PackageError(
            f"{previous.directory}: holds version {previous.version}"
            + (f" (and keeps {', '.join(held[1:])})" if held[1:] else "")
            + f"; {version} must come after it: set a new release.version after it, or "
            "choose another --out"
        )


def check_destination(out_dir: Path) -> None:
    """Refuse, before anything is spent, a destination we could not or must not replace.

    A package whose replacement was interrupted between its two renames is put back first.
    """
    link = files.link_on(out_dir)
    if link is not None:
        raise PackageError(
            f"{out_dir}: goes through the symlink {link}; give the real directory (a release "
            "replaces the directory and must not write wherever a link points)"
        )
    target = out_dir.resolve()
    if target == Path(target.anchor) or (target.is_dir() and os.path.ismount(target)):
        raise PackageError(
            f"{out_dir}: is the root of a file system; a release replaces the whole folder it "
            f"writes, so give a folder inside it (for example {out_dir / 'datapackage'})"
        )
    # A package as publisher makes them (a descriptor and its checksums), not any folder
    # with a datapackage.json above it.
    holder = next(
        (
            folder
            for folder in target.parents
            if (folder / DESCRIPTOR).is_file() and (folder / CHECKSUMS).is_file()
        ),
        None,
    )
    if holder is not None:
        raise PackageError(
            f"{out_dir}: is inside the package {holder}; a release there would add files to "
            "that package and break its checksums: give a folder outside it"
        )
    _restore_interrupted_swap(out_dir)
    if target.parent.is_dir():
        _remove_abandoned_staging(target)
    if out_dir.exists() and not out_dir.is_dir():
        what = files.describe(out_dir.stat().st_mode)
        raise PackageError(
            f"{out_dir}: exists and is {'a file' if out_dir.is_file() else what}; choose a "
            "directory for the package"
        )
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / DESCRIPTOR).is_file():
        raise PackageError(
            f"{out_dir}: exists, is not empty and holds no {DESCRIPTOR}; choose a new or empty "
            "directory (a release replaces the whole directory)"
        )
    parent = out_dir.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise PackageError(f"{probe}: is a file, so {out_dir} cannot be made; choose another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PackageError(f"{parent}: cannot write here; choose a directory you can write to")


def write(content: ReleaseContent, out_dir: Path) -> Path:
    """Build, validate and atomically publish the package at ``out_dir``."""
    return swap_in(stage(content, out_dir), out_dir)


def stage(content: ReleaseContent, out_dir: Path) -> Path:
    """Build the package in a staging folder beside ``out_dir`` (same file system, so the
    swap is a rename) and validate it; return the staging folder, ready for
    :func:`swap_in`. On any failure the staging folder is removed and the error names
    ``out_dir``, never the staging folder."""
    check_destination(out_dir)
    target = out_dir.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Named after this process, so a run killed before it could clean up is tidied by the
    # next one (see :func:`_remove_abandoned_staging`).
    staging = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.staging-{os.getpid()}-", dir=target.parent)
    )
    try:
        # mkdtemp makes the directory private (0700); a published package is for everyone.
        staging.chmod(0o777 & ~staging_folders.umask())
        with named_as(staging, out_dir):
            try:
                build(content, staging)
            except PackageError as error:
                raise PackageError(
                    [
                        f"the new package is not valid, nothing was published: {p}"
                        for p in error.problems
                    ]
                ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def build(content: ReleaseContent, folder: Path) -> None:
    """Write the whole package into the empty ``folder`` and validate it (Data Package v2
    profile, frictionless and the publisher's own rules); :class:`PackageError` lists
    every problem. A release and its dry run both build through here: only where their
    figures come from differs."""
    _build(content, folder)
    problems = validate(folder)
    if problems:
        raise PackageError(problems)


def swap_in(staging: Path, out_dir: Path) -> Path:
    """Put the staged package in place of ``out_dir`` atomically; return where it is."""
    target = out_dir.resolve()
    try:
        _swap(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def discard(staging: Path) -> None:
    """Remove a staged package that will not be swapped in."""
    shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def named_as(folder: Path, shown: Path | str) -> Iterator[None]:
    """Errors raised in the block name ``shown`` where they would name ``folder``: a
    staging or scratch folder is internal, and gone by the time the message is read."""
    try:
        yield
    except PublisherError as error:
        renamed = [problem.replace(str(folder), str(shown)) for problem in error.problems]
        raise type(error)(renamed) from None
    except OSError as error:
        if error.filename and str(folder) in str(error.filename):
            error.filename = str(error.filename).replace(str(folder), str(shown))
        raise


def _remove_abandoned_staging(target: Path) -> None:
    """Remove the staging folders of releases into ``target`` that were killed (their
    process is gone) before they could clean up: they hold a version never published."""
    for folder in target.parent.glob(f".{target.name}.staging-*-*"):
        pid = folder.name.removeprefix(f".{target.name}.staging-").split("-", 1)[0]
        if pid.isdigit() and not staging_folders.alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _restore_interrupted_swap(out_dir: Path) -> None:
    """If a swap was killed after moving the old package aside, put the newest one back."""
    target = out_dir.absolute()
    if target.exists() or not target.parent.is_dir():
        return
    retired = sorted(
        target.parent.glob(f".{target.name}.previous-*"), key=lambda path: path.stat().st_mtime
    )
    if retired and (retired[-1] / DESCRIPTOR).is_file():
        retired[-1].rename(target)


def _swap(staging: Path, target: Path) -> None:
    """Replace ``target`` with ``staging``: an atomic exchange where the system has one
    (Linux renameat2), else two renames, after which a kill between them is repaired by
    the next release (see :func:`_restore_interrupted_swap`)."""
    if not target.exists():
        staging.rename(target)
        return
    if _exchange(staging, target):
        # ``staging`` now holds the previous package.
        shutil.rmtree(staging, ignore_errors=True)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.previous-", dir=target.parent))
    retired.rmdir()
    target.rename(retired)
    try:
        staging.rename(target)
    except OSError:
        retired.rename(target)
        raise
    shutil.rmtree(retired, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Atomically exchange two paths with renameat2(RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    result = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    return bool(result == 0)


def _build(content: ReleaseContent, staging: Path) -> None:
    """The whole package: tables, metadata, documents, spreadsheets, the previous versions,
    a zip of this version and the checksums of everything."""
    _refuse_an_earlier_version(content)
    data_dir = staging / "data"
    data_dir.mkdir()
    resources = []
    total_label = content.spec.disclosure.total_label
    for table in content.spec.tables:
        path = data_dir / f"{table.name}.csv"
        with_flag(content.tables[table.name], list(table.by), total_label).write_csv(
            path, line_terminator="\n"
        )
        resources.append(_table_resource(content, table, path))
    if content.shares:
        path = data_dir / f"{SHARES_RESOURCE}.csv"
        _shares_frame(content).write_csv(path, line_terminator="\n")
        resources.append(_shares_resource(content, path))
    if content.unrounded is not None:
        (data_dir / UNROUNDED).mkdir()
        if content.measurements.designs:
            path = data_dir / UNROUNDED / f"{NOISY_MEASUREMENTS}.csv"
            _noisy_frame(content).write_csv(path, line_terminator="\n")
            resources.append(_noisy_measurements_resource(content, path))
        for table in content.spec.tables:
            path = data_dir / UNROUNDED / f"{table.name}.csv"
            with_flag(content.unrounded[table.name], list(table.by), total_label).write_csv(
                path, line_terminator="\n"
            )
            resources.append(_unrounded_resource(content, table, path))
    descriptor = _descriptor(content, resources)

    previous = content.previous
    _write_descriptor(staging, descriptor)  # the spreadsheets are made from it
    descriptor["files"] = []
    for sheet in write_spreadsheets(staging):
        kind = sheet.suffix.removeprefix(".")
        title = "The whole release as a spreadsheet (" + (
            "OpenDocument)" if kind == "ods" else "Excel)"
        )
        about = (
            "Cover, contents, notes and one table per sheet, with the same numbers and "
            "markers as the CSV files."
        )
        descriptor["files"].append(_file_entry(sheet, title, about, kind, MEDIATYPES[kind]))
    documents = {
        README: ("Data dictionary", "Every file, column and category explained."),
        CHANGELOG: ("Release history", "Every version of this package."),
    }
    entry = notes.changelog_entry(descriptor, revises=content.revises)
    (staging / CHANGELOG).write_text(
        notes.changelog(entry, previous.changelog if previous else None), encoding="utf-8"
    )
    not_yet_listed = [(name, title) for name, (title, _) in documents.items()]
    not_yet_listed.append((zip_name(descriptor), "This version in one zip"))
    (staging / README).write_text(notes.readme(descriptor, not_yet_listed), encoding="utf-8")
    # The documents are resources (no ``type``: not tables), so frictionless checks their
    # bytes and hashes; the spreadsheets stay under ``files``: see notes.readme for why.
    descriptor["resources"] += [
        _document_resource(staging / name, title, about)
        for name, (title, about) in documents.items()
    ]
    _write_descriptor(staging, descriptor)

    if previous is not None:
        _archive(previous, staging / ARCHIVE)
    _zip(staging, staging / zip_name(descriptor), zip_folder(descriptor))
    _write_checksums(staging)


def zip_name(descriptor: dict[str, Any]) -> str:
    """The file name of the zip of this version: ``<name>-<version>.zip``."""
    return f"{zip_folder(descriptor)}.zip"


def zip_folder(descriptor: dict[str, Any]) -> str:
    """The one top-level folder of the zip, named after the release and its version."""
    return f"{descriptor['name']}-{descriptor['version']}"


def with_flag(table: pl.DataFrame, by: list[str], total_label: str) -> pl.DataFrame:
    """The published table with its ``is_total`` column: true on every row where a key is
    the total label, so the cross-classified rows are one filter away (tidy data)."""
    return table.with_columns(
        pl.any_horizontal(pl.col(column) == total_label for column in by).alias(TOTAL_FLAG)
    )


def _archive_list(content: ReleaseContent) -> list[dict[str, str]]:
    """The earlier versions kept under ``archive/``, newest first."""
    previous = content.previous
    if previous is None:
        return []
    versions = [previous.version, *previous.archived_versions]
    return [{"version": name, "path": f"{ARCHIVE}/{name}/{DESCRIPTOR}"} for name in versions]


def _write_descriptor(staging: Path, descriptor: dict[str, Any]) -> None:
    text = json.dumps(descriptor, indent=2, ensure_ascii=False) + "\n"
    (staging / DESCRIPTOR).write_text(text, encoding="utf-8")


def _document_resource(path: Path, title: str, about: str) -> dict[str, Any]:
    return {
        "name": path.name.lower().replace(".", "-"),
        "path": path.name,
        "format": "md",
        "mediatype": "text/markdown",
        "encoding": "utf-8",
        "title": title,
        "description": about,
        **_file_facts(path),
    }


def _file_entry(path: Path, title: str, about: str, kind: str, mediatype: str) -> dict[str, Any]:
    return {
        "name": path.name.lower().replace(".", "-"),
        "path": path.name,
        "format": kind,
        "mediatype": mediatype,
        "title": title,
        "description": about,
        **_file_facts(path),
    }


def _archive(previous: PreviousRelease, archive: Path) -> None:
    """Keep every earlier version: the replaced package and the versions it kept. Only
    the files it lists are copied, each read without following links and checked against
    the hash it was verified with (so nothing changed since is published)."""
    for relative, digest in sorted(previous.files.items()):
        parts = relative.split("/")
        if parts[0] == ARCHIVE:
            target = archive.joinpath(*parts[1:])
        else:
            target = archive.joinpath(previous.version, *parts)
        data = model.read_file(previous.directory, relative)
        if hashlib.sha256(data).hexdigest() != digest:
            raise PackageError(
                f"{previous.directory / relative}: changed while the release was running; "
                "nothing was published"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _zip(staging: Path, target: Path, folder: str) -> None:
    """This version for one-click download: everything but the archive and checksums, in
    one top-level folder, so unpacking it never scatters files into the current one."""
    members = sorted(
        path
        for path in staging.rglob("*")
        if path.is_file() and path.relative_to(staging).parts[0] not in (ARCHIVE, CHECKSUMS)
    )
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in members:
            archive.write(path, f"{folder}/{path.relative_to(staging).as_posix()}")


def _write_checksums(staging: Path) -> None:
    """SHA256SUMS of every file, in the format `sha256sum -c` reads."""
    lines = [
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(staging).as_posix()}"
        for path in sorted(staging.rglob("*"))
        if path.is_file()
    ]
    (staging / CHECKSUMS).write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def _file_facts(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"bytes": len(data), "hash": f"sha256:{hashlib.sha256(data).hexdigest()}"}


def _csv_resource(name: str, path: Path, title: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "table",
        "path": f"data/{path.name}",
        "format": "csv",
        "mediatype": "text/csv",
        "encoding": "utf-8",
        "dialect": {
            "header": True,
            "delimiter": ",",
            "lineTerminator": "\n",
            "quoteChar": '"',
            "doubleQuote": True,
        },
        "title": title,
        "description": description,
        **_file_facts(path),
    }


def _table_resource(content: ReleaseContent, table: Table, path: Path) -> dict[str, Any]:
    spec = content.spec
    rules = spec.disclosure
    total_label = rules.total_label if table.totals else None
    dimensions = []
    fields: list[dict[str, Any]] = []
    for column in table.by:
        category = spec.category_of(table, column)
        keys = [*category.values, *([total_label] if total_label else [])]
        dimensions.append(
            {
                "name": column,
                "title": category.title,
                "description": category.description,
                "values": list(category.values),
                "ordered": category.ordered,
                "unknown": category.unknown,
                "definitions": dict(category.definitions),
            }
        )
        fields.append(
            {
                "name": column,
                "type": "string",
                "title": category.title,
                "description": " ".join(
                    part
                    for part in (category.description, _total_row_note(total_label, column))
                    if part
                ),
                "categories": keys,
                "categoriesOrdered": category.ordered,
                "constraints": {"required": True, "enum": keys},
            }
        )
    counted = table.counts
    base = rules.rounding_base
    fields += [
        {
            "name": "value",
            "type": "integer",
            "title": f"Number of {counted}",
            "description": (
                f"With differentially private noise, rounded to the nearest {base}; empty "
                "where a marker stands instead."
            ),
            "constraints": {"minimum": least_shown_count(base, rules.threshold)},
        },
        {
            "name": "marker",
            "type": "string",
            "title": "Marker",
            "description": "The GSS marker of the row, empty when there is none. "
            + " ".join(f"{marker}: {meaning}" for marker, meaning in content.markers.items()),
            "categories": list(content.markers),
            "constraints": {"enum": list(content.markers)},
        },
        _bound_field("lower_95", "Lower bound of the 95% interval", counted, base),
        _bound_field("upper_95", "Upper bound of the 95% interval", counted, base),
        _total_flag_field(total_label),
    ]
    resource = _csv_resource(table.name, path, table.title, table.description)
    resource["schema"] = {"fields": fields, "missingValues": [""], "primaryKey": list(table.by)}
    resource["privacy"] = guarantee.table_privacy(spec, content.measurements, table)
    resource["table"] = {
        "input": table.input,
        "counts": counted,
        "by": list(table.by),
        "totals": table.totals,
        "dimensions": dimensions,
    }
    return resource


def _total_row_note(total_label: str | None, column: str) -> str:
    if not total_label:
        return ""
    return (
        f"A row labelled '{total_label}' here is the total over every key of {column}: "
        "estimated from the unrounded noisy figures and rounded on its own, so it may differ "
        "from the sum of the rounded figures shown."
    )


def _total_flag_field(total_label: str | None) -> dict[str, Any]:
    return {
        "name": TOTAL_FLAG,
        "type": "boolean",
        "title": "Total row",
        "description": (
            "true where a key column holds the total label"
            + (f" '{total_label}'" if total_label else "")
            + ", false for the breakdown rows: keep the false rows to drop every total."
        ),
        "trueValues": ["true"],
        "falseValues": ["false"],
        "constraints": {"required": True},
    }


def least_shown_count(rounding_base: int, threshold: int) -> int:
    """The smallest count a table can show: the first positive multiple of the base that
    is not below the threshold (smaller noisy counts are shown as a marker)."""
    return rounding_base * max(1, math.ceil(threshold / rounding_base))


def _bound_field(name: str, title: str, counted: str, base: int) -> dict[str, Any]:
    side = "down" if name.startswith("lower") else "up"
    return {
        "name": name,
        "type": "integer",
        "title": title,
        "description": (
            f"For the number of {counted}: allows for the noise and the estimation, and is "
            f"rounded {side} to a multiple of {base} so that rounding never takes the true "
            "count out of the interval. Given even where a marker stands instead of the value."
        ),
        "constraints": {"required": True, "minimum": 0},
    }


def generated_names(spec: ReleaseSpec) -> set[str]:
    """The names of the resources a release of ``spec`` writes besides its tables."""
    names = {SHARES_RESOURCE} if spec.shares else set()
    if spec.disclosure.unrounded_estimates:
        names |= {_unrounded_name(table.name) for table in spec.tables}
        if spec.privacy.model == "zcdp":
            names.add(NOISY_MEASUREMENTS)
    return names


def _estimation_text(measured: Measurements) -> str:
    """How the published figures were made from what OpenDP drew, as the descriptor says."""
    made = (
        "The tables of each input are measured together by the optimal strategy for them "
        "(privacy.measurements: public integer queries of the input's counts, chosen from "
        "the spec alone, with Gaussian noise) and every figure is the least squares estimate "
        "from the queries' noisy answers"
        if measured.designs
        else "Each table is measured alone, and the tables of each input are estimated "
        "together from all their noisy cells, weighted by their noise variances"
    )
    return (
        f"{made}: the estimates agree on every shared total and margin and are unbiased. "
        "Each count's 95% interval comes from the exact distribution of its estimate's "
        "noise; its bounds are rounded outward to the base, and it is wide enough that, "
        "whatever the true count of the records kept, the published interval contains it "
        "with at least 95% probability."
    )


def _noisy_frame(content: ReleaseContent) -> pl.DataFrame:
    rows = [
        (query.name, position, value)
        for design in content.measurements.designs
        for query in design.queries
        for position, value in enumerate(query.noisy)
    ]
    return pl.DataFrame(
        rows,
        schema={"measurement": pl.String, "position": pl.Int64, "noisy_answer": pl.Int64},
        orient="row",
    )


def _unrounded_name(table: str) -> str:
    return f"{table}{UNROUNDED_RESOURCE_SUFFIX}"


def _unrounded_resource(content: ReleaseContent, table: Table, path: Path) -> dict[str, Any]:
    """Unrounded estimates, standard errors and the noisy counts as drawn, for analysts."""
    spec = content.spec
    noisy = content.measurements.table(table.name)
    total_label = spec.disclosure.total_label if table.totals else None
    fields: list[dict[str, Any]] = []
    for column in table.by:
        category = spec.category_of(table, column)
        keys = [*category.values, *([total_label] if total_label else [])]
        fields.append(
            {
                "name": column,
                "type": "string",
                "title": category.title,
                "constraints": {"required": True, "enum": keys},
            }
        )
    fields += [
        {
            "name": "estimate",
            "type": "number",
            "title": "Unrounded estimate",
            "description": (
                f"The consistent estimate of the number of {table.counts} before rounding, "
                "thresholds or markers: unbiased, so it may be negative or not a whole number."
            ),
            "constraints": {"required": True},
        },
        {
            "name": "standard_error",
            "type": "number",
            "title": "Standard error",
            "description": "The standard deviation of the estimate's noise.",
            "constraints": {"required": True, "minimum": 0},
        },
        {
            "name": "margin_95",
            "type": "number",
            "title": "Margin before rounding",
            "description": (
                "The margin of the published 95% interval, before its bounds are rounded "
                "outward to the base."
            ),
            "constraints": {"required": True, "minimum": 0},
        },
    ]
    if noisy is not None:  # measured alone: the noisy count of each cell, as drawn
        fields.append(
            {
                "name": "noisy_count",
                "type": "integer",
                "title": "Noisy count as drawn",
                "description": (
                    f"The count OpenDP released for the cell: the exact count plus "
                    f"{noisy.distribution.lower()} noise of scale {noisy.scale:.6g}. Empty on "
                    "total rows, which are not measured but estimated."
                ),
            }
        )
    fields.append(_total_flag_field(total_label))
    resource = _csv_resource(
        _unrounded_name(table.name),
        path,
        f"{table.title}: unrounded estimates",
        "For analysts: the unrounded estimates behind the published table, their standard "
        "errors and the noisy counts as drawn. Use these for modelling (they are unbiased); "
        "use the published table for quoting figures.",
    )
    resource["path"] = f"data/{UNROUNDED}/{path.name}"
    resource["schema"] = {"fields": fields, "missingValues": [""], "primaryKey": list(table.by)}
    resource["unrounded"] = (
        {"table": table.name, "distribution": noisy.distribution, "scale": noisy.scale}
        if noisy is not None
        else {"table": table.name, "noisy_measurements": NOISY_MEASUREMENTS}
    )
    return resource


def _noisy_measurements_resource(content: ReleaseContent, path: Path) -> dict[str, Any]:
    """The noisy answers of every strategy's queries, as OpenDP drew them (zCDP)."""
    designs = content.measurements.designs
    names = [query.name for design in designs for query in design.queries]
    resource = _csv_resource(
        NOISY_MEASUREMENTS,
        path,
        "Noisy measurements as drawn",
        "For analysts: the noisy answers of the integer queries each input's tables were "
        "measured with, as OpenDP drew them, one row per answer. The queries are public: "
        "publisher's strategy.plan regenerates them from the release spec (the method is in "
        "privacy.measurements); every unrounded estimate is their least-squares estimate.",
    )
    resource["path"] = f"data/{UNROUNDED}/{path.name}"
    resource["schema"] = {
        "fields": [
            {
                "name": "measurement",
                "type": "string",
                "title": "Measurement",
                "description": "The noisy vector the answer belongs to.",
                "constraints": {"required": True, "enum": names},
            },
            {
                "name": "position",
                "type": "integer",
                "title": "Position",
                "description": "The answer's position in its vector, from 0.",
                "constraints": {"required": True, "minimum": 0},
            },
            {
                "name": "noisy_answer",
                "type": "integer",
                "title": "Noisy answer",
                "description": "The exact integer answer plus OpenDP's integer noise.",
                "constraints": {"required": True},
            },
        ],
        "missingValues": [""],
        "primaryKey": ["measurement", "position"],
    }
    resource["unrounded"] = {
        "measurements": [
            {"name": query.name, "distribution": query.distribution, "scale": query.scale}
            for design in designs
            for query in design.queries
        ]
    }
    return resource


def _percent(share: float | None) -> float | None:
    return None if share is None else round(100.0 * share, 1)


def _shares_frame(content: ReleaseContent) -> pl.DataFrame:
    shares = content.shares
    described = [share_descriptions(content.spec, s.share) for s in shares]
    return pl.DataFrame(
        {
            "share": [s.share.name for s in shares],
            "description": [s.share.title for s in shares],
            "numerator": [numerator for numerator, _ in described],
            "denominator": [denominator for _, denominator in described],
            "table": [s.share.table for s in shares],
            "percent": [_percent(s.estimate) for s in shares],
            "lower_95": [_percent(s.lower_95) for s in shares],
            "upper_95": [_percent(s.upper_95) for s in shares],
        },
        schema={
            "share": pl.String,
            "description": pl.String,
            "numerator": pl.String,
            "denominator": pl.String,
            "table": pl.String,
            "percent": pl.Float64,
            "lower_95": pl.Float64,
            "upper_95": pl.Float64,
        },
    )


def share_descriptions(spec: ReleaseSpec, share: Share) -> tuple[str, str]:
    """The numerator and the denominator of a share in plain words, from its selections and
    the categories' titles: ("crimes whose environment is Familial", "all crimes, including
    those whose environment is Unknown"). Says when the denominator leaves out an unknown key.
    """
    table = spec.table(share.table)
    counted = table.counts
    categories = {column: spec.category_of(table, column) for column in table.by}
    denominator = {
        column: [key for key in categories[column].values if key in keys]
        for column, keys in share.denominator.items()
    }
    # The numerator's cells are those of the denominator that the numerator selects.
    numerator = dict(denominator)
    for column, keys in share.numerator.items():
        numerator[column] = [key for key in numerator.get(column, keys) if key in keys]

    def clauses(selection: dict[str, list[str]]) -> list[str]:
        said = []
        for column, keys in selection.items():
            category = categories[column]
            title = _lower_first(category.title)
            every = list(category.values)
            if keys == every:
                continue
            if category.unknown and keys == [k for k in every if k != category.unknown]:
                said.append(f"whose {title} is known")
            else:
                said.append(f"whose {title} is {_either(keys)}")
        return said

    def unknowns(selection: dict[str, list[str]], left_out: bool) -> list[str]:
        said = []
        for column in dict.fromkeys([*share.numerator, *share.denominator]):
            unknown = categories[column].unknown
            if unknown is None:
                continue
            title = _lower_first(categories[column].title)
            excluded = column in selection and unknown not in selection[column]
            if excluded == left_out:
                said.append(f"those whose {title} is {unknown}")
        return said

    said = clauses(numerator)
    numerator_text = f"{counted} " + " and ".join(said) if said else f"all {counted}"
    said = clauses(denominator)
    denominator_text = f"{counted} " + " and ".join(said) if said else f"all {counted}"
    included = unknowns(denominator, left_out=False)
    if included:
        denominator_text += ", including " + " and ".join(included)
    excluded = unknowns(denominator, left_out=True)
    if excluded:
        denominator_text += " (" + " and ".join(excluded) + " are left out)"
    return numerator_text, denominator_text


def _lower_first(title: str) -> str:
    """A category title inside a sentence: "Age band" -> "age band", "ONS group" kept."""
    first, _, rest = title.partition(" ")
    if len(first) > 1 and not first[1:].islower():
        return title
    return first[:1].lower() + first[1:] + (f" {rest}" if rest else "")


def _either(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " or " + keys[-1]


def _shares_resource(content: ReleaseContent, path: Path) -> dict[str, Any]:
    names = [s.share.name for s in content.shares]
    resource = _csv_resource(
        SHARES_RESOURCE,
        path,
        "Headline shares",
        "Headline percentages computed from the unrounded estimates of one table, with "
        "95% intervals that allow for the noise in both numerator and denominator.",
    )

    def percent_field(name: str, title: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": "number",
            "title": title,
            "description": "In percent, to one decimal place.",
            "constraints": {"minimum": 0, "maximum": 100},
        }

    resource["schema"] = {
        "fields": [
            {
                "name": "share",
                "type": "string",
                "title": "Share",
                "description": "The short name of the headline share.",
                "constraints": {"required": True, "unique": True, "enum": names},
            },
            {
                "name": "description",
                "type": "string",
                "title": "Description",
                "description": "What the share measures.",
            },
            {
                "name": "numerator",
                "type": "string",
                "title": "Numerator",
                "description": "What the share counts, in words: the cells of the table it "
                "adds up.",
            },
            {
                "name": "denominator",
                "type": "string",
                "title": "Denominator",
                "description": "What the share is a share of, in words: the cells of the "
                "table it divides by, saying when an unknown category is left out.",
            },
            {
                "name": "table",
                "type": "string",
                "title": "Table",
                "description": "The table the share is computed from, before rounding.",
                "constraints": {"enum": sorted({s.share.table for s in content.shares})},
            },
            percent_field("percent", "Estimated share"),
            percent_field("lower_95", "Lower bound of the 95% interval"),
            percent_field("upper_95", "Upper bound of the 95% interval"),
        ],
        "missingValues": [""],
        "primaryKey": ["share"],
    }
    return resource


def _site_facts(release: Release) -> dict[str, Any]:
    """What the site says about the release beyond its figures, when the spec says it:
    the statistics status, the responsible statistician, the press office, related pages,
    the release's own terms and where every version can be found."""
    facts: dict[str, Any] = {
        "statistics_status": release.statistics_status,
        "versions_url": release.versions_url,
        "press": release.press.model_dump(exclude_defaults=True) if release.press else None,
        "related": [link.model_dump() for link in release.related],
        "glossary": dict(release.glossary),
    }
    contact = release.contact.model_dump(include={"statistician", "phone"}, exclude_defaults=True)
    return {
        "contact": {"name": release.contact.name, "email": release.contact.email, **contact}
    } | {key: value for key, value in facts.items() if value}


def _descriptor(content: ReleaseContent, resources: list[dict[str, Any]]) -> dict[str, Any]:
    spec = content.spec
    release = spec.release
    measured = content.measurements
    licence_title, licence_url = LICENCES[release.licence]
    published = release.published or date.today()
    contributors: list[dict[str, Any]] = [
        {"title": release.publisher, "roles": ["publisher"]},
        {"title": release.contact.name, "email": release.contact.email, "roles": ["contact"]},
    ]
    return {
        "$schema": PROFILE,
        "name": release.id,
        "id": f"urn:publisher:{release.id}:{release.version}",
        **({"homepage": release.url} if release.url else {}),
        "title": release.title,
        "description": release.description,
        "version": release.version,
        "created": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        # The v2 profile wants at least one keyword when the key is there: none, no key.
        **({"keywords": list(release.keywords)} if release.keywords else {}),
        "temporal": {"description": release.period},
        "spatial": {"description": release.geography or "Not stated"},
        "licenses": [{"name": release.licence, "title": licence_title, "path": licence_url}],
        "sources": [
            {k: v for k, v in source.model_dump().items() if v} for source in release.sources
        ],
        "contributors": contributors,
        "resources": resources,
        "release": {
            "tool": f"publisher {version('publisher')}",
            "opendp": measured.opendp_version,
            "period": release.period,
            "published": published.isoformat(),
            "geography": release.geography,
            "synthetic": release.synthetic,
            "status": release.status,
            "next_update": release.next_update,
            "revises": content.revises,
            **_site_facts(release),
        },
        "archive": _archive_list(content),
        "privacy": guarantee.privacy_section(spec, measured),
        "truncation": guarantee.truncation_section(spec, list(content.truncation)),
        "disclosure": {
            "rounding_base": spec.disclosure.rounding_base,
            "threshold": spec.disclosure.threshold,
            "total_label": spec.disclosure.total_label,
        },
        "estimation": {
            "method": "least squares",
            "description": _estimation_text(measured),
            "groups": [
                {"input": name, "tables": [t.name for t in spec.tables if t.input == name]}
                for name in spec.inputs
                if any(t.input == name for t in spec.tables)
            ],
        },
        "markers": content.markers,
        "shares": [
            {
                "name": s.share.name,
                "title": s.share.title,
                "statement": s.share.statement,
                "table": s.share.table,
                "numerator": {k: list(v) for k, v in s.share.numerator.items()},
                "denominator": {k: list(v) for k, v in s.share.denominator.items()},
                "numerator_description": share_descriptions(spec, s.share)[0],
                "denominator_description": share_descriptions(spec, s.share)[1],
                "estimate": s.estimate,
                "lower_95": s.lower_95,
                "upper_95": s.upper_95,
            }
            for s in content.shares
        ],
    }


def check_plain(package_dir: Path) -> None:
    """Refuse a package folder holding anything but folders and regular files (a link, a
    pipe, a device, a socket) before anything reads it: a reader could block on it, or
    follow it out of the package and publish what it finds."""
    if not package_dir.is_dir():
        return  # the reader reports a missing package
    problems = [
        f"{package_dir / relative}: is {what}; a package holds only regular files (remove it "
        "and check the package with `publisher validate`)"
        for relative, what in files.walk_regular(package_dir)
        if what is not None
    ]
    if problems:
        raise PackageError(problems)


def validate(package_dir: Path) -> list[str]:
    """Validate a package: frictionless (every table against its schema), the Data Package
    v2 profile and the publisher's own rules (see :mod:`publisher.checks`); one line per
    problem, empty when valid."""
    return _validated(package_dir)[0]


def _validated(package_dir: Path) -> tuple[list[str], model.Package | None]:
    """:func:`validate`'s problems, and the package as the model reads it when there are
    none (so that a caller needing both reads it once)."""
    descriptor = package_dir / DESCRIPTOR
    if not descriptor.is_file():
        return [f"{descriptor}: not found; give the directory of a data package"], None
    problems = checks.check_package(package_dir)
    # Frictionless opens what the descriptor names (and fetches URLs): only once every
    # path is known to be a plain file of the package, so that it never follows a link
    # out of it (and quotes a private file's rows) or blocks on a pipe.
    if checks.safe_to_open(package_dir):
        problems = _frictionless_problems(descriptor) + problems
    if problems:
        return problems, None
    return _model_problems(package_dir)


def _frictionless_problems(descriptor: Path) -> list[str]:
    # Imported here: it takes a while, and a release imports it first on the thread of its
    # dry run, beside the reading of the inputs, rather than before the reading starts.
    import frictionless

    try:
        report = frictionless.validate(str(descriptor))
    except Exception as error:  # frictionless raises many kinds for unreadable descriptors
        return [f"{descriptor}: cannot be read as a data package ({type(error).__name__})"]
    problems = []
    for task in report.tasks:
        place = descriptor.parent / task.place if task.place else descriptor
        problems += [f"{place}: {task.name}: {item.message}" for item in task.errors]
    problems += [f"{descriptor}: {item.message}" for item in report.errors]
    return problems
