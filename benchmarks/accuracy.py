"""Accuracy of the measurement strategies: expected and simulated RMSE per table.

    python benchmarks/accuracy.py [--trials 200] [--out benchmarks]

For the demo spec's inputs and for workloads designed to test other shapes (two to five
attributes, derived columns at two and three levels, tables that share margins and
tables that do not), at several losses, it compares:

- per-table OpenDP: each table measured alone with its weight's share of the loss, its
  cells as measured and its totals summed from them;
- hand-set weights + GLS: the same measurements estimated together (today's release);
- ResidualPlanner: the published planner, with a hierarchy as nested isotropic residuals;
- planner: ``publisher.strategy.plan``, the integer queries the release would measure;
- optimum: the least error any strategy can have (zCDP), certified by the dual bound.

Expected RMSE comes from each design's exact covariance; simulated RMSE from releases
whose noise is drawn by OpenDP (``make_gaussian`` / ``make_laplace`` on integer vectors
at the design's scales), estimated as the release would. Pure DP (Laplace) is compared
on the same workloads. Writes ``ACCURACY.md`` and ``accuracy.json``.
"""

from __future__ import annotations

import os

# Small eigendecompositions are many times slower with OpenBLAS's threads on a busy
# machine; the benchmark runs them one thread at a time (set before NumPy loads).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import dataclasses
import itertools
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opendp.domains import atom_domain, vector_domain  # noqa: E402
from opendp.measurements import make_gaussian, make_laplace  # noqa: E402
from opendp.metrics import l1_distance, l2_distance  # noqa: E402
from opendp.mod import enable_features  # noqa: E402

from publisher import strategy  # noqa: E402
from publisher.demo import generate  # noqa: E402
from publisher.spec import load  # noqa: E402
from publisher.strategy import Column, Design, Marginal, Workload  # noqa: E402

# The simulations draw noise with OpenDP's vector measurements, which are "contrib".
enable_features("contrib")

TARGET_OPTIMUM = 1.02  # the planner's objective at most 2% above the optimum
TARGET_PER_TABLE = 0.6  # RMSE at most 0.6 of per-table OpenDP's, cells and totals
LOSS_FACTORS = (0.2, 1.0, 5.0)  # times each case's own loss
WITH_TOTALS = "planner, totals counted"
RESIDUAL_WITH_TOTALS = "ResidualPlanner, totals counted"
METHODS = ("per-table OpenDP", "hand-set weights + GLS", "ResidualPlanner", "planner", WITH_TOTALS)
PURE_METHODS = ("per-table OpenDP", "hand-set weights + GLS", "planner (L1)")


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    description: str
    workload: Workload
    model: str
    loss: float  # rho for this input
    epsilon: float  # the loss for the pure-DP comparison
    bound: int  # records one person can change


def _grouping(attribute: str, sizes: list[int]) -> Column:
    return Column(attribute, tuple(g for g, n in enumerate(sizes) for _ in range(n)), len(sizes))


def demo_cases(folder: Path) -> list[Case]:
    """The demo spec's inputs, with the loss today's split gives each input."""
    spec = load(generate(folder, crimes=1000, seed=1).spec)
    total_weight = math.fsum(t.weight for t in spec.tables)
    out = []
    for name, source in spec.inputs.items():
        tables = [t for t in spec.tables if t.input == name]
        share = math.fsum(t.weight for t in tables) / total_weight
        titles = ", ".join(f"{t.name} (weight {t.weight:g})" for t in tables)
        out.append(
            Case(
                f"demo: {name}",
                f"The demo spec's {name} tables: {titles}.",
                strategy.workload_from_spec(spec, name),
                spec.privacy.model,
                spec.privacy.loss * share,
                share,  # epsilon 1 for the release, split as today
                source.max_records_per_person,
            )
        )
    return out


