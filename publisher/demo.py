"""Synthetic microdata for demos and tests, shaped like the real 2023 national picture.

:func:`generate` writes ``crimes.csv``, ``victims.csv``, ``suspects.csv`` and a ready
``release.yaml`` into a folder. Nothing here is real: the records are drawn at random from
distributions set to the published 2023 shares (see ``DOMAIN.md``), so that every other part
of the publisher can run end to end without ever touching real microdata.

This is the only module allowed to use numpy's random generator: it makes synthetic data,
never privacy noise (that is OpenDP's job, in ``privacy.py``).

How the records hang together, so that the privacy units behave like the real ones:

- each victim has one force and one environment, and one or more crimes (a few have more
  than five, so the per-person cap of the crimes input matters);
- victims of the same force and environment are sometimes abused by the same group;
- a group has two or more suspects; each crime of its victims involves at least two of
  them, so a suspect is often linked to several crimes (and the suspects cap matters too).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

import numpy as np
import numpy.typing as npt
import polars as pl
import yaml

from publisher.errors import InputError

__all__ = ["DemoFiles", "generate"]

MAX_CRIMES = 50_000_000
# Crimes drawn at a time for a Parquet demo (about 0.5 GB of memory at its peak).
PART_CRIMES = 1_000_000

IntArray = npt.NDArray[np.int64]

# The 44 forces in the order of DOMAIN.md, with rough resident populations in thousands
# (2021 census, rounded): crimes are drawn in proportion, so the Metropolitan Police is by
# far the largest and the City of London (few residents) and British Transport Police
# (no resident population of its own) get only a handful.
_FORCES_BY_REGION: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = (
    ("North East", (("Cleveland", 570), ("Durham", 650), ("Northumbria", 1480))),
    (
        "North West",
        (
            ("Cheshire", 1080),
            ("Cumbria", 500),
            ("Greater Manchester", 2870),
            ("Lancashire", 1530),
            ("Merseyside", 1430),
        ),
    ),
    (
        "Yorkshire and The Humber",
        (
            ("Humberside", 930),
            ("North Yorkshire", 830),
            ("South Yorkshire", 1420),
            ("West Yorkshire", 2350),
        ),
    ),
    (
        "East Midlands",
        (
            ("Derbyshire", 1060),
            ("Leicestershire", 1120),
            ("Lincolnshire", 770),
            ("Northamptonshire", 790),
            ("Nottinghamshire", 1170),
        ),
    ),
    (
        "West Midlands",
        (
            ("Staffordshire", 1140),
            ("Warwickshire", 600),
            ("West Mercia", 1310),
            ("West Midlands", 2920),
        ),
    ),
    (
        "East of England",
        (
            ("Bedfordshire", 690),
            ("Cambridgeshire", 900),
            ("Essex", 1860),
            ("Hertfordshire", 1200),
            ("Norfolk", 920),
            ("Suffolk", 760),
        ),
    ),
    ("London", (("City of London", 15), ("Metropolitan Police", 8800))),
    (
        "South East",
        (
            ("Hampshire and Isle of Wight", 2000),
            ("Kent", 1870),
            ("Surrey", 1210),
            ("Sussex", 1710),
            ("Thames Valley", 2470),
        ),
    ),
    (
        "South West",
        (
            ("Avon and Somerset", 1760),
            ("Devon and Cornwall", 1830),
            ("Dorset", 780),
            ("Gloucestershire", 650),
            ("Wiltshire", 730),
        ),
    ),
    (
        "Wales",
        (("Dyfed-Powys", 520), ("Gwent", 600), ("North Wales", 700), ("South Wales", 1330)),
    ),
    ("National", (("British Transport Police", 120),)),
)

_FORCES = tuple(force for _, forces in _FORCES_BY_REGION for force, _ in forces)
_FORCE_WEIGHTS = np.array([w for _, forces in _FORCES_BY_REGION for _, w in forces], float)

_ENVIRONMENTS = (
    "Familial",
    "Child Sexual Exploitation",
    "Institutional",
    "Ritualistic",
    "Other",
    "Unknown",
)
# Shares reported for 2023 (other is "about 40%"; 38% makes the six add up to 100%).
_ENVIRONMENT_SHARES = np.array([0.26, 0.17, 0.09, 0.01, 0.38, 0.09])

_OFFENCE_TYPES = (
    "Rape of a child",
    "Sexual assault of a child",
    "Sexual activity with a child",
    "Causing or inciting sexual activity",
    "Indecent images of children",
    "Sexual grooming",
    "Other sexual offences",
)
# Offence type given environment (rows follow _ENVIRONMENTS): contact offences dominate in
# families and rituals; grooming, images and inciting are commoner in exploitation.
_OFFENCE_GIVEN_ENVIRONMENT = np.array(
    [
        [0.30, 0.30, 0.12, 0.10, 0.05, 0.02, 0.11],
        [0.22, 0.12, 0.22, 0.14, 0.12, 0.10, 0.08],
        [0.18, 0.38, 0.12, 0.10, 0.08, 0.04, 0.10],
        [0.40, 0.30, 0.05, 0.10, 0.05, 0.02, 0.08],
        [0.22, 0.30, 0.14, 0.10, 0.10, 0.04, 0.10],
        [0.20, 0.28, 0.12, 0.10, 0.10, 0.05, 0.15],
    ]
)

_ONLINE = ("Yes", "No", "Unknown")
# Online element given offence type (rows follow _OFFENCE_TYPES).
_ONLINE_GIVEN_OFFENCE = np.array(
    [
        [0.08, 0.80, 0.12],
        [0.06, 0.82, 0.12],
        [0.18, 0.70, 0.12],
        [0.40, 0.48, 0.12],
        [0.78, 0.12, 0.10],
        [0.72, 0.16, 0.12],
        [0.20, 0.65, 0.15],
    ]
)

_VICTIM_AGE_BANDS = ("0 to 4", "5 to 9", "10 to 12", "13 to 15", "16 to 17", "Unknown")
# Victim age given environment: exploitation victims are mostly teenagers, familial and
# ritualistic victims younger.
_VICTIM_AGE_GIVEN_ENVIRONMENT = np.array(
    [
        [0.10, 0.27, 0.22, 0.25, 0.08, 0.08],
        [0.005, 0.02, 0.10, 0.50, 0.315, 0.06],
        [0.03, 0.15, 0.22, 0.35, 0.17, 0.08],
        [0.10, 0.30, 0.25, 0.20, 0.07, 0.08],
        [0.05, 0.15, 0.20, 0.35, 0.17, 0.08],
        [0.05, 0.14, 0.18, 0.30, 0.15, 0.18],
    ]
)

_SUSPECT_AGE_BANDS = (
    "10 to 17",
    "18 to 24",
    "25 to 34",
    "35 to 44",
    "45 to 54",
    "55 and over",
    "Unknown",
)
# 30% unknown; of the known ages 48% are 10 to 17 (0.336 / 0.70), as reported for 2023.
_SUSPECT_AGE_SHARES = np.array([0.336, 0.098, 0.091, 0.077, 0.056, 0.042, 0.30])

_VICTIM_SEXES = ("Female", "Male", "Unknown")
_VICTIM_SEX_SHARES = np.array([0.80, 0.17, 0.03])
_SUSPECT_SEXES = ("Male", "Female", "Unknown")
_SUSPECT_SEX_SHARES = np.array([0.86, 0.09, 0.05])
# One published category set serves both, in this order.
_SEXES = ("Female", "Male", "Unknown")

_ETHNICITIES = (
    "Asian or Asian British",
    "Black, Black British, Caribbean or African",
    "Mixed or multiple ethnic groups",
    "White",
    "Other ethnic group",
    "Not recorded",
)
_VICTIM_ETHNICITY_SHARES = np.array([0.04, 0.03, 0.04, 0.50, 0.01, 0.38])
# Suspect ethnicity was recorded for only about a third of suspects.
_SUSPECT_ETHNICITY_SHARES = np.array([0.04, 0.025, 0.015, 0.24, 0.01, 0.67])

# Crimes per victim: 1 to 15. Most victims have one; about 2.5% have more than five, so
# truncation at five records per victim matters without dropping much (about 4% of crimes).
_CRIMES_PER_VICTIM = np.concatenate(
    [[0.72, 0.14, 0.06, 0.035, 0.02], 0.025 * (0.6 ** np.arange(10)) / (0.6 ** np.arange(10)).sum()]
)

# Chance that the next victim (same force and environment) joins the previous victim's
# group, by environment: exploitation and institutional groups reach more children.
_SHARED_GROUP_CHANCE = np.array([0.15, 0.35, 0.30, 0.30, 0.20, 0.10])

# Suspects per group, 2 to 10, by environment: exploitation and ritualistic groups are larger.
_GROUP_SIZE_GIVEN_ENVIRONMENT = np.array(
    [
        [0.62, 0.24, 0.09, 0.03, 0.01, 0.01, 0.0, 0.0, 0.0],
        [0.38, 0.24, 0.14, 0.09, 0.06, 0.04, 0.02, 0.02, 0.01],
        [0.55, 0.25, 0.10, 0.05, 0.03, 0.02, 0.0, 0.0, 0.0],
        [0.35, 0.25, 0.15, 0.10, 0.06, 0.04, 0.03, 0.01, 0.01],
        [0.58, 0.24, 0.10, 0.04, 0.02, 0.01, 0.01, 0.0, 0.0],
        [0.60, 0.23, 0.09, 0.04, 0.02, 0.01, 0.01, 0.0, 0.0],
    ]
)
_MIN_GROUP_SIZE = 2
# Each crime involves two members of its group for sure, each other member with this chance.
_OTHER_MEMBER_CHANCE = 0.7


@dataclass(frozen=True)
class DemoFiles:
    """The files written by :func:`generate`."""

    crimes: Path
    victims: Path
    suspects: Path
    spec: Path


def generate(
    out_dir: Path, *, crimes: int = 4200, seed: int = 2023, format: str = "csv"
) -> DemoFiles:
    """Write synthetic ``crimes.csv``, ``victims.csv``, ``suspects.csv`` and ``release.yaml``.

    ``out_dir`` is created if missing; files already there are replaced. The same ``crimes``
    and ``seed`` always give byte-identical files. ``release.yaml`` is a complete release
    spec whose inputs point at the three CSVs next to it.

    With ``format="parquet"`` the inputs are Parquet folders (``crimes/``, ``victims/``,
    ``suspects/``, as Spark writes a table) written in parts of :data:`PART_CRIMES` crimes,
    each drawn on its own (victims, groups and suspects within the part; ids numbered on
    from the earlier parts), so memory stays bounded whatever the number of crimes.

    Raises :class:`InputError` if ``crimes`` is outside 1 to 50,000,000, ``seed`` is
    negative, or ``out_dir`` cannot be created or written to.
    """
    out_dir = Path(out_dir)
    if not 1 <= crimes <= MAX_CRIMES:
        raise InputError(
            f"crimes must be between 1 and {MAX_CRIMES:,} (got {crimes:,}); "
            "choose how many synthetic crimes to generate in that range"
        )
    if seed < 0:
        raise InputError(f"seed must be 0 or more (got {seed}); choose a non-negative seed")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(
            f"{out_dir}: exists and is not a folder; give a folder for the demo files "
            "(it is created if missing)"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(
            f"{out_dir}: cannot create the folder ({error.strerror}); check the path and "
            "its permissions"
        ) from None

    if format == "parquet":
        return _generate_parquet(out_dir, crimes, seed)
    crime_frame, victim_frame, suspect_frame = _simulate(np.random.default_rng(seed), crimes)
    files = DemoFiles(
        crimes=out_dir / "crimes.csv",
        victims=out_dir / "victims.csv",
        suspects=out_dir / "suspects.csv",
        spec=out_dir / "release.yaml",
    )
    spec_text = _release_yaml(crimes=crimes, seed=seed)
    try:
        _write_atomically(
            [
                (files.crimes, lambda path: crime_frame.sink_csv(path)),
                (files.victims, lambda path: victim_frame.sink_csv(path)),
                (files.suspects, lambda path: suspect_frame.sink_csv(path)),
                (files.spec, lambda path: path.write_text(spec_text, encoding="utf-8")),
            ]
        )
    except OSError as error:
        raise InputError(
            f"{out_dir}: cannot write the demo files ({error.strerror}); check the folder's "
            "permissions and free space"
        ) from None
    return files


@dataclass(frozen=True)
class _Numbering:
    """Where a part's ids start (their numbers follow those of the earlier parts) and how
    many digits every id of the demo has."""

    crimes: int = 0
    victims: int = 0
    suspects: int = 0
    width: int | None = None  # None: each file's own width (one part)


def _generate_parquet(out_dir: Path, crimes: int, seed: int) -> DemoFiles:
    """The demo as three Parquet folders, written part by part (see :func:`generate`)."""
    files = DemoFiles(
        crimes=out_dir / "crimes",
        victims=out_dir / "victims",
        suspects=out_dir / "suspects",
        spec=out_dir / "release.yaml",
    )
    spec_text = _release_yaml(crimes=crimes, seed=seed)
    for name in ("crimes", "victims", "suspects"):
        spec_text = spec_text.replace(
            f"path: {name}.csv\n    format: csv", f"path: {name}\n    format: parquet"
        )

    def write_parts(staged: Path) -> None:
        folders = [staged / name for name in ("crimes", "victims", "suspects")]
        for folder in folders:
            folder.mkdir()
        # Every id has as many digits as the largest number any part can give it.
        numbering = _Numbering(width=_id_width(crimes * 20))
        for part, start in enumerate(range(0, crimes, PART_CRIMES)):
            size = min(PART_CRIMES, crimes - start)
            rng = np.random.default_rng([seed, part])
            frames = [frame.collect() for frame in _simulate(rng, size, numbering)]
            for folder, frame in zip(folders, frames, strict=True):
                frame.write_parquet(folder / f"part-{part:05d}.parquet")
            crime_frame, victim_frame, suspect_frame = frames
            numbering = _Numbering(
                crimes=numbering.crimes + crime_frame.height,
                victims=numbering.victims + victim_frame.height,
                suspects=numbering.suspects + suspect_frame["suspect_id"].n_unique(),
                width=numbering.width,
            )

    try:
        _write_atomically(
            [
                (out_dir / ".parts", write_parts),
                (files.spec, lambda path: path.write_text(spec_text, encoding="utf-8")),
            ],
            unpack=True,
        )
    except OSError as error:
        raise InputError(
            f"{out_dir}: cannot write the demo files ({error.strerror}); check the folder's "
            "permissions and free space"
        ) from None
    return files


def _simulate(
    rng: np.random.Generator, n_crimes: int, numbering: _Numbering = _Numbering()
) -> tuple[pl.LazyFrame, pl.LazyFrame, pl.LazyFrame]:
    """Draw the three linked tables as lazy frames of codes, decoded to text on writing.

    Every step is a whole-array numpy operation; the only loop is over a fixed handful of
    category rows, never over records.
    """
    # Victims, each with their number of crimes (the last one is cut to hit n_crimes).
    crimes_per_victim = _crimes_per_victim(rng, n_crimes)
    n_victims = len(crimes_per_victim)
    victim_environment = rng.choice(len(_ENVIRONMENTS), size=n_victims, p=_ENVIRONMENT_SHARES)
    victim_force = _draw_forces(rng, n_victims)
    victim_age = _draw_given(rng, victim_environment, _VICTIM_AGE_GIVEN_ENVIRONMENT)
    victim_sex = rng.choice(len(_VICTIM_SEXES), size=n_victims, p=_VICTIM_SEX_SHARES)
    victim_ethnicity = rng.choice(len(_ETHNICITIES), size=n_victims, p=_VICTIM_ETHNICITY_SHARES)

    # Offender groups: runs of victims of one force and environment, in random order.
    victim_group, group_first_victim = _draw_groups(rng, victim_force, victim_environment)
    group_environment = victim_environment[group_first_victim]
    group_size = _MIN_GROUP_SIZE + _draw_given(
        rng, group_environment, _GROUP_SIZE_GIVEN_ENVIRONMENT
    )
    group_first_suspect = np.cumsum(group_size) - group_size

    # Crimes: one row per crime of each victim, attributes given the victim's environment.
    crime_victim = np.repeat(np.arange(n_victims), crimes_per_victim)
    crime_environment = victim_environment[crime_victim]
    crime_offence = _draw_given(rng, crime_environment, _OFFENCE_GIVEN_ENVIRONMENT)
    crime_online = _draw_given(rng, crime_offence, _ONLINE_GIVEN_OFFENCE)

    # Suspect records: each crime takes its group's members starting at a random member;
    # the first two from there always take part, the others by chance.
    crime_group = victim_group[crime_victim]
    members = group_size[crime_group]
    start = (rng.random(n_crimes) * members).astype(np.int64)
    record_crime, member = _expand(members)
    keep = (member < _MIN_GROUP_SIZE) | (rng.random(len(member)) < _OTHER_MEMBER_CHANCE)
    record_crime, member = record_crime[keep], member[keep]
    record_group = crime_group[record_crime]
    record_suspect = group_first_suspect[record_group] + (
        (member + start[record_crime]) % group_size[record_group]
    )
    del keep, member, record_group, crime_group, members, start

    # Suspect attributes are drawn once per suspect, so they agree on every record.
    n_suspects = int(group_size.sum())
    suspect_age = rng.choice(len(_SUSPECT_AGE_BANDS), size=n_suspects, p=_SUSPECT_AGE_SHARES)
    suspect_sex = rng.choice(len(_SUSPECT_SEXES), size=n_suspects, p=_SUSPECT_SEX_SHARES)
    suspect_ethnicity = rng.choice(len(_ETHNICITIES), size=n_suspects, p=_SUSPECT_ETHNICITY_SHARES)

    # Opaque ids: random numbers, so neither an id nor the sorted row order reveals the
    # force, the group or the order of drawing.
    crime_number = _random_numbers(rng, n_crimes) + numbering.crimes
    victim_number = _random_numbers(rng, n_victims) + numbering.victims
    suspect_present = np.zeros(n_suspects, dtype=bool)
    suspect_present[record_suspect] = True  # a member may by chance be in none of the crimes
    suspect_number = np.zeros(n_suspects, dtype=np.int64)
    suspect_number[suspect_present] = (
        _random_numbers(rng, int(suspect_present.sum())) + numbering.suspects
    )

    crime_width = numbering.width or _id_width(n_crimes)
    victim_width = numbering.width or _id_width(n_victims)
    suspect_width = numbering.width or _id_width(int(suspect_present.sum()))

    crime_order = np.argsort(crime_number)
    crime_frame = pl.DataFrame(
        {
            "crime_id": crime_number[crime_order],
            "force": victim_force[crime_victim][crime_order],
            "offence_type": crime_offence[crime_order],
            "environment": crime_environment[crime_order],
            "online_element": crime_online[crime_order],
            "victim_id": victim_number[crime_victim][crime_order],
        }
    ).lazy()
    crime_frame = crime_frame.select(
        _id("crime_id", "CR", crime_width),
        _decode("force", _FORCES),
        _decode("offence_type", _OFFENCE_TYPES),
        _decode("environment", _ENVIRONMENTS),
        _decode("online_element", _ONLINE),
        _id("victim_id", "VI", victim_width),
    )

    victim_order = np.argsort(victim_number)
    victim_frame = pl.DataFrame(
        {
            "victim_id": victim_number[victim_order],
            "age_band": victim_age[victim_order],
            "sex": victim_sex[victim_order],
            "ethnicity": victim_ethnicity[victim_order],
        }
    ).lazy()
    victim_frame = victim_frame.select(
        _id("victim_id", "VI", victim_width),
        _decode("age_band", _VICTIM_AGE_BANDS),
        _decode("sex", _VICTIM_SEXES),
        _decode("ethnicity", _ETHNICITIES),
    )

    # Sort by crime id, then suspect id, through one integer key (far faster than lexsort;
    # at most 5e7 crimes times 5e8 suspects, well inside int64).
    record_key = (
        crime_number[record_crime] * (int(suspect_number.max()) + 1)
        + suspect_number[record_suspect]
    )
    record_order = np.argsort(record_key, kind="stable")
    del record_key
    record_suspect = record_suspect[record_order]
    suspect_frame = pl.DataFrame(
        {
            "crime_id": crime_number[record_crime[record_order]],
            "suspect_id": suspect_number[record_suspect],
            "age_band": suspect_age[record_suspect],
            "sex": suspect_sex[record_suspect],
            "ethnicity": suspect_ethnicity[record_suspect],
        }
    ).lazy()
    suspect_frame = suspect_frame.select(
        _id("crime_id", "CR", crime_width),
        _id("suspect_id", "SU", suspect_width),
        _decode("age_band", _SUSPECT_AGE_BANDS),
        _decode("sex", _SUSPECT_SEXES),
        _decode("ethnicity", _ETHNICITIES),
    )
    return crime_frame, victim_frame, suspect_frame


def _crimes_per_victim(rng: np.random.Generator, n_crimes: int) -> IntArray:
    """Crimes of each victim, adding up to exactly ``n_crimes``."""
    mean = float(np.arange(1, len(_CRIMES_PER_VICTIM) + 1) @ _CRIMES_PER_VICTIM)
    # Enough victims in one draw almost always; more batches only if the draw fell short.
    batch = int(n_crimes / mean * 1.05) + 64
    counts = np.empty(0, dtype=np.int64)
    total = 0
    while total < n_crimes:
        more = 1 + rng.choice(len(_CRIMES_PER_VICTIM), size=batch, p=_CRIMES_PER_VICTIM)
        counts = np.concatenate([counts, more])
        total += int(more.sum())
    n_victims = int(np.searchsorted(np.cumsum(counts), n_crimes)) + 1
    counts = counts[:n_victims]
    counts[-1] -= int(counts.sum()) - n_crimes
    return counts


def _draw_forces(rng: np.random.Generator, n_victims: int) -> IntArray:
    """A force per victim, in proportion to population, every force at least once if it can."""
    shares = _FORCE_WEIGHTS / _FORCE_WEIGHTS.sum()
    if n_victims < len(_FORCES):
        return rng.choice(len(_FORCES), size=n_victims, p=shares)
    # Seeding one victim per force keeps every force in the demo tables (as in the real
    # collection) without making the small ones any less small.
    rest = rng.choice(len(_FORCES), size=n_victims - len(_FORCES), p=shares)
    return rng.permutation(np.concatenate([np.arange(len(_FORCES)), rest]))


def _draw_groups(
    rng: np.random.Generator, victim_force: IntArray, victim_environment: IntArray
) -> tuple[IntArray, IntArray]:
    """Each victim's offender group, and each group's first victim.

    Victims are shuffled, then sorted by force and environment; a run of neighbours with the
    same force and environment share a group (geometric run lengths), so a group never
    spans two forces or two environments.
    """
    n_victims = len(victim_force)
    key = victim_force * len(_ENVIRONMENTS) + victim_environment
    shuffled = rng.permutation(n_victims)
    order = shuffled[np.argsort(key[shuffled], kind="stable")]
    sorted_key = key[order]
    joins_previous = rng.random(n_victims) < _SHARED_GROUP_CHANCE[victim_environment[order]]
    starts = ~joins_previous
    starts[0] = True
    starts[1:] |= sorted_key[1:] != sorted_key[:-1]
    group_of_sorted = np.cumsum(starts) - 1
    victim_group = np.empty(n_victims, dtype=np.int64)
    victim_group[order] = group_of_sorted
    return victim_group, order[starts]


def _draw_given(
    rng: np.random.Generator, parent: IntArray, table: npt.NDArray[np.float64]
) -> IntArray:
    """Draw one category per row from ``table[parent]`` (rows are probability vectors).

    Inverse-CDF sampling in one pass: row ``r``'s cumulative probabilities are shifted by
    ``r`` so that a single sorted array serves every row.
    """
    n_rows, n_values = table.shape
    cumulative = np.cumsum(table / table.sum(axis=1, keepdims=True), axis=1)
    cumulative[:, -1] = 1.0
    shifted = (np.arange(n_rows)[:, None] + cumulative).ravel()
    position = np.searchsorted(shifted, parent + rng.random(len(parent)), side="right")
    # Clip guards the rare float rounding of parent + u up to parent + 1.
    drawn: IntArray = np.minimum(position - parent * n_values, n_values - 1).astype(np.int64)
    return drawn


def _expand(counts: IntArray) -> tuple[IntArray, IntArray]:
    """For segments of the given lengths: each element's segment and position within it."""
    segment = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    position = np.arange(len(segment)) - starts[segment]
    return segment, position


