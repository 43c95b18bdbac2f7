"""What a release will cost and how accurate it will be, before anything is spent.

Everything here comes from the spec's public parameters (losses, weights, bounds, keys,
rounding): the data is never read. The loss split, sensitivities and noise scales are
:func:`publisher.accounting.account`'s, the very ones a release uses, checked by OpenDP's
privacy maps; the margins come from the release's own estimation and interval code run on
placeholder counts (margins depend on the noise, not on the counts), so the plan states
the margins the package will publish.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from rich.console import Group
from rich.table import Table as RichTable
from rich.text import Text

from publisher import accounting, intervals, postprocess, privacy, strategy
from publisher.errors import SpecError
from publisher.spec import LIMITS, ReleaseSpec

__all__ = ["Plan", "TablePlan", "advice", "largest_margins", "parse_targets", "plan"]


@dataclass(frozen=True)
class TablePlan:
    """One table's part of the loss and its expected accuracy."""

    name: str
    loss: float  # its part of each unit's loss (rho or epsilon)
    measured: str  # "alone" (pure DP), or the input's strategy ("optimum") it is measured by
    margin_estimate: float  # the largest margin of the table's cells after estimation
    margin_published: float  # the largest half-width a cell's published interval can have
    # The largest cell margin, at the same loss, under the optimum for the same tables
    # (zCDP; None under pure DP, where no optimum is known) and with today's per-table
    # measurement (each table alone at its part, all estimated together).
    margin_optimum: float | None
    margin_per_table: float | None
    target: float | None = None


@dataclass(frozen=True)
class Plan:
    """The whole release: per-table plans, each unit's loss, and the largest as epsilon."""

    model: str
    loss_name: str
    total_loss: float  # the largest loss of any unit
    unit_losses: dict[str, float]  # by unit name
    unit_titles: dict[str, str]
    epsilon: float
    delta: float
    cap: float
    tables: tuple[TablePlan, ...]
    truncation_loss: float  # the part of the loss that estimates what the bounds left out
    advice: dict[str, float] = field(default_factory=dict)  # spec values meeting targets
    meets_targets: bool = True

    def to_json(self) -> str:
        """The plan as JSON (losses in the model's unit, margins in counts)."""
        return json.dumps(
            {
                "model": self.model,
                "loss": {
                    self.loss_name: self.total_loss,
                    "epsilon": self.epsilon,
                    "delta": self.delta,
                },
                "units": self.unit_losses,
                "cap": {self.loss_name: self.cap},
                "meets_cap": self.meets_targets,
                "weights": self.weights,
                "advice": self.advice,
                "tables": [asdict(table) for table in self.tables],
            },
            indent=2,
        )

    def to_table(self) -> Group:
        """The plan for a terminal: one row per table, then each unit's loss."""
        unit = (
            "\N{GREEK SMALL LETTER RHO}"
            if self.loss_name == "rho"
            else "\N{GREEK SMALL LETTER EPSILON}"
        )
        optimum = self.model == "zcdp"
        table = RichTable(
            title="Privacy loss and expected 95% margins of error (counts)",
            caption="'Planned' is the largest margin of the table's cells once all tables of "
            "its input are estimated together; 'as published' the widest half-width a "
            "cell's published interval can have, its bounds rounded outward. "
            + (
                "'Optimum' is the margin under the best strategy of Gaussian measurements "
                "for privacy.objective at the same loss; 'one by one' the margin when each "
                "table is measured alone at its part and all are estimated together."
                if optimum
                else "Under pure DP each table is measured alone at its part (Laplace noise)."
            ),
        )
        table.add_column("Table", overflow="fold")
        table.add_column(f"Loss ({unit})", justify="right")
        headers = ["Planned", "As published"]
        if optimum:
            headers += ["Optimum", "One by one"]
        for header in (*headers, "Target"):
            table.add_column(header, justify="right")
        for row in self.tables:
            cells = [
                row.name,
                f"{row.loss:.4g}",
                f"\N{PLUS-MINUS SIGN}{row.margin_estimate:.1f}",
                f"\N{PLUS-MINUS SIGN}{row.margin_published:.1f}",
            ]
            if optimum:
                cells += [
                    _margin_text(row.margin_optimum),
                    _margin_text(row.margin_per_table),
                ]
            cells.append("" if row.target is None else f"\N{PLUS-MINUS SIGN}{row.target:g}")
            table.add_row(*cells)
        lines = [
            f"For each {self.unit_titles[name]}: {self.loss_name} = {loss:.4g}"
            for name, loss in self.unit_losses.items()
        ]
        total = f"Largest loss of any person: {self.loss_name} = {self.total_loss:.4g}"
        if self.model == "zcdp":
            total += f", that is (epsilon = {self.epsilon:.4g}, delta = {self.delta:.0e})-DP"
        total += f"; lifetime cap {self.loss_name} = {self.cap:g}."
        if self.truncation_loss:
            total += (
                f"\nOf it, {self.loss_name} = {self.truncation_loss:.4g} estimates what the "
                "per-person bounds leave out."
            )
        if self.advice:
            weights = ", ".join(f"{name}: {w:g}" for name, w in self.weights.items())
            total += (
                f"\nTo release with these targets, set privacy.{self.loss_name}: "
                f"{self.advice[self.loss_name]:g} and the table weights {weights}."
            )
        return Group(table, Text("\n".join(lines)), Text(total))

    @property
    def weights(self) -> dict[str, float]:
        """Table weights that give this split (proportional to each table's loss)."""
        if self.advice:
            return {name: value for name, value in self.advice.items() if name != self.loss_name}
        smallest = min(table.loss for table in self.tables)
        return {table.name: round(table.loss / smallest, 6) for table in self.tables}