def designed_cases() -> list[Case]:
    """Workloads of other shapes (zCDP, rho 0.5 per input, one record per person)."""
    force = Column.of("force", 44)
    regions = [3, 5, 4, 5, 4, 6, 2, 5, 5, 4, 1]
    region = _grouping("force", regions)
    # Nations of the regions: England (9 regions), Wales, National.
    nation_of_region = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]
    nation = Column(
        "force", tuple(nation_of_region[r] for r in region.groups), max(nation_of_region) + 1
    )
    age, sex, ethnicity = Column.of("age", 7), Column.of("sex", 3), Column.of("ethnicity", 6)
    broad_age = _grouping("age", [2, 2, 3])
    small = (("a", 2), ("b", 2), ("c", 3), ("d", 2), ("e", 3))
    out = [
        Case(
            "shared margins, 3 attributes",
            "Every one- and two-way table of age (7), sex (3) and ethnicity (6): each "
            "margin is shared by three tables.",
            Workload(
                (("age", 7), ("sex", 3), ("ethnicity", 6)),
                (
                    Marginal("age-by-sex", (age, sex), 2.0),
                    Marginal("age-by-ethnicity", (age, ethnicity)),
                    Marginal("sex-by-ethnicity", (sex, ethnicity)),
                    Marginal("age", (age,)),
                    Marginal("sex", (sex,)),
                    Marginal("ethnicity", (ethnicity,)),
                ),
            ),
            "zcdp",
            0.5,
            1.0,
            1,
        ),
        Case(
            "unshared, 5 attributes",
            "One table per attribute of five (10, 6, 5, 4, 3 keys): nothing shared but the "
            "grand total.",
            Workload(
                (("a", 10), ("b", 6), ("c", 5), ("d", 4), ("e", 3)),
                tuple(
                    Marginal(name, (Column.of(name, size),), weight)
                    for name, size, weight in (
                        ("a", 10, 2.0),
                        ("b", 6, 1.0),
                        ("c", 5, 1.0),
                        ("d", 4, 1.0),
                        ("e", 3, 1.0),
                    )
                ),
            ),
            "zcdp",
            0.5,
            1.0,
            1,
        ),
        Case(
            "all two-way, 5 attributes",
            "All ten two-way tables of five attributes (6, 5, 4, 3, 2 keys).",
            Workload(
                (("a", 6), ("b", 5), ("c", 4), ("d", 3), ("e", 2)),
                tuple(
                    Marginal(f"{x}-by-{y}", (Column.of(x, nx), Column.of(y, ny)))
                    for (x, nx), (y, ny) in itertools.combinations(
                        (("a", 6), ("b", 5), ("c", 4), ("d", 3), ("e", 2)), 2
                    )
                ),
            ),
            "zcdp",
            0.5,
            1.0,
            1,
        ),
        Case(
            "all three-way, 5 small attributes",
            "All ten three-way tables of five attributes of 2, 2, 3, 2 and 3 keys: small "
            "tables, most of whose content is shared with others.",
            Workload(
                small,
                tuple(
                    Marginal(
                        "-by-".join(x for x, _ in combo), tuple(Column.of(x, n) for x, n in combo)
                    )
                    for combo in itertools.combinations(small, 3)
                ),
            ),
            "zcdp",
            0.5,
            1.0,
            1,
        ),
        Case(
            "derived region, 3 attributes",
            "Force (44) with region (11, derived) by sex (3) and age (7, with a derived "
            "broad age of 3): force, region by sex, region by age, force by sex, broad age "
            "by sex.",
            Workload(
                (("force", 44), ("sex", 3), ("age", 7)),
                (
                    Marginal("force", (force,), 2.0),
                    Marginal("region-by-sex", (region, sex)),
                    Marginal("region-by-age", (region, age)),
                    Marginal("force-by-sex", (force, sex)),
                    Marginal("broad-age-by-sex", (broad_age, sex), 2.0),
                ),
            ),
            "zcdp",
            0.5,
            1.0,
            1,
        ),
        Case(
            "three levels, 4 attributes",
            "Force -> region -> nation, sex, age and ethnicity: force, region, nation by "
            "sex, age by sex, ethnicity.",
            Workload(
                (("force", 44), ("sex", 3), ("age", 7), ("ethnicity", 6)),
                (
                    Marginal("force", (force,), 2.0),
                    Marginal("region", (region,)),
                    Marginal("nation-by-sex", (nation, sex)),
                    Marginal("age-by-sex", (age, sex)),
                    Marginal("ethnicity", (ethnicity,)),
                ),
            ),
            "zcdp",
            0.5,
            1.0,
            1,
        ),
        Case(
            "one large table and its margins, 4 attributes",
            "A four-way table (6 x 5 x 4 x 3) and its four one-way margins.",
            Workload(
                (("a", 6), ("b", 5), ("c", 4), ("d", 3)),
                (
                    Marginal(
                        "a-by-b-by-c-by-d",
                        (
                            Column.of("a", 6),
                            Column.of("b", 5),
                            Column.of("c", 4),
                            Column.of("d", 3),
                        ),
                        2.0,
                    ),
                    *(
                        Marginal(x, (Column.of(x, n),))
                        for x, n in (("a", 6), ("b", 5), ("c", 4), ("d", 3))
                    ),
                ),
            ),
            "zcdp",
            0.5,
            1.0,
            1,
        ),
    ]
    return out