def _random_numbers(rng: np.random.Generator, count: int) -> IntArray:
    """The numbers 1 to ``count`` in random order."""
    return rng.permutation(count).astype(np.int64) + 1


def _id_width(count: int) -> int:
    """Digits in an id: eight, or more for very large demos, fixed within a file."""
    return max(8, len(str(count)))


def _id(column: str, prefix: str, width: int) -> pl.Expr:
    return pl.format(f"{prefix}{{}}", pl.col(column).cast(pl.String).str.zfill(width)).alias(column)


def _decode(column: str, values: Sequence[str]) -> pl.Expr:
    return pl.col(column).cast(pl.Enum(list(values))).alias(column)


def _write_atomically(
    writers: list[tuple[Path, Callable[[Path], object]]], *, unpack: bool = False
) -> None:
    """Write every file into a staging folder beside its target, then move all into place.

    Each move is an atomic rename on one file system, so a reader never sees half a file;
    if any write fails, the staging folder is removed and the targets stay untouched. New
    files get the usual permissions (the umask), unlike ``mkstemp``'s owner-only files.
    With ``unpack``, a writer may write a folder of folders (the first writer's target):
    each folder in it is moved into place (a folder it replaces is removed afterwards).
    """
    folder = writers[0][0].parent
    with tempfile.TemporaryDirectory(dir=folder, prefix=".demo-staging-") as staging:
        staged = [(Path(staging) / target.name, target) for target, _ in writers]
        for (temp, _), (_, write) in zip(staged, writers, strict=True):
            if unpack and write is writers[0][1]:
                temp.mkdir()
            write(temp)
        for position, (temp, target) in enumerate(staged):
            if unpack and position == 0:
                for part in sorted(temp.iterdir()):
                    _replace_folder(part, folder / part.name, Path(staging))
                continue
            os.replace(temp, target)


