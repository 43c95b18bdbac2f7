"""How a release spends its privacy loss, worked out from the spec alone (no data).

A release is a set of measurements: one count vector per table (every public key
combination a cell) and, per input whose bounds can leave records out, one small vector
estimating how much they left out. OpenDP adds integer noise to each vector (discrete
Gaussian under zCDP, discrete Laplace under pure DP).

Every measurement has, for each privacy unit whose people its input's records depend on,
a *sensitivity*: the most that removing one person of that unit (and, along the inputs'
references, every record that depends on them) can move its count vector, in the L1
and in the L2 norm (one integer bounds both). OpenDP's privacy map of the measurement at
that sensitivity is the measurement's loss for that unit, and a unit's loss in the
release is the sum over the measurements (zCDP and pure DP compose by addition).

The sensitivities, for an input reached by units through ``Reach`` paths:

- Own unit, plain bound (``max_records_per_person: k``): the input is truncated to at most
  ``k`` records of each person, by OpenDP's truncation transformation; removing a person
  removes at most ``k`` kept records, so every count table moves by at most ``k`` (all of
  them may be in one cell): ``k``. The release checks OpenDP's stability map gives ``k``.
- An input bounded for a linked unit (each own person counted once, at most ``m`` of them
  per linked person): the records are thinned by a greedy matching, in a random order, that
  keeps each own person at most once and at most ``m`` own people per linked person (see
  ``privacy.linked_projection``, where the proof is). Removing a linked person changes
  whether at most ``m`` own people are counted, each leaving the count: ``m``. Removing an
  own person removes them and can let one other own person in: ``2``.
- A table's input not reached by a unit: the unit's people do not change it (0).

Truncation estimates: a histogram of records per person (each person in one bin) moves by
1 for its own unit; the linked estimate (own people counted under a bound of ``4m`` less
those counted under ``m``) moves by at most ``4m`` for the linked unit and 1 for the own.

Each measurement is given a part of the loss (tables by weight, estimates evenly from
``privacy.truncation_share``) and its noise scale is set so that the unit it costs most
spends exactly that part: every unit's total is then at most the spec's loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from typing import Any, Literal

from opendp.domains import atom_domain, vector_domain
from opendp.measurements import make_gaussian, make_laplace
from opendp.metrics import l1_distance, l2_distance
from opendp.mod import enable_features

from publisher import strategy
from publisher.spec import ReleaseSpec

__all__ = [
    "LINKED_REFERENCE_FACTOR",
    "Accounting",
    "Planned",
    "account",
    "calibrated",
    "design_of",
    "histogram_bins",
    "ledger_name",
    "unit_bounds",
    "unit_totals",
]

enable_features("contrib")

# The linked estimate compares the own people counted under the bound m with those counted
# under a bound this many times larger.
LINKED_REFERENCE_FACTOR = 4
# A move by the own person (removed) and one other own person (let in).
_LINKED_OWN_SENSITIVITY = 2

Kind = Literal["table", "design", "truncation", "bounds"]
# The strategy of pure DP: each table measured alone at its part of the loss.
ALONE = "each table alone"


def unit_totals(losses: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Each unit's loss over several measurements: zCDP and pure DP compose by addition."""
    units: dict[str, list[float]] = {}
    for measurement in losses:
        for unit, loss in measurement.items():
            units.setdefault(unit, []).append(loss)
    return {unit: math.fsum(values) for unit, values in units.items()}


def ledger_name(name: str, kind: Kind) -> str:
    """The name under which the ledger records a measurement's loss (table names are
    slugs, so an estimate's name cannot clash with one)."""
    if kind in ("table", "design"):
        return name
    return f"{name} (truncation estimate)" if kind == "truncation" else f"{name} (bounds)"


def histogram_bins(bound: int) -> list[str]:
    """The bins of a records-per-person histogram for a bound of ``bound`` records: one
    per count from 1 to twice the bound, then one open-ended bin."""
    top = 2 * bound + 1
    return [str(count) for count in range(1, top)] + [f"{top} or more"]


