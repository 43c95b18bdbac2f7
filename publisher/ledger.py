"""The privacy-budget ledger: a private SQLite file recording every spend of every dataset.

A release reserves its whole loss in one transaction before any noise is drawn, and commits
the loss OpenDP accounted, with the hashes of the files it wrote, once the package is in
place. A release that fails after reserving stays counted: noise that was drawn is spent.

Rules the ledger enforces, even when several processes release against one file at once:

- a dataset's privacy-loss model and lifetime cap are fixed by its first release;
- a version of a dataset is released once: a second attempt in any status is refused,
  because re-drawing noise for the same figures lets an attacker average it away;
- the losses of all reserved, committed and failed releases of a dataset never pass its cap.

Locking: every change runs in a ``BEGIN IMMEDIATE`` transaction, which takes SQLite's write
lock before reading what is spent, so two releases cannot both see room for themselves.
Writers wait for each other (busy timeout, then retries with backoff) for a bounded time;
the database is in WAL mode, so reading the budget never waits for a writer.

A dataset's cap belongs to its data, not to its name: every release records a keyed
fingerprint of each input (HMAC-SHA256 with a random key kept in the ledger, so the ledger
holds no plain hash of private bytes), and a release whose inputs are in another dataset's
history is refused, unless the spec says why it deliberately starts a new dataset on them
(the reason is recorded).

A reservation whose process has gone (killed) is marked failed by the next reservation on
the same machine: its loss stays counted.

Nothing from the data is stored: only keyed fingerprints of the input files and the
SHA-256 hashes of the published files.

Schema (``PRAGMA application_id`` = :data:`APPLICATION_ID`, ``PRAGMA user_version`` =
:data:`SCHEMA_VERSION`)::

    meta(key PK, value)                     -- the fingerprint key
    datasets(dataset PK, model, cap, registered_at, reason)
    releases(id PK, dataset FK, release_id, version, kind, status, model, cap, loss,
             reserved_loss, fingerprint, spec_hash, publisher_version, opendp_version,
             reserved_at, committed_at, failed_at, failure, pid, host, reason,
             UNIQUE(dataset, version))
    release_tables(release FK, name, planned_loss, loss, PK(release, name))
    release_units(release FK, unit, planned_loss, loss, PK(release, unit))
    release_inputs(release FK, name, fingerprint, strategy, PK(release, name))
    release_files(release FK, path, sha256, PK(release, path))

``release_inputs.strategy`` says how the input's tables were measured (the method of
:mod:`publisher.strategy`'s design under zCDP, "each table alone" under pure DP).

Earlier ledgers are upgraded when opened for writing: version 1's old fingerprints, plain
hashes, are blanked; version 2 gains the strategy column (NULL for its releases).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from publisher import files, staging
from publisher.errors import BudgetError, InputError

__all__ = [
    "BudgetReport",
    "DatasetSummary",
    "Ledger",
    "Reservation",
    "SpendRecord",
    "SpendRequest",
    "file_hashes",
    "fingerprint",
    "report",
]

SCHEMA_VERSION = 3
# "PBLG" in ASCII: marks the file as a publisher ledger, so another SQLite file is refused.
APPLICATION_ID = 0x50424C47
# Relative tolerance on loss sums, so that 0.5 + 0.5 fits a cap of 1.0 despite rounding.
TOLERANCE = 1e-9
BUSY_SECONDS = 60.0
CHUNK_BYTES = 1 << 20
REASON_CHARS = 200
ABANDONED = "its process ended before the release finished (killed?); the loss stays counted"

Model = Literal["zcdp", "pure"]
Kind = Literal["release", "bounds"]
Status = Literal["reserved", "committed", "failed"]
STATUSES: tuple[Status, ...] = ("reserved", "committed", "failed")
UNIT = {"zcdp": "rho", "pure": "epsilon"}

_SCHEMA = """
CREATE TABLE datasets (
    dataset TEXT PRIMARY KEY,
    model TEXT NOT NULL CHECK (model IN ('zcdp', 'pure')),
    cap REAL NOT NULL CHECK (cap > 0),
    registered_at TEXT NOT NULL,
    reason TEXT
);
CREATE TABLE releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL REFERENCES datasets (dataset),
    release_id TEXT NOT NULL,
    version TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'release' CHECK (kind IN ('release', 'bounds')),
    status TEXT NOT NULL CHECK (status IN ('reserved', 'committed', 'failed')),
    model TEXT NOT NULL,
    cap REAL NOT NULL,
    loss REAL NOT NULL CHECK (loss >= 0),
    reserved_loss REAL NOT NULL CHECK (reserved_loss >= 0),
    fingerprint TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    publisher_version TEXT NOT NULL,
    opendp_version TEXT NOT NULL,
    reserved_at TEXT NOT NULL,
    committed_at TEXT,
    failed_at TEXT,
    failure TEXT,
    pid INTEGER,
    host TEXT,
    reason TEXT,
    UNIQUE (dataset, version)
);
CREATE TABLE release_tables (
    release INTEGER NOT NULL REFERENCES releases (id),
    name TEXT NOT NULL,
    planned_loss REAL NOT NULL CHECK (planned_loss >= 0),
    loss REAL CHECK (loss >= 0),
    PRIMARY KEY (release, name)
);
CREATE TABLE release_files (
    release INTEGER NOT NULL REFERENCES releases (id),
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (release, path)
);
"""
# Added by schema version 2 (also run to upgrade a version 1 ledger).
_SCHEMA_2 = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE release_units (
    release INTEGER NOT NULL REFERENCES releases (id),
    unit TEXT NOT NULL,
    planned_loss REAL NOT NULL CHECK (planned_loss >= 0),
    loss REAL CHECK (loss >= 0),
    PRIMARY KEY (release, unit)
);
CREATE TABLE release_inputs (
    release INTEGER NOT NULL REFERENCES releases (id),
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    strategy TEXT,
    PRIMARY KEY (release, name)
);
CREATE INDEX release_inputs_by_fingerprint ON release_inputs (fingerprint);
"""
_UPGRADE_1_TO_2 = """
ALTER TABLE datasets ADD COLUMN reason TEXT;
ALTER TABLE releases ADD COLUMN kind TEXT NOT NULL DEFAULT 'release'
    CHECK (kind IN ('release', 'bounds'));
ALTER TABLE releases ADD COLUMN pid INTEGER;
ALTER TABLE releases ADD COLUMN host TEXT;
ALTER TABLE releases ADD COLUMN reason TEXT;
UPDATE releases SET fingerprint = '';
"""
# Schema version 3 records how each input's tables were measured (release_inputs.strategy).
_UPGRADE_2_TO_3 = """
ALTER TABLE release_inputs ADD COLUMN strategy TEXT;
"""
_TABLES = {
    "meta",
    "datasets",
    "releases",
    "release_tables",
    "release_units",
    "release_inputs",
    "release_files",
}
_KEY = "fingerprint_key"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

