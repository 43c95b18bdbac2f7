"""Help to choose the per-person bounds before a release: ``publisher bounds``.

A bound that is too small leaves records out (every count is of the records kept); one
that is too large makes every table noisier (the noise grows with it). ``publisher
bounds`` spends a small declared loss, recorded in the ledger like a release, to measure
with differential privacy what each candidate bound would leave out, and reports it with
the margin of error each would give a table at the spec's loss. Everything here is
post-processing of those noisy measurements.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np
from rich.console import Group, RenderableType
from rich.table import Table as RichTable
from rich.text import Text

from publisher import accounting, intervals, privacy
from publisher.plan import largest_margins
from publisher.postprocess import Figure
from publisher.privacy import BoundsMeasurement
from publisher.spec import ReleaseSpec

__all__ = ["BoundsReport", "Candidate", "InputBounds", "report"]


@dataclass(frozen=True)
class Candidate:
    """What one candidate bound would do: what it leaves out, and a table's margin."""

    bound: int
    people_over: Figure | None  # histogram: people with more records than the bound
    records_left_out: Figure | None  # histogram: their records beyond it (at the least)
    left_out: Figure | None  # linked: people counted under the largest candidate only
    margin: float  # the largest 95% margin of the input's first table's cells, at this bound


@dataclass(frozen=True)
class InputBounds:
    """The candidates for one input's bound, the one the spec sets marked."""

    input: str
    title: str
    kind: str  # "histogram" (records per person) or "linked" (people per linked person)
    unit: str  # whose bound it is (its title)
    table: str  # the table whose margin is shown
    current: int
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class BoundsReport:
    """Everything ``publisher bounds`` found, and what it spent per unit."""

    model: str
    loss_name: str
    loss: float
    unit_losses: dict[str, float]
    inputs: tuple[InputBounds, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def to_table(self) -> RenderableType:
        parts: list[RenderableType] = []
        for item in self.inputs:
            table = RichTable(
                title=f"{item.title}: {_what(item)}",
                title_justify="left",
                caption=(
                    f"Estimates with 95% intervals, from noisy counts. The margin is the largest "
                    f"of {item.table}'s cells at the spec's loss. The spec's bound is marked *."
                ),
                caption_justify="left",
            )
            table.add_column("Bound", justify="right")
            if item.kind == "histogram":
                table.add_column("People with more records", justify="right")
                table.add_column("Records left out (at least)", justify="right")
            else:
                table.add_column(
                    f"People left out (compared with {item.candidates[-1].bound})", justify="right"
                )
            table.add_column("Margin of a cell", justify="right")
            for candidate in item.candidates:
                mark = "*" if candidate.bound == item.current else ""
                figures = (
                    [candidate.people_over, candidate.records_left_out]
                    if item.kind == "histogram"
                    else [candidate.left_out]
                )
                table.add_row(
                    f"{candidate.bound}{mark}",
                    *(_figure(figure) for figure in figures),
                    f"\N{PLUS-MINUS SIGN}{candidate.margin:.0f}",
                )
            parts.append(table)
        spent = "; ".join(f"{unit}: {loss:.4g}" for unit, loss in self.unit_losses.items())
        parts.append(
            Text(f"Spent, recorded in the ledger: {self.loss_name} = {self.loss:g} ({spent}).")
        )
        return Group(*parts)


def _what(item: InputBounds) -> str:
    if item.kind == "histogram":
        return f"records counted per {item.unit}"
    return f"people counted per {item.unit}"


def _figure(figure: Figure | None) -> str:
    if figure is None:
        return "(the reference)"
    return f"{figure.estimate:,} ({figure.lower_95:,} to {figure.upper_95:,})"


def _combination(
    measurement: BoundsMeasurement, weights: list[float], scales: list[float]
) -> Figure:
    """An integer combination of the noisy counts, with its exact 95% interval."""
    combination = np.asarray(weights, dtype=float)
    variances = np.asarray([privacy.noise_variance(measurement.distribution, s) for s in scales])
    model = intervals.error_model(
        combination, [measurement.distribution] * len(weights), np.asarray(scales), variances
    )
    estimate = float(combination @ np.asarray(measurement.noisy_counts, dtype=float))
    half_width = intervals.margin(model, 1)
    return Figure(
        estimate=max(0, round(estimate)),
        lower_95=max(0, math.floor(estimate - half_width)),
        upper_95=max(0, math.ceil(estimate + half_width)),
    )


def _margin(spec: ReleaseSpec, input_name: str, table_name: str, sensitivity: int) -> float:
    """The largest 95% margin of ``table_name``'s cells if its input's largest sensitivity
    were ``sensitivity``: every noise scale, and so every margin, grows in proportion to it
    at the spec's loss (:func:`publisher.plan.largest_margins` gives today's)."""
    current = max(accounting.unit_bounds(spec, input_name).values())
    today = largest_margins(spec, accounting.account(spec), {table_name})[table_name]
    return today * sensitivity / current


def _input_bounds(spec: ReleaseSpec, measurement: BoundsMeasurement) -> InputBounds:
    source = spec.inputs[measurement.input]
    table = next(t.name for t in spec.tables if t.input == measurement.input)
    counts = measurement.noisy_counts
    scale = measurement.scales[0]
    candidates = []
    if measurement.kind == "histogram":
        bins = len(counts)
        for bound in measurement.candidates:
            over = [0.0] * bound + [1.0] * (bins - bound)
            beyond = [0.0] * bound + [float(j - bound) for j in range(bound + 1, bins + 1)]
            candidates.append(
                Candidate(
                    bound=bound,
                    people_over=_combination(measurement, over, [scale] * bins),
                    records_left_out=_combination(measurement, beyond, [scale] * bins),
                    left_out=None,
                    margin=_margin(spec, measurement.input, table, bound),
                )
            )
        current = source.max_records_per_person
    else:
        last = len(counts) - 1
        for position, bound in enumerate(measurement.candidates):
            weights = [0.0] * len(counts)
            weights[last] += 1.0
            weights[position] -= 1.0
            left_out = (
                _combination(measurement, weights, list(measurement.scales))
                if position < last
                else None  # the reference itself
            )
            candidates.append(
                Candidate(
                    bound=bound,
                    people_over=None,
                    records_left_out=None,
                    left_out=left_out,
                    margin=_margin(spec, measurement.input, table, max(bound, 2)),
                )
            )
        current = source.linked_units[measurement.unit].max_records_per_person
    return InputBounds(
        input=measurement.input,
        title=source.title or measurement.input,
        kind=measurement.kind,
        unit=spec.unit(measurement.unit).title,
        table=table,
        current=current,
        candidates=tuple(candidates),
    )


def report(spec: ReleaseSpec, loss: float, measured: list[BoundsMeasurement]) -> BoundsReport:
    """The report of ``publisher bounds`` from its noisy measurements."""
    return BoundsReport(
        model=spec.privacy.model,
        loss_name=spec.privacy.loss_name,
        loss=loss,
        unit_losses=accounting.unit_totals(item.unit_losses for item in measured),
        inputs=tuple(_input_bounds(spec, item) for item in measured),
    )