@dataclass(frozen=True)
class Planned:
    """One measurement of the release, as planned from the spec: what it costs each unit."""

    name: str  # the table's name, or the input's name for a truncation estimate
    kind: Kind
    input: str
    cells: int  # the length of its count vector
    model: str  # "zcdp" or "pure"
    allocation: float  # its part of each unit's loss
    sensitivity: dict[str, int]  # per unit reaching its input
    scale: float = field(default=0.0)
    unit_losses: dict[str, float] = field(default_factory=dict)

    @property
    def distribution(self) -> str:
        """The noise, as OpenDP names it."""
        return "Integer Gaussian" if self.model == "zcdp" else "Integer Laplace"

    @property
    def loss(self) -> float:
        """What the measurement costs the unit it costs most (its part of the loss)."""
        return max(self.unit_losses.values(), default=0.0)

    def measurement(self) -> Any:
        """OpenDP's measurement: integer noise at ``scale`` on a count vector of ``cells``."""
        return _measurement(self.model, self.cells, self.scale)


def _measurement(model: str, cells: int, scale: float) -> Any:
    vectors = vector_domain(atom_domain(T="i64"), size=cells)
    if model == "zcdp":
        return make_gaussian(vectors, l2_distance(T="i64"), scale=scale)
    return make_laplace(vectors, l1_distance(T="i64"), scale=scale)


def _scale(model: str, cells: int, allocation: float, sensitivity: int) -> tuple[float, Any]:
    """The smallest scale (to OpenDP's precision) whose loss at ``sensitivity`` is within
    ``allocation`` by OpenDP's privacy map, and that measurement."""
    if model == "zcdp":
        scale = sensitivity / math.sqrt(2.0 * allocation)
    else:
        scale = sensitivity / allocation
    for _ in range(50):
        measurement = _measurement(model, cells, scale)
        if measurement.map(sensitivity) <= allocation:
            return scale, measurement
        scale *= 1.0 + 1e-12
    raise AssertionError("OpenDP's privacy map does not confirm the planned scale")


@dataclass(frozen=True)
class Accounting:
    """Every measurement of a release and what each unit spends in total."""

    model: str
    measurements: tuple[Planned, ...]
    # Under zCDP, each input's measurement strategy (its queries are among ``measurements``).
    designs: dict[str, strategy.Design] = field(default_factory=dict)

    @cached_property
    def unit_losses(self) -> dict[str, float]:
        """Each unit's loss over all measurements (by OpenDP's maps, added up)."""
        return unit_totals(planned.unit_losses for planned in self.measurements)

    @property
    def total(self) -> float:
        """The release's loss: what the unit that loses most loses."""
        return max(self.unit_losses.values(), default=0.0)

    @property
    def strategies(self) -> dict[str, str]:
        """How each input's tables are measured, as the ledger records it."""
        inputs = dict.fromkeys(p.input for p in self.measurements if p.kind in ("table", "design"))
        return {
            name: self.designs[name].method if name in self.designs else ALONE for name in inputs
        }

    def table(self, name: str) -> Planned | None:
        """The measurement of a table alone (pure DP), or None when its input's strategy
        measures it together with the input's other tables (zCDP)."""
        return next((p for p in self.measurements if p.kind == "table" and p.name == name), None)

    def truncation(self, input_name: str) -> Planned | None:
        return next(
            (p for p in self.measurements if p.kind == "truncation" and p.input == input_name),
            None,
        )

    def of_input(self, input_name: str) -> list[Planned]:
        return [planned for planned in self.measurements if planned.input == input_name]


def _table_sensitivity(spec: ReleaseSpec, input_name: str) -> dict[str, int]:
    source = spec.inputs[input_name]
    sensitivity: dict[str, int] = {}
    for reach in spec.reaches(input_name):
        if not reach.through:
            own = _LINKED_OWN_SENSITIVITY if source.linked_units else source.max_records_per_person
            sensitivity[reach.unit] = own
        else:
            sensitivity[reach.unit] = source.linked_units[reach.unit].max_records_per_person
    return sensitivity


def _truncation_sensitivity(spec: ReleaseSpec, input_name: str) -> tuple[int, dict[str, int]]:
    """The cells and sensitivities of an input's truncation estimate."""
    source = spec.inputs[input_name]
    if not source.linked_units:
        return len(histogram_bins(source.max_records_per_person)), {source.unit: 1}
    ((unit, linked),) = source.linked_units.items()
    return 1, {source.unit: 1, unit: LINKED_REFERENCE_FACTOR * linked.max_records_per_person}