def _replace_folder(source: Path, target: Path, staging: Path) -> None:
    """Move the folder ``source`` to ``target``, replacing what is there (a file or a
    folder is first renamed into ``staging``, removed with it)."""
    if target.exists() or target.is_symlink():
        os.replace(target, staging / f"replaced-{target.name}")
    os.replace(source, target)


def _q(text: str) -> str:
    """``text`` as a YAML scalar: plain when it reads back unchanged, else double-quoted.

    Quoting keeps words YAML 1.1 would turn into booleans ("Yes", "No") as strings.
    """
    plain_ok = yaml.safe_load(f"- {text}") == [text] and yaml.safe_load(f"{text}: x") == {text: "x"}
    return text if plain_ok else json.dumps(text, ensure_ascii=False)


def _yaml_list(values: Sequence[str], indent: int) -> str:
    pad = " " * indent
    return "\n".join(f"{pad}- {_q(value)}" for value in values)


def _region_definitions(indent: int) -> str:
    pad = " " * indent
    lines = []
    for region, forces in _FORCES_BY_REGION:
        names = [force for force, _ in forces]
        listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        if region == "National":
            definition = f"{listed}, which polices the railways and belongs to no region."
        else:
            definition = f"The area policed by {listed}."
        lines.append(f"{pad}{_q(region)}: {_q(definition)}")
    return "\n".join(lines)