def _margin_text(margin: float | None) -> str:
    return "" if margin is None else f"\N{PLUS-MINUS SIGN}{margin:.1f}"


def _published_half_width(margin: float, base: int) -> float:
    """The widest half-width an interval of margin ``margin`` can have once its bounds are
    rounded outward to ``base``: its width is ``round_up(2 margin)`` or a base more."""
    return (intervals.round_up(2.0 * margin, base) + base) / 2.0


def largest_margins(
    spec: ReleaseSpec, plan: accounting.Accounting, names: set[str] | None = None
) -> dict[str, float]:
    """The largest margin of each table's cells (``names`` only, when given), from the
    release's own estimation on placeholder counts."""
    measured = privacy.placeholder(spec, plan)
    estimates = postprocess.consistent_estimates(spec, measured, names)
    base = spec.disclosure.rounding_base
    margins = {}
    for table in spec.tables:
        if names is not None and table.name not in names:
            continue
        order = {column: spec.category_of(table, column).values for column in table.by}
        cells = postprocess.with_totals(
            estimates[table.name], order=order, total_label=None, base=base
        )
        margins[table.name] = float(cells[postprocess.MARGIN].to_numpy().max())
    return margins


def _plan(
    spec: ReleaseSpec,
    table_losses: dict[str, float],
    targets: dict[str, float],
    names: set[str] | None = None,
) -> Plan:
    planned = accounting.account(spec, table_losses)
    margins = largest_margins(spec, planned, names)
    base = spec.disclosure.rounding_base
    tables = []
    compared = _compared(spec, table_losses, names)
    for table in spec.tables:
        if table.name not in margins:
            continue
        design = planned.designs.get(table.input)
        optimum, per_table = compared.get(table.name, (None, None))
        tables.append(
            TablePlan(
                name=table.name,
                loss=table_losses.get(table.name, spec.table_loss(table)),
                measured="alone" if design is None else design.method,
                margin_estimate=margins[table.name],
                margin_published=_published_half_width(margins[table.name], base),
                margin_optimum=optimum,
                margin_per_table=per_table,
                target=targets.get(table.name),
            )
        )
    total = planned.total
    epsilon, delta = privacy.epsilon_delta(spec.privacy.model, total, spec.privacy.delta)
    return Plan(
        model=spec.privacy.model,
        loss_name=spec.privacy.loss_name,
        total_loss=total,
        unit_losses=dict(planned.unit_losses),
        unit_titles={name: unit.title for name, unit in spec.privacy.units.items()},
        epsilon=epsilon,
        delta=delta,
        cap=spec.privacy.cap_loss,
        tables=tuple(tables),
        truncation_loss=math.fsum(
            item.allocation for item in planned.measurements if item.kind == "truncation"
        ),
        meets_targets=total <= spec.privacy.cap_loss * (1 + 1e-9),
    )