def calibrated(
    spec: ReleaseSpec,
    name: str,
    kind: Kind,
    input_name: str,
    cells: int,
    allocation: float,
    sensitivity: dict[str, int],
) -> Planned:
    """A measurement of ``cells`` counts given ``allocation`` of each unit's loss: its noise
    scale set so the unit with the largest ``sensitivity`` spends exactly that, and what
    it costs every unit by OpenDP's privacy map."""
    model = spec.privacy.model
    scale, measurement = _scale(model, cells, allocation, max(sensitivity.values()))
    return Planned(
        name=name,
        kind=kind,
        input=input_name,
        cells=cells,
        model=model,
        allocation=allocation,
        sensitivity=sensitivity,
        scale=scale,
        unit_losses={unit: float(measurement.map(d)) for unit, d in sensitivity.items()},
    )


def unit_bounds(spec: ReleaseSpec, input_name: str) -> dict[str, int]:
    """How many records of an input one person of each unit can move (see the module
    docstring): the sensitivity, per record moved, of any count vector of the input."""
    return _table_sensitivity(spec, input_name)


@lru_cache(maxsize=64)
def _design(workload: strategy.Workload, objective: strategy.Objective) -> strategy.Design:
    """The optimal strategy, or, should its integer queries not be buildable (a workload
    beyond what 64-bit integers resolve), each table measured alone at its part: never
    worse than a strategy that cannot be used, and said so in the method."""
    try:
        return strategy.plan(workload, "zcdp", objective)
    except ValueError:
        marginals = list(workload.marginals)
        return strategy.Design.marginals(
            workload, marginals, [m.weight for m in marginals], "zcdp", method=ALONE
        )


def design_of(
    spec: ReleaseSpec, input_name: str, table_losses: Mapping[str, float] | None = None
) -> strategy.Design:
    """The measurement strategy of one input's tables under zCDP (:mod:`publisher.strategy`):
    the tables' weights (their parts of the loss) are their priorities in the spec's
    objective."""
    table_losses = table_losses or {}
    workload = strategy.workload_from_spec(spec, input_name)
    weights = {
        table.name: table_losses.get(table.name, spec.table_loss(table))
        for table in spec.tables
        if table.input == input_name
    }
    smallest = min(weights.values())
    workload = strategy.Workload(
        workload.attributes,
        tuple(
            replace(marginal, weight=weights[marginal.name] / smallest)
            for marginal in workload.marginals
        ),
    )
    return _design(workload, spec.privacy.objective)


def account(
    spec: ReleaseSpec, table_losses: dict[str, float] | None = None, *, one_by_one: bool = False
) -> Accounting:
    """Plan every measurement of ``spec``: allocations, sensitivities, scales and losses.

    Under zCDP each input's tables are measured together by the queries of its strategy
    (:func:`design_of`), which share the input's part of the loss (its tables' parts);
    under pure DP each table is measured alone at its part (today's split: no L1 optimum
    is known). ``table_losses`` replaces the parts of the tables it names (``plan
    --target``); ``one_by_one`` measures each table alone under zCDP too (what ``plan``
    compares the strategy with).
    """
    table_losses = table_losses or {}
    measurements = []
    designs = {}
    for input_name in spec.inputs:
        tables = [table for table in spec.tables if table.input == input_name]
        if not tables:
            continue
        losses = [table_losses.get(table.name, spec.table_loss(table)) for table in tables]
        if spec.privacy.model == "zcdp" and not one_by_one:
            design = design_of(spec, input_name, table_losses)
            designs[input_name] = design
            bounds = unit_bounds(spec, input_name)
            allocation = math.fsum(losses)
            for query in design.queries:
                measurements.append(
                    calibrated(
                        spec,
                        f"{input_name}: {query.name}",
                        "design",
                        input_name,
                        query.size,
                        allocation * query.share,
                        {unit: query.distance("zcdp", bound) for unit, bound in bounds.items()},
                    )
                )
            continue
        for table, loss in zip(tables, losses, strict=True):
            cells = math.prod(len(spec.category_of(table, column).values) for column in table.by)
            measurements.append(
                calibrated(
                    spec,
                    table.name,
                    "table",
                    table.input,
                    cells,
                    loss,
                    _table_sensitivity(spec, table.input),
                )
            )
    for input_name in spec.truncation_inputs:
        cells, sensitivity = _truncation_sensitivity(spec, input_name)
        measurements.append(
            calibrated(
                spec,
                input_name,
                "truncation",
                input_name,
                cells,
                spec.truncation_loss(input_name),
                sensitivity,
            )
        )
    return Accounting(spec.privacy.model, tuple(measurements), designs)