T = TypeVar("T")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _fits(total: float, limit: float) -> bool:
    return total <= limit * (1.0 + TOLERANCE)


def _number(name: str, value: float, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be a finite {kind} number, not {value!r}")


def _losses(name: str, losses: Mapping[str, float]) -> None:
    if not losses:
        raise ValueError(f"{name} must name at least one table")
    for table, loss in losses.items():
        _number(f"{name}[{table!r}]", loss)


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _round_down(value: float) -> float:
    """``value`` cut (never rounded up) to the 6 significant digits :func:`_fmt` shows."""
    if value <= 0:
        return 0.0
    scale = 10.0 ** (5 - math.floor(math.log10(value)))
    return math.floor(value * scale) / scale


@dataclass(frozen=True)
class SpendRequest:
    """What a release asks to spend, in its model's unit (rho for zCDP, epsilon for pure DP).

    Built from the validated spec before any noise is drawn. Refuses NaN, infinities and
    negative losses when built, so a bad value can never reach the ledger.
    """

    dataset: str
    inputs: dict[str, str]  # input name -> keyed fingerprint, see :meth:`Ledger.fingerprints`
    release_id: str
    version: str
    model: Model
    loss: float  # the largest loss of any person (each unit's total is at most this)
    table_losses: dict[str, float]  # planned loss per measurement
    cap: float  # the spec's lifetime cap for the dataset
    spec_hash: str
    publisher_version: str
    opendp_version: str
    unit_losses: dict[str, float] = field(default_factory=dict)  # planned loss per unit
    kind: Kind = "release"
    # Why the release deliberately starts a new dataset on inputs another dataset released.
    new_dataset_reason: str | None = None
    # Input name -> how its tables are measured (recorded; see the module docstring).
    strategies: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in UNIT:
            raise ValueError(f"model must be 'zcdp' or 'pure', not {self.model!r}")
        if self.kind not in ("release", "bounds"):
            raise ValueError(f"kind must be 'release' or 'bounds', not {self.kind!r}")
        for name in ("dataset", "release_id", "version", "spec_hash"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        if not self.inputs or not all(_HEX64.match(value) for value in self.inputs.values()):
            raise ValueError("inputs must map each input to its keyed fingerprint")
        _number("loss", self.loss, positive=True)
        _number("cap", self.cap, positive=True)
        _losses("table_losses", self.table_losses)
        # Each measurement's part is a part of every unit's loss: together, the total.
        if not _fits(math.fsum(self.table_losses.values()), self.loss):
            raise ValueError("the planned table losses add up to more than the total loss")
        for unit, loss in self.unit_losses.items():
            _number(f"unit_losses[{unit!r}]", loss)
            if not _fits(loss, self.loss):
                raise ValueError(f"the planned loss of unit {unit!r} is above the total loss")


@dataclass(frozen=True)
class Reservation:
    """A reserved spend: hand it back to :meth:`Ledger.commit` or :meth:`Ledger.fail`."""

    id: int
    dataset: str
    release_id: str
    version: str
    model: Model
    loss: float
    table_losses: dict[str, float]
    unit_losses: dict[str, float] = field(default_factory=dict)

    def check(
        self,
        *,
        loss: float,
        table_losses: Mapping[str, float],
        unit_losses: Mapping[str, float] | None = None,
    ) -> None:
        """Refuse (:class:`BudgetError`) accounted losses that :meth:`Ledger.commit` would.

        Call it as soon as OpenDP has measured, before anything is written, so a release
        that spent more than it reserved never publishes a package.
        """
        where = f"release {self.release_id} {self.version}"
        _check_accounted(where, UNIT[self.model], self.loss, self.table_losses, loss, table_losses)
        _check_units(where, UNIT[self.model], self.unit_losses, unit_losses or {})


def _check_accounted(
    where: str,
    unit: str,
    reserved_loss: float,
    planned: Mapping[str, float],
    loss: float,
    table_losses: Mapping[str, float],
) -> None:
    if not _fits(loss, reserved_loss):
        raise BudgetError(
            f"{where}: OpenDP accounted {unit} = {_fmt(loss)}, more than the "
            f"{_fmt(reserved_loss)} reserved; it is not committed"
        )
    if set(planned) != set(table_losses):
        raise BudgetError(
            f"{where}: the committed tables {sorted(table_losses)} are not the reserved "
            f"tables {sorted(planned)}; it is not committed"
        )
    for name, table_loss in table_losses.items():
        if not _fits(table_loss, planned[name]):
            raise BudgetError(
                f"{where}: table '{name}' spent {unit} = {_fmt(table_loss)}, more than "
                f"the {_fmt(planned[name])} reserved; it is not committed"
            )


def _check_units(
    where: str, unit: str, planned: Mapping[str, float], accounted: Mapping[str, float]
) -> None:
    for name, loss in accounted.items():
        if name not in planned or not _fits(loss, planned[name]):
            raise BudgetError(
                f"{where}: unit '{name}' spent {unit} = {_fmt(loss)}, more than the "
                f"{_fmt(planned.get(name, 0.0))} reserved; it is not committed"
            )


@dataclass(frozen=True)
class SpendRecord:
    """One release row of the ledger, as recorded.

    ``loss`` and ``table_losses`` are what counts against the cap: OpenDP's accounting once
    committed, the reserved (planned) losses while reserved or after a failure.
    """

    id: int
    dataset: str
    release_id: str
    version: str
    kind: Kind
    status: Status
    model: Model
    cap: float
    loss: float
    reserved_loss: float
    table_losses: dict[str, float]
    planned_table_losses: dict[str, float]
    unit_losses: dict[str, float]  # accounted once committed, planned otherwise
    inputs: dict[str, str]  # input name -> keyed fingerprint (never printed)
    strategies: dict[str, str]  # input name -> how its tables were measured (schema 3)
    spec_hash: str
    publisher_version: str
    opendp_version: str
    files: dict[str, str]  # relative path -> sha256 hex, once committed
    reserved_at: str
    committed_at: str | None
    failed_at: str | None
    failure: str | None
    reason: str | None  # why it started a new dataset on another dataset's inputs


@dataclass(frozen=True)
class DatasetSummary:
    """A dataset's budget: its fixed model and cap, what is spent and what remains."""

    dataset: str
    model: Model
    cap: float
    spent: float
    registered_at: str
    releases: dict[Status, int]  # number of releases by status
    reason: str | None = None  # why it was started on another dataset's inputs

    @property
    def remaining(self) -> float:
        return max(0.0, self.cap - self.spent)

    @property
    def unit(self) -> str:
        """The name of the loss: "rho" for zCDP, "epsilon" for pure DP."""
        return UNIT[self.model]


def _is_busy(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(error).lower()
    return "locked" in text or "busy" in text


class Ledger:
    """A privacy-budget ledger file, opened (and created unless ``read_only``) at ``path``.

    Each operation opens its own short connection, so a ``Ledger`` may be kept for the whole
    release and is safe to use from forked processes. ``busy_seconds`` bounds how long an
    operation waits for other processes holding the file before it gives up.
    """

    def __init__(
        self, path: Path, *, read_only: bool = False, busy_seconds: float = BUSY_SECONDS
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.busy_seconds = busy_seconds
        if os.path.lexists(self.path) and not self.path.exists():
            # A link to itself or to nothing: SQLite would fail on it, or create its target.
            raise BudgetError(
                f"{self.path}: is a link that leads to no file (a loop, or a missing target); "
                "set privacy.ledger to a file path"
            )
        if self.path.is_dir():
            raise BudgetError(
                f"{self.path}: is a directory, not a ledger file; set privacy.ledger to a file path"
            )
        if self.path.exists() and not self.path.is_file():
            # A pipe, a device or a socket: SQLite would block on it or read garbage.
            raise BudgetError(
                f"{self.path}: is {files.describe(self.path.stat().st_mode)}, not a ledger "
                "file; set privacy.ledger to a file path"
            )
        if read_only:
            if not self.path.exists():
                raise BudgetError(f"no ledger at {self.path}; it is created by the first release")
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise BudgetError(
                    f"{self.path}: cannot create the ledger's folder ({error.strerror}); "
                    "check the path and its permissions"
                ) from None
        # Check under a read lock first, so opening never waits for a writer; take the
        # write lock only to create or upgrade the schema (re-checked: another process may
        # be first).
        if self._run(lambda connection: self._open_schema(connection, create=False), write=False):
            self._run(
                lambda connection: self._open_schema(connection, create=True),
                write=True,
                setup=True,
            )

    # -- connections and transactions -------------------------------------------------

    def _connect(self, timeout: float) -> sqlite3.Connection:
        if self.read_only:
            target, uri = self.path.resolve().as_uri() + "?mode=ro", True
        else:
            target, uri = str(self.path), False
        # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE).
        connection = sqlite3.connect(target, timeout=timeout, isolation_level=None, uri=uri)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA foreign_keys = ON")
        # A reservation must survive a power cut: WAL's default (NORMAL) could lose it.
        connection.execute("PRAGMA synchronous = FULL")
        return connection

    def _run(
        self,
        work: Callable[[sqlite3.Connection], T],
        *,
        write: bool,
        setup: bool = False,
    ) -> T:
        """Run ``work`` in one transaction, retrying while other processes hold the file.

        A retry runs ``work`` again from the start in a new transaction, so it only reads
        and writes the database.
        """
        if write and self.read_only:
            raise BudgetError(f"{self.path}: the ledger was opened read-only; it records nothing")
        deadline = time.monotonic() + self.busy_seconds
        pause = 0.01
        while True:
            remaining = deadline - time.monotonic()
            try:
                with closing(self._connect(timeout=max(remaining, 0.1))) as connection:
                    if setup and write:
                        # Set once per file, outside a transaction; readers then never wait.
                        connection.execute("PRAGMA journal_mode = WAL")
                    connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    try:
                        result = work(connection)
                    except BaseException:
                        # Closing rolls back too; a failed ROLLBACK must not hide the cause.
                        with suppress(sqlite3.Error):
                            connection.execute("ROLLBACK")
                        raise
                    connection.execute("COMMIT")
                    return result
            except sqlite3.Error as error:
                if not _is_busy(error):
                    raise self._unusable(error) from None
                if time.monotonic() + pause > deadline:
                    raise BudgetError(
                        f"{self.path}: the ledger is busy (another release held it for more "
                        f"than {self.busy_seconds:g} s); try again when it has finished"
                    ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _unusable(self, error: sqlite3.Error) -> BudgetError:
        code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            return BudgetError(
                f"{self.path}: is not a readable ledger (not an SQLite database, or damaged); "
                "restore it from a backup or point privacy.ledger at the right file"
            )
        if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN):
            if self.read_only:
                return BudgetError(
                    f"{self.path}: the ledger cannot be read; check the permissions of the file "
                    "and its folder (reading needs to create its -shm file beside it)"
                )
            return BudgetError(
                f"{self.path}: the ledger cannot be opened for writing; check that the file and "
                "its folder exist and are writable"
            )
        return BudgetError(
            f"{self.path}: the ledger cannot be used ({error}); check the file, or restore it "
            "from a backup"
        )

    def _open_schema(self, connection: sqlite3.Connection, *, create: bool) -> bool:
        """Check the file is this publisher's ledger; True when it needs the write lock to
        be created or upgraded (and, with ``create``, create or upgrade it)."""
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        schema_version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if application_id == 0 and schema_version == 0 and not tables:
            if self.read_only:
                raise BudgetError(
                    f"no ledger at {self.path} (the file is empty); it is created by the first "
                    "release"
                )
            if create:
                self._create(connection, _SCHEMA + _SCHEMA_2)
            return True
        if application_id != APPLICATION_ID:
            raise BudgetError(
                f"{self.path}: is an SQLite database but not a publisher ledger; point "
                "privacy.ledger at the ledger file or at a new path"
            )
        if schema_version > SCHEMA_VERSION:
            raise BudgetError(
                f"{self.path}: the ledger has schema version {schema_version}, newer than this "
                f"publisher understands ({SCHEMA_VERSION}); upgrade publisher"
            )
        if schema_version == 1 and tables >= {"datasets", "releases", "release_tables"}:
            if self.read_only:
                raise BudgetError(
                    f"{self.path}: the ledger was written by an earlier publisher (schema "
                    "version 1); the next `publisher release` upgrades it"
                )
            if create:
                self._create(connection, _UPGRADE_1_TO_2 + _SCHEMA_2)
            return True
        if schema_version == 2 and tables >= _TABLES:
            if self.read_only:
                return False  # readable as it is: its releases have no strategy
            if create:
                connection.execute(_UPGRADE_2_TO_3.strip().rstrip(";"))
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return True
        if schema_version != SCHEMA_VERSION or not tables >= _TABLES:
            raise BudgetError(
                f"{self.path}: the ledger's schema is incomplete (version {schema_version}); "
                "restore it from a backup"
            )
        return False

    @staticmethod
    def _create(connection: sqlite3.Connection, script: str) -> None:
        for statement in script.split(";"):
            if statement.strip():
                connection.execute(statement)
        # The key of the inputs' fingerprints: random, and it never leaves the ledger.
        connection.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (_KEY, os.urandom(32)))
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def fingerprints(
        self, paths: Mapping[str, Path], digests: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Each input's keyed fingerprint (see :func:`fingerprint`), with this ledger's key.

        An input in ``digests`` (a Spark table, digested where it lives: no file here) is
        fingerprinted by its digest instead of its files, keyed the same way.
        """

        def key(connection: sqlite3.Connection) -> bytes:
            row = connection.execute("SELECT value FROM meta WHERE key = ?", (_KEY,)).fetchone()
            if row is None:
                raise BudgetError(f"{self.path}: the ledger has lost its key; restore it")
            return bytes(row[0])

        secret = self._run(key, write=False)
        digests = digests or {}
        return {
            name: (
                hmac.new(
                    secret, b"publisher-table-digest-v1\0" + digests[name].encode(), "sha256"
                ).hexdigest()
                if name in digests
                else fingerprint([path], secret)
            )
            for name, path in paths.items()
        }

    # -- spending -----------------------------------------------------------------------

    def reserve(self, request: SpendRequest) -> Reservation:
        """Reserve ``request.loss`` for a release, before any noise is drawn.

        Refused with :class:`BudgetError`, and nothing recorded, when the dataset's model or
        cap differ from its first release, when the version is already in the ledger (in
        any status), or when the spend would pass the cap.
        """
        # Its own transaction: a refusal below must not undo it.
        self._run(self._resolve_abandoned, write=True)
        return self._run(lambda connection: self._reserve(connection, request), write=True)

    def preview(self, request: SpendRequest) -> None:
        """Raise the :class:`BudgetError` that :meth:`reserve` would raise, recording nothing
        (for ``publisher check``). Another release may still spend first."""
        refusal = self._run(lambda connection: self._refusal(connection, request), write=False)
        if refusal is not None:
            raise refusal

    def _reserve(self, connection: sqlite3.Connection, request: SpendRequest) -> Reservation:
        refusal = self._refusal(connection, request)
        if refusal is not None:
            raise refusal
        now = _now()
        reason = request.new_dataset_reason
        connection.execute(
            "INSERT OR IGNORE INTO datasets (dataset, model, cap, registered_at, reason) "
            "VALUES (?, ?, ?, ?, ?)",
            (request.dataset, request.model, request.cap, now, reason),
        )
        cursor = connection.execute(
            "INSERT INTO releases (dataset, release_id, version, kind, status, model, cap, "
            "loss, reserved_loss, fingerprint, spec_hash, publisher_version, opendp_version, "
            "reserved_at, pid, host, reason) "
            "VALUES (?, ?, ?, ?, 'reserved', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request.dataset,
                request.release_id,
                request.version,
                request.kind,
                request.model,
                request.cap,
                request.loss,
                request.loss,
                _combined(request.inputs),
                request.spec_hash,
                request.publisher_version,
                request.opendp_version,
                now,
                os.getpid(),
                socket.gethostname(),
                reason,
            ),
        )
        row_id = cursor.lastrowid
        assert row_id is not None  # an INSERT always sets it
        connection.executemany(
            "INSERT INTO release_tables (release, name, planned_loss) VALUES (?, ?, ?)",
            [(row_id, name, loss) for name, loss in request.table_losses.items()],
        )
        connection.executemany(
            "INSERT INTO release_units (release, unit, planned_loss) VALUES (?, ?, ?)",
            [(row_id, unit, loss) for unit, loss in request.unit_losses.items()],
        )
        connection.executemany(
            "INSERT INTO release_inputs (release, name, fingerprint, strategy) VALUES (?, ?, ?, ?)",
            [
                (row_id, name, value, request.strategies.get(name))
                for name, value in request.inputs.items()
            ],
        )
        return Reservation(
            id=row_id,
            dataset=request.dataset,
            release_id=request.release_id,
            version=request.version,
            model=request.model,
            loss=request.loss,
            table_losses=dict(request.table_losses),
            unit_losses=dict(request.unit_losses),
        )

    def _resolve_abandoned(self, connection: sqlite3.Connection) -> None:
        """Mark failed the reservations of this machine whose process has ended (killed
        before it could record its end): their loss stays counted."""
        host = socket.gethostname()
        for row in connection.execute(
            "SELECT id, pid FROM releases WHERE status = 'reserved' AND host = ?", (host,)
        ).fetchall():
            if row["pid"] is not None and not staging.alive(row["pid"]):
                connection.execute(
                    "UPDATE releases SET status = 'failed', failed_at = ?, failure = ? "
                    "WHERE id = ?",
                    (_now(), ABANDONED, row["id"]),
                )

    def _refusal(self, connection: sqlite3.Connection, request: SpendRequest) -> BudgetError | None:
        """Why ``request`` must be refused, if it must: its inputs are another dataset's,
        model or cap changed, version already in the ledger, or the cap would be passed."""
        unit = UNIT[request.model]
        claimed = self._claimed_by_another(connection, request)
        if claimed is not None and not request.new_dataset_reason:
            return claimed
        registered = connection.execute(
            "SELECT model, cap FROM datasets WHERE dataset = ?", (request.dataset,)
        ).fetchone()
        if registered is not None and (
            registered["model"] != request.model
            or not math.isclose(registered["cap"], request.cap, rel_tol=TOLERANCE)
        ):
            held = f"model '{registered['model']}' with cap "
            held += f"{UNIT[registered['model']]} = {_fmt(registered['cap'])}"
            return BudgetError(
                f"{self.path}: dataset '{request.dataset}' is recorded with {held}, but the "
                f"spec says model '{request.model}' with cap {unit} = {_fmt(request.cap)}; the "
                "model and cap are fixed by the dataset's first release: set privacy.model and "
                "privacy.cap back to what the ledger holds"
            )

        earlier = connection.execute(
            "SELECT status FROM releases WHERE dataset = ? AND version = ?",
            (request.dataset, request.version),
        ).fetchone()
        if earlier is not None:
            return BudgetError(
                f"{self.path}: version {request.version} of dataset '{request.dataset}' is "
                f"already in the ledger ({earlier['status']}); releasing it again would re-draw "
                "noise for the same figures, which lets an attacker average it away: release "
                "under a new release.version"
            )

        spent = self._spent(connection, request.dataset)
        if not _fits(spent + request.loss, request.cap):
            remaining = request.cap - spent
            if remaining > request.cap * TOLERANCE:
                advice = f"lower privacy.{unit} to at most {_fmt(_round_down(remaining))}"
            else:
                advice = "the dataset's budget is used up, so it cannot be released again"
            return BudgetError(
                f"{self.path}: dataset '{request.dataset}' has a lifetime cap of {unit} = "
                f"{_fmt(request.cap)}, {_fmt(spent)} is spent and this release asks for "
                f"{_fmt(request.loss)}, which would pass the cap: {advice} (nothing was spent)"
            )

        return None

    def _claimed_by_another(
        self, connection: sqlite3.Connection, request: SpendRequest
    ) -> BudgetError | None:
        """The refusal of a release whose inputs another dataset has released."""
        for name, value in request.inputs.items():
            row = connection.execute(
                "SELECT r.dataset, r.release_id, r.version FROM release_inputs AS i "
                "JOIN releases AS r ON r.id = i.release WHERE i.fingerprint = ? "
                "AND r.dataset != ? ORDER BY r.id LIMIT 1",
                (value, request.dataset),
            ).fetchone()
            if row is not None:
                return self._claimed(name, row)
        return None

    def _claimed(self, name: str, row: sqlite3.Row) -> BudgetError:
        return BudgetError(
            f"{self.path}: input '{name}' was released before under "
            f"dataset '{row['dataset']}' (release {row['release_id']} {row['version']}); a "
            "dataset's cap follows its data, not its name: set privacy.dataset to "
            f"'{row['dataset']}', or, if this is deliberately a new dataset on the same "
            "data, say why in privacy.new_dataset_reason (it is recorded)"
        )

    def commit(
        self,
        reservation: Reservation,
        *,
        table_losses: dict[str, float],
        loss: float,
        files: dict[str, str],
        unit_losses: dict[str, float] | None = None,
    ) -> SpendRecord:
        """Record a written release: OpenDP's accounted losses and the files' sha256 hashes.

        Refused when the release is not ``reserved`` (already committed or failed), when the
        tables differ from those reserved, or when a loss is more than was reserved.
        """
        _number("loss", loss)
        _losses("table_losses", table_losses)
        for path, digest in files.items():
            if not path or not _HEX64.match(digest):
                raise ValueError(f"files[{path!r}] must map a relative path to a sha256 hex")

        def work(connection: sqlite3.Connection) -> None:
            row = self._row(connection, reservation)
            if row["status"] != "reserved":
                raise BudgetError(
                    f"{self.path}: release {row['release_id']} {row['version']} is already "
                    f"{row['status']}; only a reserved release can be committed"
                )
            where = f"{self.path}: release {row['release_id']} {row['version']}"
            planned = {
                name: value
                for name, value in connection.execute(
                    "SELECT name, planned_loss FROM release_tables WHERE release = ?",
                    (reservation.id,),
                )
            }
            _check_accounted(
                where, UNIT[row["model"]], row["reserved_loss"], planned, loss, table_losses
            )
            planned_units = {
                name: value
                for name, value in connection.execute(
                    "SELECT unit, planned_loss FROM release_units WHERE release = ?",
                    (reservation.id,),
                )
            }
            _check_units(where, UNIT[row["model"]], planned_units, unit_losses or {})
            connection.execute(
                "UPDATE releases SET status = 'committed', loss = ?, committed_at = ? WHERE id = ?",
                (loss, _now(), reservation.id),
            )
            connection.executemany(
                "UPDATE release_units SET loss = ? WHERE release = ? AND unit = ?",
                [(value, reservation.id, name) for name, value in (unit_losses or {}).items()],
            )
            connection.executemany(
                "UPDATE release_tables SET loss = ? WHERE release = ? AND name = ?",
                [(value, reservation.id, name) for name, value in table_losses.items()],
            )
            connection.executemany(
                "INSERT INTO release_files (release, path, sha256) VALUES (?, ?, ?)",
                [(reservation.id, path, digest) for path, digest in sorted(files.items())],
            )

        self._run(work, write=True)
        return self.record(reservation.id)

    def fail(self, reservation: Reservation, reason: str) -> None:
        """Mark a reserved release as failed; its reserved loss stays counted as spent.

        ``reason`` is a short description of what went wrong (an error's first line or its
        class name), never a data value; it is cut to one line of 200 characters. Failing a
        release that already failed changes nothing; failing a committed one is refused.
        """
        short = " ".join(reason.split())[:REASON_CHARS] or "unknown"

        def work(connection: sqlite3.Connection) -> None:
            row = self._row(connection, reservation)
            if row["status"] == "failed":
                return
            if row["status"] != "reserved":
                raise BudgetError(
                    f"{self.path}: release {row['release_id']} {row['version']} is already "
                    f"{row['status']}; only a reserved release can be marked failed"
                )
            connection.execute(
                "UPDATE releases SET status = 'failed', failed_at = ?, failure = ? WHERE id = ?",
                (_now(), short, reservation.id),
            )

        self._run(work, write=True)

    def _row(self, connection: sqlite3.Connection, reservation: Reservation) -> sqlite3.Row:
        row: sqlite3.Row | None = connection.execute(
            "SELECT * FROM releases WHERE id = ?", (reservation.id,)
        ).fetchone()
        if row is None or (row["dataset"], row["version"]) != (
            reservation.dataset,
            reservation.version,
        ):
            raise BudgetError(
                f"{self.path}: holds no reservation for version {reservation.version} of "
                f"dataset '{reservation.dataset}'; was the ledger replaced during the release?"
            )
        return row

    # -- reading ------------------------------------------------------------------------

    @staticmethod
    def _spent(connection: sqlite3.Connection, dataset: str) -> float:
        # Every status counts: committed spent it, failed and reserved may have drawn noise.
        losses = connection.execute("SELECT loss FROM releases WHERE dataset = ?", (dataset,))
        return math.fsum(row[0] for row in losses)

    def spent(self, dataset: str) -> float:
        """The loss spent by ``dataset`` (reserved, committed and failed releases); 0 if new."""
        return self._run(lambda connection: self._spent(connection, dataset), write=False)

    def spends(self, dataset: str | None = None) -> list[SpendRecord]:
        """Every release row, of one dataset or of all, in the order they were reserved."""
        return self._run(lambda connection: self._records(connection, dataset), write=False)

    def record(self, row_id: int) -> SpendRecord:
        """One release row by its id."""
        records = self._run(
            lambda connection: self._records(connection, None, row_id=row_id), write=False
        )
        if not records:
            raise BudgetError(f"{self.path}: holds no release with id {row_id}")
        return records[0]

    def summaries(self) -> list[DatasetSummary]:
        """The budget of every dataset in the ledger, by dataset id."""
        return self._run(self._summaries, write=False)

    def summary(self, dataset: str) -> DatasetSummary | None:
        """The budget of ``dataset``, or None when it has no release yet."""
        return next((item for item in self.summaries() if item.dataset == dataset), None)

    def _records(
        self, connection: sqlite3.Connection, dataset: str | None, row_id: int | None = None
    ) -> list[SpendRecord]:
        parameters = {"id": row_id, "dataset": dataset}
        rows = connection.execute(
            "SELECT * FROM releases WHERE (:id IS NULL OR id = :id) "
            "AND (:dataset IS NULL OR dataset = :dataset) ORDER BY id",
            parameters,
        ).fetchall()
        tables: dict[int, list[sqlite3.Row]] = {}
        for table in connection.execute(
            "SELECT t.* FROM release_tables AS t JOIN releases AS r ON r.id = t.release "
            "WHERE (:id IS NULL OR r.id = :id) AND (:dataset IS NULL OR r.dataset = :dataset) "
            "ORDER BY t.rowid",
            parameters,
        ):
            tables.setdefault(table["release"], []).append(table)
        units: dict[int, dict[str, tuple[float, float | None]]] = {}
        for item in connection.execute(
            "SELECT u.* FROM release_units AS u JOIN releases AS r ON r.id = u.release "
            "WHERE (:id IS NULL OR r.id = :id) AND (:dataset IS NULL OR r.dataset = :dataset) "
            "ORDER BY u.rowid",
            parameters,
        ):
            units.setdefault(item["release"], {})[item["unit"]] = (
                item["planned_loss"],
                item["loss"],
            )
        inputs: dict[int, dict[str, str]] = {}
        strategies: dict[int, dict[str, str]] = {}
        for item in connection.execute(
            "SELECT i.* FROM release_inputs AS i JOIN releases AS r ON r.id = i.release "
            "WHERE (:id IS NULL OR r.id = :id) AND (:dataset IS NULL OR r.dataset = :dataset) "
            "ORDER BY i.rowid",
            parameters,
        ):
            inputs.setdefault(item["release"], {})[item["name"]] = item["fingerprint"]
            if "strategy" in item.keys() and item["strategy"] is not None:  # noqa: SIM118 (a Row)
                strategies.setdefault(item["release"], {})[item["name"]] = item["strategy"]
        files: dict[int, dict[str, str]] = {}
        for file in connection.execute(
            "SELECT f.* FROM release_files AS f JOIN releases AS r ON r.id = f.release "
            "WHERE (:id IS NULL OR r.id = :id) AND (:dataset IS NULL OR r.dataset = :dataset) "
            "ORDER BY f.path",
            parameters,
        ):
            files.setdefault(file["release"], {})[file["path"]] = file["sha256"]
        records = []
        for row in rows:
            planned = {table["name"]: table["planned_loss"] for table in tables.get(row["id"], [])}
            accounted = {
                table["name"]: table["loss"] if table["loss"] is not None else table["planned_loss"]
                for table in tables.get(row["id"], [])
            }
            records.append(
                SpendRecord(
                    id=row["id"],
                    dataset=row["dataset"],
                    release_id=row["release_id"],
                    version=row["version"],
                    kind=row["kind"],
                    status=row["status"],
                    model=row["model"],
                    cap=row["cap"],
                    loss=row["loss"],
                    reserved_loss=row["reserved_loss"],
                    table_losses=accounted,
                    planned_table_losses=planned,
                    unit_losses={
                        name: planned_loss if loss is None else loss
                        for name, (planned_loss, loss) in units.get(row["id"], {}).items()
                    },
                    inputs=inputs.get(row["id"], {}),
                    strategies=strategies.get(row["id"], {}),
                    spec_hash=row["spec_hash"],
                    publisher_version=row["publisher_version"],
                    opendp_version=row["opendp_version"],
                    files=files.get(row["id"], {}),
                    reserved_at=row["reserved_at"],
                    committed_at=row["committed_at"],
                    failed_at=row["failed_at"],
                    failure=row["failure"],
                    reason=row["reason"],
                )
            )
        return records

    def _summaries(self, connection: sqlite3.Connection) -> list[DatasetSummary]:
        summaries = []
        for row in connection.execute("SELECT * FROM datasets ORDER BY dataset").fetchall():
            counts: dict[Status, int] = dict.fromkeys(STATUSES, 0)
            for status, number in connection.execute(
                "SELECT status, COUNT(*) FROM releases WHERE dataset = ? GROUP BY status",
                (row["dataset"],),
            ):
                counts[status] = number
            summaries.append(
                DatasetSummary(
                    dataset=row["dataset"],
                    model=row["model"],
                    cap=row["cap"],
                    spent=self._spent(connection, row["dataset"]),
                    registered_at=row["registered_at"],
                    releases=counts,
                    reason=row["reason"],
                )
            )
        return summaries

    def _report(self, connection: sqlite3.Connection) -> BudgetReport:
        records = self._records(connection, None)
        datasets = tuple(
            (summary, tuple(r for r in records if r.dataset == summary.dataset))
            for summary in self._summaries(connection)
        )
        return BudgetReport(self.path, datasets)


@dataclass(frozen=True)
class BudgetReport:
    """What the ledger holds, per dataset and release, for ``publisher budget``."""

    path: Path
    datasets: tuple[tuple[DatasetSummary, tuple[SpendRecord, ...]], ...]

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data; see :meth:`to_json` for the keys."""
        return {
            "ledger": str(self.path),
            "schema_version": SCHEMA_VERSION,
            "datasets": [
                {
                    "dataset": summary.dataset,
                    "model": summary.model,
                    "unit": summary.unit,
                    "cap": summary.cap,
                    "spent": summary.spent,
                    "remaining": summary.remaining,
                    "registered_at": summary.registered_at,
                    "reason": summary.reason,
                    "releases_by_status": dict(summary.releases),
                    "releases": [_release_dict(record) for record in records],
                }
                for summary, records in self.datasets
            ],
        }

    def to_json(self) -> str:
        """The report as JSON, with these stable keys.

        Top level: ``ledger`` (path), ``schema_version``, ``datasets`` (by dataset id). Each
        dataset: ``dataset``, ``model`` ("zcdp"/"pure"), ``unit`` ("rho"/"epsilon"),
        ``cap``, ``spent``, ``remaining``, ``registered_at``, ``releases_by_status``
        (reserved/committed/failed -> count) and ``releases``, in the order reserved. Each
        release: ``id``, ``release_id``, ``version``, ``kind`` ("release", or "bounds" for a
        run of ``publisher bounds``), ``status``, ``loss`` (what counts, the largest of any
        unit), ``reserved_loss``, ``unit_losses``, ``table_losses``,
        ``planned_table_losses``, ``reserved_at``, ``committed_at``, ``failed_at``,
        ``failure``, ``reason`` (why it started a new dataset on another's inputs),
        ``spec_hash``, ``publisher_version``, ``opendp_version`` and ``files`` (path ->
        sha256). Times are UTC ISO 8601; a time that has not happened is null. The inputs'
        fingerprints are never printed.
        """
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def to_table(self) -> RenderableType:
        """The report for a terminal: per dataset, its budget line and a table of releases."""
        if not self.datasets:
            return Text(f"The ledger {self.path} holds no releases yet.")
        parts: list[RenderableType] = []
        for summary, records in self.datasets:
            table = Table(
                title=f"Dataset {summary.dataset} ({summary.model})",
                title_justify="left",
                caption=(
                    f"Cap {summary.unit} = {_fmt(summary.cap)}, spent {_fmt(summary.spent)}, "
                    f"remaining {_fmt(summary.remaining)}"
                ),
                caption_justify="left",
            )
            table.add_column("Release", overflow="fold")
            table.add_column("Version", no_wrap=True)
            table.add_column("Status", overflow="fold")
            table.add_column(f"Loss ({summary.unit})", justify="right", no_wrap=True)
            table.add_column("Reserved at", no_wrap=True)
            table.add_column("Committed at", no_wrap=True)
            for record in records:
                status: str = record.status
                if record.failure:
                    status += f": {record.failure}"
                if record.reason:
                    status += f" (new dataset: {record.reason})"
                table.add_row(
                    record.release_id,
                    record.version if record.kind == "release" else f"{record.version} (bounds)",
                    status,
                    _fmt(record.loss),
                    record.reserved_at,
                    record.committed_at or "",
                )
            parts.append(table)
        return Group(*parts)


def _release_dict(record: SpendRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "release_id": record.release_id,
        "version": record.version,
        "kind": record.kind,
        "status": record.status,
        "loss": record.loss,
        "reserved_loss": record.reserved_loss,
        "unit_losses": record.unit_losses,
        "strategies": record.strategies,
        "table_losses": record.table_losses,
        "planned_table_losses": record.planned_table_losses,
        "reserved_at": record.reserved_at,
        "committed_at": record.committed_at,
        "failed_at": record.failed_at,
        "failure": record.failure,
        "reason": record.reason,
        "spec_hash": record.spec_hash,
        "publisher_version": record.publisher_version,
        "opendp_version": record.opendp_version,
        "files": record.files,
    }


def report(path: Path, *, busy_seconds: float = BUSY_SECONDS) -> BudgetReport:
    """Read the whole ledger at ``path`` without changing it (nor creating it)."""
    book = Ledger(path, read_only=True, busy_seconds=busy_seconds)
    return book._run(book._report, write=False)


@contextmanager
def _opened(path: Path) -> Iterator[Any]:
    try:
        with path.open("rb") as stream:
            yield stream
    except FileNotFoundError:
        raise InputError(f"{path}: does not exist; check the input path in the spec") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory; give the path to a data file") from None
    except PermissionError:
        raise InputError(f"{path}: cannot be read (permission denied); check it") from None


def _digest_file(digest: Any, path: Path) -> None:
    with _opened(path) as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)


def fingerprint(paths: list[Path], key: bytes) -> str:
    """A keyed fingerprint of input files (HMAC-SHA256 with ``key``): their names and bytes.

    Files are taken in order of name (so the spec's order does not matter) and read in
    chunks (never whole into memory). Each name and size is framed, so moving bytes from one
    file to the next changes the fingerprint. Folders are not part of it: moving the inputs
    elsewhere keeps the fingerprint. An input that is a folder (the Parquet parts of one
    table) counts as every file in it, named by their path below it. Keyed, so a ledger
    never holds a plain hash of private bytes (which could be matched to a guess).
    """
    digest = hmac.new(key, b"publisher-fingerprint-v2\0", hashlib.sha256)
    for name_text, path in sorted(_named_files(paths), key=lambda item: (item[0], str(item[1]))):
        name = name_text.encode("utf-8")
        try:
            size = path.stat().st_size
        except OSError:
            size = -1  # _digest_file reports the problem
        digest.update(len(name).to_bytes(8, "big") + name + size.to_bytes(8, "big", signed=True))
        _digest_file(digest, path)
    return digest.hexdigest()


def _combined(inputs: Mapping[str, str]) -> str:
    """One fingerprint for a release's inputs (their keyed fingerprints, by name)."""
    return hashlib.sha256(json.dumps(dict(sorted(inputs.items()))).encode("utf-8")).hexdigest()


def _named_files(paths: list[Path]) -> list[tuple[str, Path]]:
    named = []
    for path in map(Path, paths):
        if path.is_dir():
            parts = sorted(part for part in path.rglob("*") if part.is_file())
            named += [(f"{path.name}/{part.relative_to(path).as_posix()}", part) for part in parts]
        else:
            named.append((path.name, path))
    return named


def file_hashes(directory: Path) -> dict[str, str]:
    """The sha256 of every file under ``directory``, by POSIX path relative to it."""
    hashes: dict[str, str] = {}
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        _digest_file(digest, path)
        hashes[path.relative_to(directory).as_posix()] = digest.hexdigest()
    return hashes