def _with_totals(workload: Workload) -> Workload:
    """The same tables, their published totals counted in the objective."""
    return Workload(
        workload.attributes,
        tuple(dataclasses.replace(m, totals=True) for m in workload.marginals),
    )


# ---------------------------------------------------------------------------------------


def _designs(case: Case, objective: strategy.Objective, model: strategy.Model) -> dict[str, Design]:
    w = case.workload
    weights = [m.weight for m in w.marginals]
    per_table = Design.marginals(w, w.marginals, weights, model, joint=False)
    today = Design.marginals(w, w.marginals, weights, model)
    if model == "pure":
        return {
            "per-table OpenDP": per_table,
            "hand-set weights + GLS": today,
            "planner (L1)": strategy.plan(w, "pure", objective),
        }
    designs = {
        "per-table OpenDP": per_table,
        "hand-set weights + GLS": today,
        "ResidualPlanner": Design.residuals(strategy.residual_planner(w, objective)),
        "planner": strategy.plan(w, "zcdp", objective),
    }
    if objective == "total":
        designs[WITH_TOTALS] = strategy.plan(_with_totals(w), "zcdp", objective)
        # Compared on that objective, not simulated.
        designs[RESIDUAL_WITH_TOTALS] = Design.residuals(
            strategy.residual_planner(_with_totals(w), objective)
        )
    return designs


@dataclasses.dataclass(frozen=True)
class Accuracy:
    """A table's RMSE (cells, totals) and their relative standard errors when simulated."""

    cells: float
    totals: float
    cells_se: float
    totals_se: float


def _accuracy(covariance: np.ndarray, marginal: Marginal, trials: int, kurtosis: float) -> Accuracy:
    """RMSE of the cells and of the totals from their covariance, and the relative standard
    error of an RMSE simulated over ``trials`` releases (the mean square of n correlated
    errors has variance (kurtosis - 1) tr(C^2) / n^2 per release for Gaussian-like noise)."""
    totals = strategy.margin_weights(marginal)
    out = []
    for matrix in (covariance, totals @ covariance @ totals.T):
        mean_square = float(np.trace(matrix)) / len(matrix)
        spread = math.sqrt((kurtosis - 1.0) * float(np.sum(matrix * matrix)) / trials) / len(matrix)
        out.append((math.sqrt(mean_square), spread / mean_square / 2.0 if mean_square > 0 else 0.0))
    return Accuracy(out[0][0], out[1][0], out[0][1], out[1][1])


def _objective(
    covariances: dict[str, np.ndarray],
    workload: Workload,
    objective: strategy.Objective,
    model: strategy.Model,
) -> float:
    """The planner's objective, from each table's covariance: sum_t w_t^(p+1) * mean
    variance of its figures (cells, and totals when counted), or max_t w_t^p * largest
    cell variance; p is 1 under zCDP, 2 under pure DP (``publisher.strategy``)."""
    power = 1 if model == "zcdp" else 2
    values = []
    for marginal in workload.marginals:
        covariance = covariances[marginal.name]
        variances = np.diag(covariance)
        if objective == "worst_cell":
            values.append(marginal.weight**power * float(variances.max()))
            continue
        if marginal.totals:
            totals = strategy.margin_weights(marginal)
            variances = np.concatenate([variances, np.diag(totals @ covariance @ totals.T)])
        values.append(marginal.weight ** (power + 1) * float(variances.mean()))
    return math.fsum(values) if objective == "total" else max(values)