def _age_definitions(bands: Sequence[str], person: str, indent: int) -> str:
    """Each age band in words, from its label ("10 to 17", "55 and over", "Unknown")."""
    pad = " " * indent
    lines = []
    for band in bands:
        if band == "Unknown":
            definition = f"The {person}'s age was not recorded or is not known."
        elif band.endswith(" and over"):
            oldest = band.removesuffix(" and over")
            definition = f"Aged {oldest} or over when the offence took place."
        else:
            definition = f"Aged {band} years when the offence took place."
        lines.append(f"{pad}{_q(band)}: {_q(definition)}")
    return "\n".join(lines)


def _force_definitions(indent: int) -> str:
    pad = " " * indent
    lines: list[str] = []
    for region, forces in _FORCES_BY_REGION:
        if region == "National":
            definition = "A national police force for the railways, not tied to one region."
        elif region == "Wales":
            definition = "A territorial police force in Wales."
        else:
            definition = f"A territorial police force in the {region} region."
        lines.extend(f"{pad}{_q(force)}: {_q(definition)}" for force, _ in forces)
    return "\n".join(lines)


_RELEASE_TEMPLATE = Template(
    """\
# Release spec for the synthetic demo: group-based child sexual abuse and exploitation,
# England and Wales, 2023. Written by publisher.demo (running it again replaces this file).
# Every record in the CSV files next to this spec is made up: no real person is in them.

# What is published, by whom, for which period, under which licence.
release:
  id: csae-group-based-demo
  title: "Group-based child sexual abuse and exploitation, England and Wales, 2023 \
(synthetic demonstration data)"
  version: "1.0.0"
  period: January to December 2023
  description: >-
    Synthetic demonstration data shaped like the national picture of group-based child
    sexual abuse and exploitation recorded by the 44 police forces of England and Wales in
    2023. The records were made up by a computer program: they describe no real crime,
    victim or suspect.
  publisher: Publisher demonstration (not a real organisation)
  contact:
    name: Demonstration statistics team
    email: statistics@example.org
    statistician: Alex Example (a made-up name)
  press:
    name: Demonstration press office (not a real office)
    email: press@example.org
  # What the site says once, on the release page: these are not official statistics.
  statistics_status: not-official
  url: https://example.org/statistics/csae-group-based-demo/
  versions_url: https://example.org/statistics/csae-group-based-demo/versions/
  related:
    - title: Code of Practice for Statistics
      url: https://code.statisticsauthority.gov.uk/
      description: The standards that UK official statistics are produced to.
    - title: Symbols in tables, definitions and help
      url: https://analysisfunction.civilservice.gov.uk/policy-store/symbols-in-tables-definitions-and-help/
      description: The Government Statistical Service guidance on markers such as [low] and [r].
    - title: Sexual Offences Act 2003
      url: https://www.legislation.gov.uk/ukpga/2003/42/contents
      description: The law under which most of the offence types are recorded.
    - title: OpenDP
      url: https://opendp.org/
      description: The open-source library that added the noise and accounted for the privacy loss.
  # The release's own terms; the site's glossary adds the terms of differential privacy.
  glossary:
    Group-based: >-
      Abuse or exploitation by two or more offenders, of any age, linked through formal
      or informal groups or networks. The police record it as abuse involving two or more
      people; the offenders may or may not belong to the child's family.
    Child sexual exploitation: >-
      Child sexual abuse in which a child is manipulated or coerced into sexual activity
      in return for something the child needs or wants, or for the offenders' gain.
    Recorded crime: >-
      A crime recorded by a police force under the national counting rules, which count
      one crime for each victim: a victim of several crimes is counted several times.
    COCAD: >-
      The Complex and Organised Child Abuse Dataset, the police collection behind the real
      national picture of group-based abuse and a companion to the Child Sexual Abuse
      Dataset. This demonstration imitates its shape; it holds none of its records.
  licence: OGL-UK-3.0
  geography: England and Wales
  keywords:
    - child sexual abuse
    - child sexual exploitation
    - group-based offending
    - police recorded crime
    - synthetic data
  sources:
    - title: Synthetic microdata generator (publisher.demo)
      description: "Made-up records from publisher.demo with seed $seed and $crimes crimes."
  synthetic: true

# The privacy-loss budget of this release, shared between the tables by weight.
# zCDP (zero-concentrated differential privacy) spends rho; delta is only used to state
# the guarantee as (epsilon, delta) for readers who know that form. The cap is what the
# dataset may ever spend over all its releases; the ledger (private, never published)
# records every spend and refuses a release that would pass the cap.
privacy:
  model: zcdp
  rho: 0.5
  delta: 1.0e-7
  cap:
    rho: 1.0
  ledger: ledger.sqlite
  # The people this release protects. rho bounds the loss of each of them: every child
  # victim, and every suspect, loses at most rho over all the tables that concern them.
  units:
    victim:
      title: child victim
      description: A child who was the victim of a recorded group-based crime.
    suspect:
      title: suspect
      description: A person recorded as a suspect of a group-based crime.

# The public keys of every breakdown, in the order they are published. They are declared
# here and never taken from the data, so an empty category is still shown.
categories:
  force:
    title: Police force
    description: The police force that recorded the crime.
    values:
$forces
    definitions:
$force_definitions
  region:
    title: Region
    description: >-
      The region of the police force that recorded the crime (British Transport Police
      is national).
    values:
$regions
    definitions:
$region_definitions
    # Each region groups forces: a column derived with `from: force` is consistent with
    # the force table, and regions sum to the national total.
    groups:
      of: force
      members:
$region_members
  offence_type:
    title: Offence type
    description: The type of sexual offence recorded, grouped.
    values:
$offence_types
    definitions:
      Rape of a child: >-
        Penetration of a child's vagina, anus or mouth with a penis; in law a child under
        13 can never consent.
      Sexual assault of a child: >-
        Touching a child sexually, including penetration with a part of the body or an
        object, without the child's consent or when the child is too young to consent.
      Sexual activity with a child: >-
        Sexual activity by an adult with a child under 16, even where the child seemed to
        agree.
      Causing or inciting sexual activity: >-
        Making or encouraging a child to take part in sexual activity, with the offender
        or with someone else.
      Indecent images of children: >-
        Taking, making, sharing or having indecent photographs or images of a child.
      Sexual grooming: >-
        Gaining a child's trust in order to abuse them, including sexual messages to a
        child and meeting a child after grooming.
      Other sexual offences: >-
        Any other sexual offence against a child, such as exposure, voyeurism or arranging
        the abuse of a child.
  environment:
    title: Environment
    description: The setting in which the group-based abuse took place.
    unknown: Unknown
    values:
$environments
    definitions:
      Familial: Abuse by relatives, or within a family setting.
      Child Sexual Exploitation: >-
        Abuse in which children are manipulated or coerced into sexual activity in
        exchange for something they need or want, or for the offenders' gain.
      Institutional: >-
        Abuse in or linked to an institution such as a school, children's home,
        religious or sports organisation.
      Ritualistic: Abuse linked to rituals, beliefs or faith-based practices.
      Other: Group-based abuse in a setting that fits none of the other categories.
      Unknown: The setting was not recorded or could not be determined.
  online_element:
    title: Online element
    description: Whether any part of the offence took place online.
    unknown: Unknown
    values:
$online
    definitions:
      "Yes": >-
        Some part of the offence took place online, for example contact through social
        media or messaging, or images shared online.
      "No": No part of the offence was recorded as taking place online.
      Unknown: Whether any part of the offence took place online was not recorded.
  victim_age_band:
    title: Victim age band
    description: The victim's age in years when the offence took place.
    ordered: true
    unknown: Unknown
    values:
$victim_age_bands
    definitions:
$victim_age_definitions
  suspect_age_band:
    title: Suspect age band
    description: The suspect's age in years when the offence took place.
    ordered: true
    unknown: Unknown
    values:
$suspect_age_bands
    definitions:
$suspect_age_definitions
  sex:
    title: Sex
    description: The person's sex as recorded by the police.
    unknown: Unknown
    values:
$sexes
    definitions:
      Female: Recorded by the police as female.
      Male: Recorded by the police as male.
      Unknown: The person's sex was not recorded or is not known.
  ethnicity:
    title: Ethnic group
    description: >-
      The person's ethnic group in the five high-level ONS groups, or Not recorded.
    unknown: Not recorded
    values:
$ethnicities
    definitions:
      Asian or Asian British: Indian, Pakistani, Bangladeshi, Chinese or any other Asian background.
      "Black, Black British, Caribbean or African": >-
        Caribbean, African or any other Black background.
      Mixed or multiple ethnic groups: >-
        White and Black Caribbean, White and Black African, White and Asian, or any other
        mixed or multiple ethnic background.
      White: >-
        English, Welsh, Scottish, Northern Irish or British; Irish; Gypsy or Irish
        Traveller; Roma; or any other White background.
      Other ethnic group: Arab or any other ethnic group.
      Not recorded: No ethnic group was recorded for the person.

# The private microdata files; paths are relative to this spec. The identifier names a
# person of the input's privacy unit: each person counts in at most
# max_records_per_person records of a table. Records that depend on people of another unit
# through references (suspects on the victims of their crimes) are bounded for them too.
# A value outside a column's declared keys stops the release (on_unknown: error); use
# on_unknown: map to count it under the category's unknown key instead.
inputs:
  crimes:
    path: crimes.csv
    format: csv
    title: Crimes
    description: >-
      One row per recorded crime; police count one crime per victim, so a victim with
      several crimes appears on several rows.
    identifier: victim_id
    unit: victim
    max_records_per_person: 5
    columns:
      force: {categories: force, on_unknown: error}
      region: {categories: region, from: force}
      offence_type: {categories: offence_type, on_unknown: error}
      environment: {categories: environment, on_unknown: error}
      online_element: {categories: online_element, on_unknown: error}
  victims:
    path: victims.csv
    format: csv
    title: Victims
    description: One row per victim of a group-based crime.
    identifier: victim_id
    unit: victim
    unique_identifier: true
    max_records_per_person: 1
    columns:
      age_band: {categories: victim_age_band, on_unknown: error}
      sex: {categories: sex, on_unknown: error}
      ethnicity: {categories: ethnicity, on_unknown: error}
  suspects:
    path: suspects.csv
    format: csv
    title: Suspects
    description: >-
      One row per suspect per crime: a suspect linked to several crimes appears once for
      each of them. A suspect's age band, sex and ethnicity are the same on every row, so
      keeping one record per suspect counts each suspect once.
    identifier: suspect_id
    unit: suspect
    max_records_per_person: 1
    # Every suspect record must belong to a recorded crime.
    references: {crime_id: crimes.crime_id}
    # Suspect records depend on the child victim of their crime: removing one victim
    # removes their crimes and every suspect linked only to those. At most this many
    # suspects are counted per victim (chosen at random), so each victim's loss is bounded.
    linked_units:
      victim: {max_records_per_person: 4}
    columns:
      age_band: {categories: suspect_age_band, on_unknown: error}
      sex: {categories: sex, on_unknown: error}
      ethnicity: {categories: ethnicity, on_unknown: error}

# The published tables. "counts" names what one unit of a cell is; a higher weight gives
# a table a larger share of the budget, so less noise.
tables:
  - name: crimes-by-force
    input: crimes
    by: [force]
    title: Group-based crimes by police force
    description: The number of group-based crimes recorded by each police force.
    counts: crimes
    weight: 2
    totals: true
  - name: crimes-by-region
    input: crimes
    by: [region]
    title: Group-based crimes by region
    description: >-
      The number of group-based crimes recorded by the police forces of each region.
    counts: crimes
    weight: 1
    totals: true
  - name: crimes-by-environment
    input: crimes
    by: [environment]
    title: Group-based crimes by environment
    description: The number of group-based crimes in each environment.
    counts: crimes
    weight: 2
    totals: true
  - name: crimes-by-offence-type-and-environment
    input: crimes
    by: [offence_type, environment]
    title: Group-based crimes by offence type and environment
    description: The number of group-based crimes of each offence type in each environment.
    counts: crimes
    weight: 1
    totals: true
  - name: crimes-by-online-element
    input: crimes
    by: [online_element]
    title: Group-based crimes by online element
    description: The number of group-based crimes with and without an online element.
    counts: crimes
    weight: 1
    totals: true
  - name: victims-by-age-band-and-sex
    input: victims
    by: [age_band, sex]
    title: Victims of group-based crimes by age band and sex
    description: The number of victims of group-based crimes in each age band, by sex.
    counts: victims
    weight: 1
    totals: true
  - name: suspects-by-age-band-and-sex
    input: suspects
    by: [age_band, sex]
    title: Suspects of group-based crimes by age band and sex
    description: >-
      The number of suspects in each age band, by sex. Each suspect is counted once,
      however many crimes they are linked to.
    counts: suspects
    weight: 2
    totals: true
  - name: suspects-by-ethnicity
    input: suspects
    by: [ethnicity]
    title: Suspects of group-based crimes by ethnic group
    description: >-
      The number of suspects in each ethnic group. Each suspect is counted once, however
      many crimes they are linked to.
    counts: suspects
    weight: 1
    totals: true

# Headline shares computed from the noisy tables: numerator cells over denominator cells
# (all cells of the table when no denominator is given).
shares:
  - name: familial-share
    table: crimes-by-environment
    title: Crimes in the familial environment
    statement: of group-based crimes were in the familial environment
    numerator: {environment: [Familial]}
  - name: suspects-aged-10-to-17
    table: suspects-by-age-band-and-sex
    title: Suspects aged 10 to 17
    statement: of suspects with a known age were aged 10 to 17
    numerator: {age_band: ["10 to 17"]}
    denominator:
      age_band:
$known_suspect_age_bands

# Official-statistics rules applied to the noisy counts: the rounding base of published
# counts, and the threshold below which a count is not shown.
disclosure:
  rounding_base: 5
  threshold: 10
  # Also publish the unrounded estimates, standard errors and noisy counts (for analysts).
  unrounded_estimates: true
"""
)


