"""What a release states about its privacy and its bounds, per unit, exactly as accounted.

Every number here comes from OpenDP's accounting of the release (:mod:`publisher.privacy`)
or from the noisy estimates of what the bounds left out; every sentence is tested against
the accounting (tests/test_guarantee.py).
"""

from __future__ import annotations

from typing import Any

from publisher.postprocess import Figure, TruncationEstimate
from publisher.privacy import Measurements, epsilon_delta
from publisher.spec import Reach, ReleaseSpec, Table

__all__ = [
    "NEIGHBOURS",
    "bound_text",
    "measurements_section",
    "privacy_section",
    "statement",
    "table_privacy",
    "truncation_section",
]

NEIGHBOURS = (
    "Two datasets are neighbours when they differ by one person of a privacy unit and by "
    "every record that depends on that person through the inputs' references (the "
    "semantics of PrivateSQL, Kotsogiannis et al., VLDB 2019)."
)


def _records(count: int) -> str:
    return f"{count} record" if count == 1 else f"{count:,} records"


def _loss(spec: ReleaseSpec, loss: float) -> dict[str, float]:
    """A loss in the spec's model, with its (epsilon, delta) statement under zCDP."""
    epsilon, delta = epsilon_delta(spec.privacy.model, loss, spec.privacy.delta)
    if spec.privacy.model == "pure":
        return {"epsilon": loss}
    return {"rho": loss, "epsilon": epsilon, "delta": delta}


def _loss_words(spec: ReleaseSpec, loss: float) -> str:
    if spec.privacy.model == "pure":
        return f"epsilon = {loss:.4g}"
    epsilon, delta = epsilon_delta("zcdp", loss, spec.privacy.delta)
    return f"rho = {loss:.4g} (epsilon = {epsilon:.4g}, delta = {delta:.0e})"


def bound_text(spec: ReleaseSpec, input_name: str, reach: Reach) -> str:
    """How the input's records of one person of ``reach.unit`` are bounded, in words."""
    source = spec.inputs[input_name]
    name = source.title or input_name
    title = spec.unit(reach.unit).title
    if reach.through:
        own = spec.unit(source.unit).title
        return (
            f"{name}: each {own} counted once, and at most {reach.bound} of them per {title}, "
            f"chosen at random (linked through {reach.path})"
        )
    if source.linked_units:
        return f"{name}: each {title} counted once"
    assert reach.bound is not None  # an input's own bound is always set
    return f"{name}: at most {_records(reach.bound)} per {title}, chosen at random"


def _unit_entry(spec: ReleaseSpec, measured: Measurements, unit: str) -> dict[str, Any]:
    declared = spec.unit(unit)
    reaches = []
    for input_name, source in spec.inputs.items():
        if not any(table.input == input_name for table in spec.tables):
            continue
        for reach in spec.reaches(input_name):
            if reach.unit != unit:
                continue
            reaches.append(
                {
                    "input": input_name,
                    "input_title": source.title or input_name,
                    "through": [str(hop) for hop in reach.through],
                    "identifier": reach.identifier,
                    "bound": reach.bound,
                    "bound_text": bound_text(spec, input_name, reach),
                }
            )
    return {
        "name": unit,
        "title": declared.title,
        "description": declared.description,
        **_loss(spec, measured.unit_losses.get(unit, 0.0)),
        "reaches": reaches,
        # Tables measured alone (pure DP), and inputs whose tables were measured together
        # by their strategy (zCDP): what each costs this unit.
        "tables": {
            table.name: table.unit_losses[unit]
            for table in measured.tables
            if unit in table.unit_losses
        },
        "inputs": {
            item.input: item.unit_losses[unit]
            for item in measured.designs
            if unit in item.unit_losses
        },
        "truncation": {
            item.input: item.unit_losses[unit]
            for item in measured.truncation
            if unit in item.unit_losses
        },
    }


def statement(spec: ReleaseSpec, measured: Measurements) -> str:
    """The release's privacy statement: one paragraph, per unit, as accounted."""
    model = (
        "zero-concentrated differential privacy"
        if measured.model == "zcdp"
        else "pure differential privacy"
    )
    units = "; ".join(
        f"for each {spec.unit(unit).title}: {_loss_words(spec, loss)}"
        for unit, loss in measured.unit_losses.items()
    )
    rules = spec.disclosure
    return (
        f"The figures in this release were computed with {model}, accounted by OpenDP "
        f"{measured.opendp_version}. {NEIGHBOURS} The privacy loss of one person, over "
        f"every figure that concerns them, is at most: {units}. Counts are of the records "
        "kept after each person's bounds; they are rounded to the nearest "
        f"{rules.rounding_base}, and counts below {rules.threshold} are not shown."
    )


def privacy_section(spec: ReleaseSpec, measured: Measurements) -> dict[str, Any]:
    """The descriptor's ``privacy``: the model, the largest loss of any person, and each
    unit's loss with how the records reach it and what each table costs it."""
    return {
        "model": measured.model,
        "neighbours": NEIGHBOURS,
        "loss": _loss(spec, measured.total_loss),
        "units": [_unit_entry(spec, measured, unit) for unit in spec.privacy.units],
        "measurements": measurements_section(spec, measured),
        "statement": statement(spec, measured),
    }