def _noise(model: str, scale: float) -> Any:
    if model == "pure":
        return make_laplace(vector_domain(atom_domain(T="i64")), l1_distance(T="i64"), scale=scale)
    return make_gaussian(vector_domain(atom_domain(T="i64")), l2_distance(T="i64"), scale=scale)


def _simulate(
    design: Design, scales: list[float], truth: np.ndarray, trials: int
) -> dict[str, tuple[float, float]]:
    """Simulated RMSE per table (cells, totals) over ``trials`` releases, OpenDP noise."""
    leaves = design.leaf_counts(truth)
    exact = design.answers(leaves)
    variances = [strategy.noise_variance(design.model, s) for s in scales]
    mechanisms = [_noise(design.model, s) for s in scales]
    marginals = design.structure.workload.marginals
    true_cells = {
        m.name: design.structure.table_cells(design.structure.table(m.name), leaves.astype(float))
        for m in marginals
    }
    totals = {m.name: strategy.margin_weights(m) for m in marginals}
    squares = {m.name: [0.0, 0.0] for m in marginals}
    for _ in range(trials):
        noisy = [
            np.array(mechanism(answer.tolist()), dtype=float)
            for mechanism, answer in zip(mechanisms, exact, strict=True)
        ]
        if design.joint:
            estimates = design.estimate(noisy, variances)
            cells = {m.name: estimates.cells(m.name) for m in marginals}
        else:
            cells = {m.name: values for m, values in zip(marginals, noisy, strict=True)}
        for name, values in cells.items():
            error = values - true_cells[name]
            squares[name][0] += float(np.mean(error**2))
            squares[name][1] += float(np.mean((totals[name] @ error) ** 2))
    return {
        name: (math.sqrt(s[0] / trials), math.sqrt(s[1] / trials)) for name, s in squares.items()
    }


def _floors(case: Case) -> dict[str, float]:
    """The least ratio to per-table OpenDP's variance that every cell (every cell and
    total) can have at once under any strategy (zCDP): the worst-cell optimum with each
    table's priority the inverse of its per-table variance. As RMSE ratios."""
    w = case.workload
    total_weight = math.fsum(m.weight for m in w.marginals)
    per_cell = {m.name: total_weight / m.weight for m in w.marginals}
    cells_only = [
        dataclasses.replace(m, weight=1.0 / per_cell[m.name], totals=False) for m in w.marginals
    ]
    with_totals = list(cells_only)
    for m in w.marginals:
        for size in range(len(m.columns)):
            for subset in itertools.combinations(range(len(m.columns)), size):
                summed = m.cells / math.prod(m.shape[i] for i in subset)
                with_totals.append(
                    Marginal(
                        f"{m.name}{subset}",
                        tuple(m.columns[i] for i in subset),
                        1.0 / (per_cell[m.name] * summed),
                    )
                )
    out = {}
    for label, marginals in (("cells", cells_only), ("cells and totals", with_totals)):
        optimum = strategy.optimal(Workload(w.attributes, tuple(marginals)), "worst_cell", gap=1e-5)
        assert optimum.bound is not None
        out[label] = math.sqrt(optimum.bound)
    return out