def _release_yaml(*, crimes: int, seed: int) -> str:
    """The demo release spec; category keys come from the same constants as the data."""
    return _RELEASE_TEMPLATE.substitute(
        seed=seed,
        crimes=f"{crimes:,}",
        forces=_yaml_list(_FORCES, 6),
        force_definitions=_force_definitions(6),
        region_definitions=_region_definitions(6),
        victim_age_definitions=_age_definitions(_VICTIM_AGE_BANDS, "victim", 6),
        suspect_age_definitions=_age_definitions(_SUSPECT_AGE_BANDS, "suspect", 6),
        regions=_yaml_list([region for region, _ in _FORCES_BY_REGION], 6),
        region_members="\n".join(
            f"        {_q(region)}:\n" + _yaml_list([force for force, _ in forces], 10)
            for region, forces in _FORCES_BY_REGION
        ),
        offence_types=_yaml_list(_OFFENCE_TYPES, 6),
        environments=_yaml_list(_ENVIRONMENTS, 6),
        online=_yaml_list(_ONLINE, 6),
        victim_age_bands=_yaml_list(_VICTIM_AGE_BANDS, 6),
        suspect_age_bands=_yaml_list(_SUSPECT_AGE_BANDS, 6),
        sexes=_yaml_list(_SEXES, 6),
        ethnicities=_yaml_list(_ETHNICITIES, 6),
        known_suspect_age_bands=_yaml_list(
            [band for band in _SUSPECT_AGE_BANDS if band != "Unknown"], 8
        ),
    )