def _largest_margin(variances: npt.NDArray[np.float64], base: int) -> float:
    """The margin of the least precise of cells with these variances (normal errors)."""
    return intervals.margin(intervals.Smooth("normal", math.sqrt(float(variances.max()))), base)


@lru_cache(maxsize=64)
def _optimum(
    workload: strategy.Workload, objective: strategy.Objective
) -> strategy.Strategy | None:
    """The optimal strategy of sensitivity 1 for the workload, None when its blocks are too
    large for the exact optimiser (the plan then has no optimum to compare with)."""
    try:
        return strategy.optimal(workload, objective).normalised()
    except ValueError:
        return None


def _compared(
    spec: ReleaseSpec, table_losses: dict[str, float], names: set[str] | None
) -> dict[str, tuple[float | None, float | None]]:
    """Under zCDP, per table: its largest cell margin under the optimum for the spec's
    objective, and with each table measured alone at its part and all estimated together
    (the release's own code, as a release measured that way would publish), at the same
    loss (see :mod:`publisher.strategy`). Empty under pure DP, where tables are measured
    alone."""
    if spec.privacy.model != "zcdp":
        return {}
    base = spec.disclosure.rounding_base
    one_by_one = largest_margins(
        spec, accounting.account(spec, table_losses, one_by_one=True), names
    )
    out: dict[str, tuple[float | None, float | None]] = {}
    for input_name in spec.inputs:
        tables = [table for table in spec.tables if table.input == input_name]
        if not tables or (names is not None and not any(t.name in names for t in tables)):
            continue
        bound = max(accounting.unit_bounds(spec, input_name).values())
        parts = [table_losses.get(t.name, spec.table_loss(t)) for t in tables]
        design = accounting.design_of(spec, input_name, table_losses)
        best = _optimum(design.structure.workload, spec.privacy.objective)
        optimum = None if best is None else best.scaled(bound * bound / (2.0 * math.fsum(parts)))
        for table in tables:
            out[table.name] = (
                None
                if optimum is None
                else _largest_margin(optimum.cell_variances(table.name), base),
                one_by_one.get(table.name),
            )
    return out


def _meets(result: Plan, targets: dict[str, float]) -> bool:
    return all(
        table.margin_published <= targets[table.name] + 1e-9
        for table in result.tables
        if table.name in targets
    )


def _solve(spec: ReleaseSpec, targets: dict[str, float]) -> dict[str, float]:
    """The least losses of the targeted tables whose published intervals are no wider than
    their targets, estimated with all the tables of their inputs (others keep theirs).

    Start where every target holds, then lower each targeted table's loss in turn to the
    least that keeps every target (bisection on a multiplier), until no loss moves.
    """
    losses = {table.name: spec.table_loss(table) for table in spec.tables}
    targeted = set(targets)

    def meets(trial: dict[str, float]) -> bool:
        return _meets(_plan(spec, trial, targets, targeted), targets)

    scale_up = 1.0
    while not meets(_scaled(losses, targets, scale_up)):
        scale_up *= 2.0
        if scale_up > 2.0**40:
            listed = ", ".join(sorted(targets))
            raise SpecError(
                f"--target {listed}: no loss meets these targets (a published interval is at "
                f"least a rounding base, {spec.disclosure.rounding_base}, either side): raise "
                "the targets"
            )
    losses = _scaled(losses, targets, scale_up)
    for _ in range(4):
        moved = False
        for name in targets:
            # The printed weights are the losses over the smallest, and a spec's weight is
            # at most LIMITS.weight[1]: a table measured with others may need little loss
            # of its own, never less than that allows.
            others = [loss for other, loss in losses.items() if other != name]
            floor = min(1.0, max(others, default=0.0) / LIMITS.weight[1] / losses[name])
            if meets({**losses, name: losses[name] * floor}):
                high = floor
            else:
                low, high = floor, 1.0
                for _ in range(14):
                    middle = (low + high) / 2.0
                    if meets({**losses, name: losses[name] * middle}):
                        high = middle
                    else:
                        low = middle
            if high < 0.999:
                losses[name] *= high
                moved = True
        if not moved:
            break
    return losses


