"""Coverage of the published 95% intervals, by class of cell, over simulated releases.

Each release draws OpenDP's own noise (the measurements the release plans, at their
scales) on known true counts, then runs the release's estimation, intervals, rounding and
thresholds. For zCDP and pure DP, with the tables estimated together and a table alone,
the share of published intervals that contain the true count is reported per class (true
zero, 1-9, 10-19, 20-99, 100 and more, totals, shares) and written to
``test-artifacts/coverage.md``.

What must hold: at least 95% in every class, and at most 98.5% in every class but true
zeros, within the sampling error of the simulation (3.5 binomial standard errors, so a
sound release fails this test about once in 2,000 runs of it). A true zero is covered more
often (about 99%): its interval cannot go below zero, so it can only miss upwards, and its
bounds are multiples of the base; no interval of that kind can cover a count of 4 with
95% and a count of 0 with at most 98.5% when the noise's spread is a few times the base.
The per-cell guarantee itself is checked exactly, without simulation, in test_intervals.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from publisher import accounting, disclosure, postprocess, privacy, strategy
from publisher.engines import LeafCounts
from publisher.spec import ReleaseSpec, parse

TRIALS = 400
A = [f"a{i}" for i in range(6)]
B = [f"b{j}" for j in range(4)]
# True counts over a x b, with every class represented and their last digits spread.
TRUTH = np.array(
    [
        [0, 0, 3, 7],
        [1, 6, 12, 17],
        [18, 26, 41, 63],
        [82, 121, 154, 303],
        [9, 14, 0, 33],
        [2, 11, 97, 214],
    ]
)
CLASSES = ["true zero", "1-9", "10-19", "20-99", "100+", "totals", "shares"]
TOLERANCE_SE = 3.5


def spec(model: str, together: bool) -> ReleaseSpec:
    loss = "rho" if model == "zcdp" else "epsilon"
    tables = [{"name": "by-a-and-b", "input": "x", "by": ["a", "b"]}]
    if together:
        tables.insert(0, {"name": "by-a", "input": "x", "by": ["a"]})
    raw: dict[str, Any] = {
        "release": {
            "id": "coverage",
            "title": "Coverage",
            "version": "1.0.0",
            "period": "2025",
            "description": "Simulated.",
            "publisher": "Tests",
            "contact": {"name": "Tests", "email": "tests@example.org"},
        },
        "privacy": {
            "model": model,
            loss: 0.05 if model == "zcdp" else 0.5,
            "cap": {loss: 10},
            "units": {"person": {"title": "person"}},
            "truncation_share": 0,
        },
        "categories": {"a": {"title": "A", "values": A}, "b": {"title": "B", "values": B}},
        "inputs": {
            "x": {
                "path": "x.csv",
                "identifier": "id",
                "unit": "person",
                "max_records_per_person": 2,
                "columns": {"a": {"categories": "a"}, "b": {"categories": "b"}},
            }
        },
        "tables": [{**t, "title": t["name"], "description": "Counts."} for t in tables],
        "shares": [
            {
                "name": "share",
                "table": "by-a-and-b",
                "title": "Share",
                "statement": "of all",
                "numerator": {"a": ["a3"]},
            }
        ],
    }
    return parse(yaml.safe_dump(raw))


def exact_counts(release_spec: ReleaseSpec, name: str) -> list[int]:
    table = release_spec.table(name)
    counts = []
    for row in privacy.keys_of(release_spec, table).iter_rows(named=True):
        cells = TRUTH[A.index(row["a"])]
        counts.append(int(cells[B.index(row["b"])] if "b" in row else cells.sum()))
    return counts


def leaf_counts(release_spec: ReleaseSpec) -> LeafCounts:
    """The true counts by every key combination of the input's base columns."""
    names = [name for name, _ in strategy.workload_from_spec(release_spec, "x").attributes]
    assert names == ["a", "b"]
    rows = [(*index, int(count)) for index, count in np.ndenumerate(TRUTH)]
    return LeafCounts.from_frame(names, TRUTH.shape, rows)


def cell_class(truth: int, total: bool) -> str:
    if total:
        return "totals"
    if truth == 0:
        return "true zero"
    for limit, name in ((10, "1-9"), (20, "10-19"), (100, "20-99")):
        if truth < limit:
            return name
    return "100+"