def table_privacy(spec: ReleaseSpec, measured: Measurements, table: Table) -> dict[str, Any]:
    """A table resource's ``privacy``: how it was measured and what that costs each unit.

    A table measured alone (pure DP) states its own noise; a table measured with its
    input's other tables by their strategy (zCDP) names that joint measurement, whose loss
    the tables share (it is not added up per table)."""
    noisy = measured.table(table.name)
    if noisy is not None:
        return {
            "measured": "alone",
            **_loss(spec, noisy.loss),
            "units": {unit: _loss(spec, loss) for unit, loss in noisy.unit_losses.items()},
            "sensitivity": dict(noisy.sensitivity),
            "distribution": noisy.distribution,
            "scale": noisy.scale,
            "margin_95": noisy.margin_95,
        }
    design = measured.design(table.input)
    assert design is not None  # every table is measured alone or with its input
    return {
        "measured": "with its input's tables",
        "input": table.input,
        "method": design.design.method,
        **_loss(spec, max(design.unit_losses.values())),
        "units": {unit: _loss(spec, loss) for unit, loss in design.unit_losses.items()},
        "distribution": design.queries[0].distribution,
    }


def measurements_section(spec: ReleaseSpec, measured: Measurements) -> list[dict[str, Any]]:
    """The descriptor's ``privacy.measurements``: each input whose tables were measured
    together by their strategy, what was measured (public, regenerated by
    ``strategy.plan`` from the spec) and what it cost each unit."""
    return [
        {
            "input": item.input,
            "title": spec.inputs[item.input].title or item.input,
            "tables": [table.name for table in spec.tables if table.input == item.input],
            "method": item.design.method,
            "objective": spec.privacy.objective,
            "notes": list(item.design.notes),
            "units": {unit: _loss(spec, loss) for unit, loss in item.unit_losses.items()},
            "queries": [
                {
                    "name": query.name,
                    "size": len(query.noisy),
                    "distribution": query.distribution,
                    "scale": query.scale,
                    "sensitivity": dict(query.sensitivity),
                }
                for query in item.queries
            ],
        }
        for item in measured.designs
    ]


def _figure(figure: Figure | None) -> dict[str, int] | None:
    if figure is None:
        return None
    return {"estimate": figure.estimate, "lower_95": figure.lower_95, "upper_95": figure.upper_95}


def _truncation_statement(spec: ReleaseSpec, estimate: TruncationEstimate) -> str:
    measurement = estimate.measurement
    source = spec.inputs[measurement.input]
    name = source.title or measurement.input
    unit = spec.unit(measurement.unit).title
    if estimate.left_out is not None:
        own = spec.unit(source.unit).title
        left_out = estimate.left_out
        return (
            f"{name}: each {own} is counted once, and at most {measurement.bound} per {unit}. "
            f"An estimated {left_out.estimate:,} people (95% interval {left_out.lower_95:,} to "
            f"{left_out.upper_95:,}) are not counted because every {unit} they are linked to "
            f"already had {measurement.bound} counted, compared with a bound of "
            f"{measurement.reference_bound} per {unit}."
        )
    assert estimate.people is not None and estimate.records is not None
    people, records = estimate.people, estimate.records
    return (
        f"{name}: counts are of the records kept, at most {_records(measurement.bound)} per "
        f"{unit}. An estimated {records.estimate:,} records (95% interval {records.lower_95:,} "
        f"to {records.upper_95:,}) were left out: those beyond the first "
        f"{_records(measurement.bound)} of an estimated {people.estimate:,} people (95% "
        f"interval {people.lower_95:,} to {people.upper_95:,}) who had more. A person with "
        f"{measurement.bins[-1]} records counts as {measurement.bins[-1].split()[0]} here, so "
        "the number of records left out may be higher."
    )


def truncation_section(
    spec: ReleaseSpec, estimates: list[TruncationEstimate]
) -> list[dict[str, Any]]:
    """The descriptor's ``truncation``: per input, the noisy measurement of what its bounds
    left out, the figures estimated from it, and a sentence saying so."""
    entries = []
    for estimate in estimates:
        measurement = estimate.measurement
        entries.append(
            {
                "input": measurement.input,
                "title": spec.inputs[measurement.input].title or measurement.input,
                "unit": measurement.unit,
                "kind": measurement.kind,
                "bound": measurement.bound,
                "reference_bound": measurement.reference_bound,
                "bins": list(measurement.bins),
                "noisy_counts": list(measurement.noisy_counts),
                "distribution": measurement.distribution,
                "scale": measurement.scale,
                "units": {
                    unit: _loss(spec, loss) for unit, loss in measurement.unit_losses.items()
                },
                "people_over_bound": _figure(estimate.people),
                "records_left_out": _figure(estimate.records),
                "people_left_out": _figure(estimate.left_out),
                "statement": _truncation_statement(spec, estimate),
            }
        )
    return entries