def _scaled(losses: dict[str, float], targets: dict[str, float], factor: float) -> dict[str, float]:
    return {name: loss * factor if name in targets else loss for name, loss in losses.items()}


def advice(spec: ReleaseSpec, losses: dict[str, float]) -> dict[str, float]:
    """The spec values that give the tables ``losses``: the total loss (rounded up, so
    every table gets at least its loss) and weights, as printed by ``plan --target``."""
    tables = math.fsum(losses.values())
    share = spec.privacy.truncation_share if spec.truncation_inputs else 0.0
    smallest = min(losses.values())
    weights = {name: float(f"{loss / smallest:.6g}") for name, loss in losses.items()}
    total = tables / (1.0 - share)
    # Rounded up to 4 significant digits, then up again until the weights, as printed,
    # give every table at least its loss.
    digits = 3 - math.floor(math.log10(total))
    value = math.ceil(total * 10**digits) / 10**digits
    weight_sum = math.fsum(weights.values())
    while any(
        value * (1.0 - share) * weights[name] / weight_sum < losses[name] * (1 - 1e-12)
        for name in losses
    ):
        value += 10.0**-digits
    return {spec.privacy.loss_name: value, **weights}


def plan(spec: ReleaseSpec, targets: dict[str, float] | None = None) -> Plan:
    """Plan the spec's release; with ``targets`` (table -> the widest published half-width),
    find the least loss for the targeted tables that meets every target after estimation
    and rounding, keeping the other tables' loss, and the spec values that give it."""
    targets = targets or {}
    if not targets:
        return _plan(spec, {}, {})
    losses = _solve(spec, targets)
    values = advice(spec, losses)
    changed = spec.model_copy(
        update={
            "privacy": spec.privacy.model_copy(
                update={spec.privacy.loss_name: values[spec.privacy.loss_name]}
            ),
            "tables": [
                table.model_copy(update={"weight": values[table.name]}) for table in spec.tables
            ],
        }
    )
    result = _plan(changed, {}, targets)
    return Plan(**{**asdict(result), "tables": result.tables, "advice": values})


def parse_targets(spec: ReleaseSpec, texts: tuple[str, ...]) -> dict[str, float]:
    """``table=MARGIN`` options into targets, every problem reported at once."""
    targets: dict[str, float] = {}
    problems = []
    names = [table.name for table in spec.tables]
    base = spec.disclosure.rounding_base
    for text in texts:
        name, _, value = text.partition("=")
        try:
            margin = float(value)
        except ValueError:
            margin = math.nan
        if name not in names:
            problems.append(f"--target {text}: no table named '{name}'; expected one of {names}")
        elif not (math.isfinite(margin) and margin > 0):
            problems.append(f"--target {text}: expected TABLE=MARGIN with a positive margin")
        elif margin < base:
            problems.append(
                f"--target {text}: a published interval's bounds are multiples of {base} "
                f"(disclosure.rounding_base), so it reaches at least {base} either side: "
                f"choose a target of at least {base}"
            )
        else:
            targets[name] = margin
    if problems:
        raise SpecError(problems)
    return targets