def run_case(case: Case, trials: int, truth_seed: int = 7) -> dict[str, Any]:
    rng = np.random.default_rng(truth_seed)
    truth = rng.integers(0, 200, size=tuple(size for _, size in case.workload.attributes))
    marginals = case.workload.marginals
    result: dict[str, Any] = {
        "name": case.name,
        "description": case.description,
        "attributes": dict(case.workload.attributes),
        "tables": [{"name": m.name, "cells": m.cells, "weight": m.weight} for m in marginals],
        "bound": case.bound,
        "floors": _floors(case),
    }
    for model, base_loss in (("zcdp", case.loss), ("pure", case.epsilon)):
        kurtosis = 3.0 if model == "zcdp" else 6.0
        result[model] = {}
        for objective in ("total", "worst_cell"):
            designs = _designs(case, objective, model)
            optima = {}
            if model == "zcdp":
                optima["optimum"] = (strategy.optimal(case.workload, objective), case.workload)
                if objective == "total":
                    counted = _with_totals(case.workload)
                    optima["optimum, totals counted"] = (
                        strategy.optimal(counted, objective),
                        counted,
                    )
            factors = LOSS_FACTORS if (model, objective) == ("zcdp", "total") else (1.0,)
            per_objective: dict[str, Any] = {
                "notes": {method: list(design.notes) for method, design in designs.items()},
                "objective": {},
                "objective, totals counted": {},
                "losses": {},
            }
            for factor in factors:
                loss = base_loss * factor
                row: dict[str, Any] = {}
                values: dict[str, float] = {}
                counted_values: dict[str, float] = {}
                for method, design in designs.items():
                    scales = design.scales(loss, case.bound)
                    variances = [strategy.noise_variance(model, s) for s in scales]
                    covariances = {m.name: design.covariance(m.name, variances) for m in marginals}
                    values[method] = _objective(covariances, case.workload, objective, model)
                    counted_values[method] = _objective(
                        covariances, _with_totals(case.workload), objective, model
                    )
                    if method == RESIDUAL_WITH_TOTALS:
                        continue
                    started = time.perf_counter()
                    simulated = _simulate(design, scales, truth, trials)
                    row[method] = {
                        "expected": {
                            m.name: dataclasses.asdict(
                                _accuracy(covariances[m.name], m, trials, kurtosis)
                            )
                            for m in marginals
                        },
                        "simulated": simulated,
                        "seconds": time.perf_counter() - started,
                    }
                for label, (optimum, workload) in optima.items():
                    scaled = optimum.scaled(case.bound**2 / (2.0 * loss))
                    covariances = {m.name: scaled.covariance(m.name) for m in marginals}
                    target = values if workload is case.workload else counted_values
                    target[label] = _objective(covariances, workload, objective, "zcdp")
                    assert optimum.bound is not None
                    target[f"{label} bound"] = optimum.bound * case.bound**2 / (2.0 * loss)
                    row[label] = {
                        "expected": {
                            m.name: dataclasses.asdict(
                                _accuracy(covariances[m.name], m, trials, 3.0)
                            )
                            for m in marginals
                        }
                    }
                per_objective["objective"][f"{loss:.6g}"] = values
                per_objective["objective, totals counted"][f"{loss:.6g}"] = counted_values
                per_objective["losses"][f"{loss:.6g}"] = row
            result[model][objective] = per_objective
    return result