def coverage(model: str, together: bool) -> dict[str, tuple[int, int]]:
    """(covered, intervals) per class over TRIALS simulated releases."""
    release_spec = spec(model, together)
    plan = accounting.account(release_spec)
    # The exact vectors the release adds noise to, by its own path from the true counts:
    # each table's cells (pure DP) or the strategy's queries (zCDP).
    bounded = privacy.BoundedInput(
        leaf_counts(release_spec),
        {t.name: np.asarray(exact_counts(release_spec, t.name)) for t in release_spec.tables},
        None,
    )
    answers = privacy._exact_answers(release_spec, plan, "x", bounded)
    exact = {key: vector.tolist() for key, vector in answers.items()}
    measurements = {(item.kind, item.name): item.measurement() for item in plan.measurements}
    true_share = TRUTH[A.index("a3")].sum() / TRUTH.sum()
    tally = {name: [0, 0] for name in CLASSES}
    for _ in range(TRIALS):
        values = {key: measurements[key](exact[key]) for key in exact}
        measured = privacy._measurements(release_spec, plan, values)
        estimates = postprocess.consistent_estimates(release_spec, measured)
        for table in release_spec.tables:
            order = {column: release_spec.category_of(table, column).values for column in table.by}
            rows = postprocess.with_totals(
                estimates[table.name], order=order, total_label="Total", base=5
            )
            published = disclosure.apply(rows, list(table.by), base=5, threshold=10)
            for row in published.iter_rows(named=True):
                # A one-way table's rows add up over b; a row with a Total key is a total.
                b_key = row.get("b", "Total")
                a = [A.index(row["a"])] if row["a"] != "Total" else list(range(len(A)))
                b = [B.index(b_key)] if b_key != "Total" else list(range(len(B)))
                truth = int(TRUTH[np.ix_(a, b)].sum())
                total = row["a"] == "Total" or row.get("b") == "Total"
                name = cell_class(truth, total)
                tally[name][0] += row["lower_95"] <= truth <= row["upper_95"]
                tally[name][1] += 1
        share = postprocess.estimate_share(release_spec.shares[0], estimates["by-a-and-b"])
        # As published: percentages to one decimal place, rounded outward.
        lower = math.floor(share.lower_95 * 1000) / 1000
        upper = math.ceil(share.upper_95 * 1000) / 1000
        tally["shares"][0] += lower <= true_share <= upper
        tally["shares"][1] += 1
    return {name: (covered, total) for name, (covered, total) in tally.items()}


CONFIGURATIONS = [(m, t) for m in ("zcdp", "pure") for t in (True, False)]


@pytest.fixture(scope="module")
def table() -> dict[tuple[str, bool], dict[str, tuple[int, int]]]:
    results = {configuration: coverage(*configuration) for configuration in CONFIGURATIONS}
    lines = [
        "# Coverage of the published 95% intervals",
        "",
        f"{TRIALS} simulated releases per row, OpenDP's noise; intervals covering the "
        "true count, by class of cell.",
        "",
        "| model | tables | " + " | ".join(CLASSES) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in CLASSES) + " |",
    ]
    for (model, together), result in results.items():
        cells = [
            f"{covered / total:.1%} ({total:,})" if total else "" for covered, total in (
                result[name] for name in CLASSES)
        ]  # fmt: skip
        lines.append(
            f"| {model} | {'together' if together else 'alone'} | " + " | ".join(cells) + " |"
        )
    report = "\n".join(lines) + "\n"
    print("\n" + report)
    artifacts = Path(__file__).resolve().parent.parent / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "coverage.md").write_text(report, encoding="utf-8")
    return results


@pytest.mark.parametrize(("model", "together"), CONFIGURATIONS)
@pytest.mark.parametrize("name", CLASSES)
def test_published_intervals_cover_at_least_95_percent_in_every_class(
    table: dict[tuple[str, bool], dict[str, tuple[int, int]]],
    model: str,
    together: bool,
    name: str,
) -> None:
    covered, total = table[(model, together)][name]
    assert total >= 200
    rate = covered / total
    tolerance = TOLERANCE_SE * math.sqrt(0.95 * 0.05 / total)
    assert rate >= 0.95 - tolerance, (name, rate)
    if name != "true zero":
        assert rate <= 0.985 + tolerance, (name, rate)