# ---------------------------------------------------------------------------------------
# The report.


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _middle(losses: dict[str, Any]) -> tuple[str, Any]:
    ordered = sorted(losses.items(), key=lambda item: float(item[0]))
    return ordered[len(ordered) // 2]


def _ratios(row: dict[str, Any], method: str, kind: str) -> dict[str, tuple[float, float]]:
    """Per table, (cells, totals) RMSE of ``method`` over per-table OpenDP's."""
    out = {}
    for table, base in row["per-table OpenDP"]["expected"].items():
        if kind == "expected":
            mine = row[method]["expected"][table]
            values = (mine["cells"], mine["totals"])
        else:
            values = tuple(row[method]["simulated"][table])
        out[table] = (values[0] / base["cells"], values[1] / base["totals"])
    return out


def report(results: list[dict[str, Any]], trials: int, seconds: float) -> str:
    lines = [
        "# Accuracy report",
        "",
        f"Machine: {platform.machine()}, {platform.system()}, Python {platform.python_version()}; "
        f"generated by `python benchmarks/accuracy.py --trials {trials}` in {seconds:.0f} s.",
        "",
        "Expected RMSE is exact: each design's covariance (the discrete Gaussian's variance "
        "taken as its scale squared, an upper bound; the discrete Laplace's exactly). "
        f"Simulated RMSE is over {trials} releases whose noise OpenDP draws (`make_gaussian` "
        "/ `make_laplace` on integer vectors at each design's scale), estimated as the "
        "release would. 'Cells' is the RMSE over a table's cells, 'totals' over its totals "
        "(every margin and the grand total, as published). Losses are per input; one person "
        "changes at most `bound` records. The objective `total` is the sum over tables of "
        "weight^2 x the mean variance of the table's cells ('totals counted': of its cells and "
        "totals together); `worst_cell` is the largest weight x cell variance.",
        "",
        "## Targets",
        "",
        f"- The planner's expected error (the objective) within {TARGET_OPTIMUM - 1:.0%} of "
        "the optimum for the same tables and loss (zCDP), for both objectives.",
        f"- Each table's RMSE at most {TARGET_PER_TABLE} times per-table OpenDP's at the "
        "same loss, cells and totals alike, confirmed by simulation.",
        "- Simulations agree with the formulas within their sampling error.",
        "",
        "## Verdict: the optimum",
        "",
        "Objective of each method divided by the optimum's (zCDP, any loss: the ratios do "
        "not depend on it). The optimum is certified: the dual bound is below it by at most "
        "the last column.",
        "",
        "| Input | Objective | planner | ResidualPlanner | hand-set + GLS | per-table OpenDP "
        "| optimum / bound - 1 | planner within 2% |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for result in results:
        for objective, key, planner_name, residual_name, optimum_name in (
            ("total", "objective", "planner", "ResidualPlanner", "optimum"),
            (
                "total, totals counted",
                "objective, totals counted",
                WITH_TOTALS,
                RESIDUAL_WITH_TOTALS,
                "optimum, totals counted",
            ),
            ("worst_cell", "objective", "planner", "ResidualPlanner", "optimum"),
        ):
            data = result["zcdp"][objective.split(",")[0]]
            _, values = _middle(data[key])
            optimum = values[optimum_name]
            planner = values[planner_name] / optimum
            lines.append(
                f"| {result['name']} | {objective} | {planner:.6f} | "
                f"{values[residual_name] / optimum:.3f} | "
                f"{values['hand-set weights + GLS'] / optimum:.3f} | "
                f"{values['per-table OpenDP'] / optimum:.3f} | "
                f"{abs(optimum / values[optimum_name + ' bound'] - 1):.0e} | "
                f"{_verdict(planner <= TARGET_OPTIMUM)} |"
            )
    lines += [
        "",
        f"## Verdict: at most {TARGET_PER_TABLE} x per-table OpenDP",
        "",
        "zCDP, at each input's own loss: the planner's RMSE over per-table OpenDP's, for "
        "each of its objectives, best and worst table, expected (simulated in brackets). "
        "The floor is the least ratio that every table's cells (cells and totals) can reach "
        "at once under ANY strategy: the worst-cell optimum with each table's priority the "
        "inverse of its per-table variance (certified by the dual bound), which is what the "
        "planner's `worst_cell` objective optimises. No mechanism that adds Gaussian "
        "noise to linear queries of the counts and estimates without bias can beat it.",
        "",
        "| Input | planner's objective | cells | totals | floor: cells | floor: cells and totals "
        f"| cells at most {TARGET_PER_TABLE} | totals at most {TARGET_PER_TABLE} |",
        "| --- | --- | --- | --- | ---: | ---: | --- | --- |",
    ]

    def span(values: dict[str, tuple[float, float]], position: int) -> str:
        chosen = [v[position] for v in values.values()]
        return f"{min(chosen):.2f} - {max(chosen):.2f}"

    for result in results:
        _, row = _middle(result["zcdp"]["total"]["losses"])
        _, worst_row = _middle(result["zcdp"]["worst_cell"]["losses"])
        for method, label, source in (
            ("planner", "total", row),
            (WITH_TOTALS, "total, totals counted", row),
            ("planner", "worst_cell", worst_row),
        ):
            expected = _ratios(source, method, "expected")
            simulated = _ratios(source, method, "simulated")
            cells_ok = max(v[0] for v in expected.values()) <= TARGET_PER_TABLE
            totals_ok = max(v[1] for v in expected.values()) <= TARGET_PER_TABLE
            lines.append(
                f"| {result['name'] if label == 'total' else ''} | {label} | "
                f"{span(expected, 0)} ({span(simulated, 0)}) | "
                f"{span(expected, 1)} ({span(simulated, 1)}) | "
                f"{result['floors']['cells']:.2f} | {result['floors']['cells and totals']:.2f} | "
                f"{_verdict(cells_ok)} | {_verdict(totals_ok)} |"
            )
    lines += [
        "",
        "## Pure DP (Laplace)",
        "",
        "No optimum is known; the planner optimises the shares of the loss over the tables "
        "and their sub-tables. Its objective over today's (hand-set weights + GLS) and over "
        "per-table OpenDP's, and its RMSE over per-table OpenDP's (expected, best and worst "
        "table), at each input's epsilon.",
        "",
        "| Input | objective | / hand-set + GLS | / per-table OpenDP | cells | totals |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    for result in results:
        for objective in ("total", "worst_cell"):
            data = result["pure"][objective]
            _, values = _middle(data["objective"])
            _, row = _middle(data["losses"])
            ratios = _ratios(row, "planner (L1)", "expected")
            lines.append(
                f"| {result['name'] if objective == 'total' else ''} | {objective} | "
                f"{values['planner (L1)'] / values['hand-set weights + GLS']:.3f} | "
                f"{values['planner (L1)'] / values['per-table OpenDP']:.3f} | "
                f"{span(ratios, 0)} | {span(ratios, 1)} |"
            )
    lines += ["", "## Simulation against formulas", ""]
    excess: list[float] = []
    for result in results:
        for model in ("zcdp", "pure"):
            for data in result[model].values():
                for row in data["losses"].values():
                    for values in row.values():
                        if "simulated" not in values:
                            continue
                        for table, observed in values["simulated"].items():
                            accuracy = values["expected"][table]
                            for position, kind in enumerate(("cells", "totals")):
                                se = accuracy[f"{kind}_se"]
                                if accuracy[kind] > 0 and se > 0:
                                    excess.append((observed[position] / accuracy[kind] - 1) / se)
    beyond = sum(abs(z) > 3 for z in excess)
    lines.append(
        f"{len(excess)} simulated RMSEs (every case, loss, objective, method and table; cells "
        "and totals), each compared with its expected value in units of its standard error "
        "(computed from the covariance: the mean square of correlated errors over "
        f"{trials} releases; Laplace noise with kurtosis 6). Largest excess of simulated over "
        f"expected: {max(excess):.1f} SE; largest shortfall: {-min(excess):.1f} SE; beyond 3 SE: "
        f"{beyond} ({beyond / len(excess):.1%}; about 0.3% expected by chance). A shortfall is "
        "expected at small scales: the discrete Gaussian's variance is below its scale squared."
    )
    lines += ["", "## Per table", ""]
    for result in results:
        lines += _case_section(result)
    lines += ["", WHY]
    return "\n".join(lines) + "\n"


def _pair(row: dict[str, Any], method: str, table: str, kind: str) -> str:
    expected = row[method]["expected"][table][kind]
    if "simulated" not in row[method]:
        return f"{expected:.3g}"
    simulated = row[method]["simulated"][table][0 if kind == "cells" else 1]
    return f"{expected:.3g} ({simulated:.3g})"


def _case_section(result: dict[str, Any]) -> list[str]:
    lines = [f"### {result['name']}", "", result["description"], ""]
    attributes = ", ".join(f"{k} ({v})" for k, v in result["attributes"].items())
    lines += [f"Base attributes: {attributes}; bound {result['bound']} records per person.", ""]
    sections = [("zcdp", "total", loss) for loss in result["zcdp"]["total"]["losses"]]
    sections += [("zcdp", "worst_cell", _middle(result["zcdp"]["worst_cell"]["losses"])[0])]
    sections += [
        ("pure", objective, _middle(result["pure"][objective]["losses"])[0])
        for objective in ("total", "worst_cell")
    ]
    for model, objective, loss in sections:
        row = result[model][objective]["losses"][loss]
        methods = [m for m in (METHODS if model == "zcdp" else PURE_METHODS) if m in row]
        methods += [m for m in ("optimum", "optimum, totals counted") if m in row]
        planner = "planner" if model == "zcdp" else "planner (L1)"
        name = "rho" if model == "zcdp" else "epsilon"
        lines += [
            f"{'zCDP' if model == 'zcdp' else 'Pure DP'}, {name} = {float(loss):.4g}, objective "
            f"`{objective}`: RMSE expected (simulated); ratio = {planner} / per-table OpenDP.",
            "",
            "| Table | | " + " | ".join(methods) + " | ratio |",
            "| --- | --- | " + " | ".join("---:" for _ in methods) + " | ---: |",
        ]
        for table in result["tables"]:
            table_name = table["name"]
            for kind in ("cells", "totals"):
                ratio = (
                    row[planner]["expected"][table_name][kind]
                    / row["per-table OpenDP"]["expected"][table_name][kind]
                )
                values = " | ".join(_pair(row, m, table_name, kind) for m in methods)
                label = table_name if kind == "cells" else ""
                lines.append(f"| {label} | {kind} | {values} | {ratio:.2f} |")
        lines.append("")
    return lines


WHY = """## What the numbers say

**The optimum.** For Gaussian noise, linear queries of the counts and unbiased
(least-squares) estimates, the least objective any strategy can reach at a given loss is
computed with a certificate: the dual of the matrix mechanism gives a lower bound, and
the strategy found meets it to 1e-7. The planner measures that strategy as integer
queries (so that OpenDP's integer Gaussian adds the noise and the sensitivity per record
is an exact integer); the rounding costs a few parts in a million. The target "within 2%
of the optimum" is met for every input and both objectives.

**ResidualPlanner as published** (one noise scale per residual, a hierarchy as nested
residuals: constant, between regions, forces within regions) is optimal when no column is
grouped or all groups have the same size: its rows match the optimum there. With regions
of unequal sizes (1 to 6 forces) its single scale for "between regions" cannot weigh
small and large regions differently, and it falls well short of the optimum, on the demo
and on the designed hierarchies even short of today's hand-set weights. The planner gives
each component's block between regions a small dense matrix instead, which is what the
optimum needs.

**The 0.6 target.** Per-table OpenDP gives each table its share of the loss; a joint
strategy can only gain where tables share something: the grand total, margins, regions
inside forces. What a table does not share (the contrasts between the forces of a
region, the interaction of offence type and environment) must be paid from its own share
whatever the strategy. The floor column measures this exactly: the least ratio that every
table can have at once, under any strategy. On the demo's inputs and on most shapes here
the floor for cells is between 0.75 and 1.0, so no mechanism of this kind can bring every
table's cells to 0.6 of per-table OpenDP; the planner's worst table sits at the floor
(objective `worst_cell`) or a little above it (objective `total`, which trades tables by
weight). Where tables are small and share most of their content (all three-way tables of
five small attributes) the floor is below 0.6 and the planner with `worst_cell` meets the
target for cells and totals. Totals gain far more than cells: one query of the optimum
serves a total, while per-table OpenDP adds up the noise of every cell it sums. Counting
the published totals in the objective brings them below 0.6 on most inputs, at a price in
cells (a single table, as the demo's victims, then has cells less precise than measured
alone).

**Pure DP.** No optimum is known for Laplace noise. The planner optimises the shares of
the loss over the tables and their sub-tables, estimated together; today's split is one
of its choices, so its objective is never worse than today's. Pure DP composes linearly
(epsilons add), so per-table OpenDP loses more there when tables share margins, and the
planner gains more than under zCDP on those shapes.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    parser.add_argument("--only", help="run only the cases whose name contains this text")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="publisher-accuracy-") as folder:
        cases = demo_cases(Path(folder)) + designed_cases()
    if args.only:
        cases = [case for case in cases if args.only in case.name]
    results = []
    for case in cases:
        case_started = time.perf_counter()
        results.append(run_case(case, args.trials))
        print(f"{case.name}: {time.perf_counter() - case_started:.1f} s", file=sys.stderr)
    seconds = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy.json").write_text(
        json.dumps({"trials": args.trials, "seconds": seconds, "cases": results}, indent=1) + "\n"
    )
    (args.out / "ACCURACY.md").write_text(report(results, args.trials, seconds))


if __name__ == "__main__":
    main()
