"""The measurement strategies: checked against explicit matrices, the published
ResidualPlanner formulas and OpenDP's own noise."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
from opendp.domains import atom_domain, vector_domain
from opendp.measurements import make_gaussian, make_laplace
from opendp.metrics import l1_distance, l2_distance

# privacy enables OpenDP's "contrib" features, once, for the whole package.
from publisher import privacy, strategy
from publisher.demo import generate
from publisher.spec import load
from publisher.strategy import Column, Design, Marginal, Structure, Workload

# A force-like attribute of 7 keys in regions of 1, 2 and 4, an attribute of 3 keys and
# one of 2: tables that share margins, a region by force table (cells no record can be in)
# and tables that share nothing.
REGION = Column("force", (0, 1, 1, 2, 2, 2, 2), 3)
FORCE = Column.of("force", 7)
SEX = Column.of("sex", 3)
ONLINE = Column.of("online", 2)
ATTRIBUTES = (("force", 7), ("sex", 3), ("online", 2))
HIERARCHY = Workload(
    ATTRIBUTES,
    (
        Marginal("force", (FORCE,), 2.0),
        Marginal("region", (REGION,), 1.0),
        Marginal("region-by-sex", (REGION, SEX), 1.0),
        Marginal("region-by-force", (REGION, FORCE), 1.0),
        Marginal("online", (ONLINE,), 1.0),
    ),
)
# No groupings: ResidualPlanner's own setting. Shared and unshared margins.
FLAT = Workload(
    (("a", 4), ("b", 3), ("c", 2)),
    (
        Marginal("ab", (Column.of("a", 4), Column.of("b", 3)), 1.0),
        Marginal("bc", (Column.of("b", 3), Column.of("c", 2)), 2.0),
        Marginal("a", (Column.of("a", 4),), 1.0),
        Marginal("c", (Column.of("c", 2),), 3.0),
    ),
)


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to floating point (the explicit matrices' pseudo-inverse loses digits)."""
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-8 * np.abs(expected).max())


def explicit_queries(workload: Workload) -> dict[str, np.ndarray]:
    """Each table's cells as rows over the full cross-classification of the keys."""
    names = [name for name, _ in workload.attributes]
    grid = list(itertools.product(*(range(size) for _, size in workload.attributes)))
    out = {}
    for marginal in workload.marginals:
        rows = []
        for keys in itertools.product(*(range(k) for k in marginal.shape)):
            row = np.ones(len(grid))
            for column, key in zip(marginal.columns, keys, strict=True):
                axis = names.index(column.attribute)
                row *= np.array([column.groups[cell[axis]] == key for cell in grid], dtype=float)
            rows.append(row)
        out[marginal.name] = np.array(rows)
    return out


def explicit_strategy(design: Design, workload: Workload) -> list[np.ndarray]:
    """The integer matrix of each query, column by column: its answers on one record."""
    shape = tuple(size for _, size in workload.attributes)
    columns: list[list[np.ndarray]] = [[] for _ in design.queries]
    for flat in range(math.prod(shape)):
        counts = np.zeros(shape, dtype=np.int64)
        counts.flat[flat] = 1
        for i, answer in enumerate(design.answers(design.leaf_counts(counts))):
            columns[i].append(answer)
    return [np.array(c).T for c in columns]


def objective_gram(workload: Workload) -> np.ndarray:
    """The 'total' objective's Gram matrix: each table's cells weighted w^2 / (its cells a
    record can be in)."""
    queries = explicit_queries(workload)
    total = np.zeros((queries[workload.marginals[0].name].shape[1],) * 2)
    for m in workload.marginals:
        rows = queries[m.name]
        total += m.weight**2 / int(rows.any(axis=1).sum()) * rows.T @ rows
    return total


def test_the_integer_design_is_the_strategy_it_claims() -> None:
    # The queries, built column by column from one record at a time, have exactly the
    # sensitivity the design states, and least squares on them has exactly the
    # covariance the design states, cell by cell and between tables.
    optimum = strategy.optimal(HIERARCHY)
    design = Design.residuals(optimum)
    (matrix,) = explicit_strategy(design, HIERARCHY)
    assert design.queries[0].norm == int((matrix.astype(object) ** 2).sum(axis=0).max())
    assert design.queries[0].size == matrix.shape[0]
    precision = matrix.T.astype(float) @ matrix.astype(float)
    covariance = np.linalg.pinv(precision, rcond=1e-12, hermitian=True)
    queries = explicit_queries(HIERARCHY)
    variance = 7.5
    for first, second in itertools.product(queries, repeat=2):
        expected = queries[first] @ covariance @ queries[second].T * variance
        stated = design.covariance(first, [variance]) if first == second else None
        between = design.strategy([variance]).covariance(first, second)
        assert_close(between, expected)
        if stated is not None:
            assert_close(stated, expected)


def test_exact_answers_give_exact_tables() -> None:
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 50, size=(7, 3, 2))
    queries = explicit_queries(HIERARCHY)
    for design in (
        Design.residuals(strategy.optimal(HIERARCHY, "worst_cell")),
        Design.marginals(HIERARCHY, HIERARCHY.marginals, [1, 2, 3, 4, 5], "zcdp"),
    ):
        answers = design.answers(design.leaf_counts(counts))
        estimates = design.estimate(answers, [2.0] * len(answers))
        for name, rows in queries.items():
            np.testing.assert_allclose(estimates.cells(name), rows @ counts.ravel(), atol=1e-6)


WITH_TOTALS = Workload(ATTRIBUTES, tuple(replace(m, totals=True) for m in HIERARCHY.marginals))


@pytest.mark.parametrize("workload", [HIERARCHY, WITH_TOTALS], ids=["cells", "totals"])
@pytest.mark.parametrize("objective", ["total", "worst_cell"])
def test_the_optimum_is_certified_and_no_strategy_does_better(
    workload: Workload, objective: strategy.Objective
) -> None:
    optimum = strategy.optimal(workload, objective)
    assert optimum.bound is not None
    assert optimum.sensitivity == pytest.approx(1.0)
    achieved = optimum.value(objective)
    assert optimum.bound <= achieved <= optimum.bound * (1 + 1e-6)
    others = (strategy.measured_tables(workload), strategy.residual_planner(workload, objective))
    for other in others:
        assert other.normalised().value(objective) >= optimum.bound
    realised = Design.residuals(optimum).strategy([1.0]).normalised()
    assert realised.value(objective) <= achieved * (1 + 1e-4)


def test_the_bound_is_the_dual_of_the_whole_matrix_problem() -> None:
    # Without any symmetry: weights on every cell of the cross-classification, by the same
    # fixed point on the full Gram matrix, reach the same bound.
    gram = objective_gram(HIERARCHY)
    weights = np.full(len(gram), 1.0 / len(gram))
    for _ in range(3000):
        root = np.sqrt(weights)
        values, vectors = np.linalg.eigh(root[:, None] * gram * root[None, :])
        values = np.maximum(values, 0.0)
        half = (vectors * np.sqrt(values)) @ vectors.T
        diagonal = np.diag(half) / weights
        bound = float(np.sqrt(values).sum())
        weights = weights * diagonal / bound
    assert bound**2 == pytest.approx(strategy.optimal(HIERARCHY).bound, rel=1e-5)


def test_without_groupings_the_optimum_is_residual_planner_s_closed_form() -> None:
    # Xiao, Ding and Kifer: residual S costs prod (n-1)/n per unit of precision and adds
    # prod_{S} (n-1)/n * prod_{A \ S} 1/n^2 to each cell of a table on A; the least sum of
    # variances is (sum_S sqrt(v_S p_S))^2.
    sizes = dict(FLAT.attributes)
    need: dict[tuple[str, ...], float] = {}
    for marginal in FLAT.marginals:
        names = [c.attribute for c in marginal.columns]
        for size in range(len(names) + 1):
            for subset in itertools.combinations(names, size):
                per_cell = math.prod((sizes[a] - 1) / sizes[a] for a in subset) * math.prod(
                    1 / sizes[a] ** 2 for a in names if a not in subset
                )
                need[subset] = need.get(subset, 0.0) + marginal.weight**2 * per_cell
    closed_form = (
        sum(math.sqrt(v * math.prod((sizes[a] - 1) / sizes[a] for a in s)) for s, v in need.items())
        ** 2
    )
    assert strategy.optimal(FLAT).value("total") == pytest.approx(closed_form, rel=1e-6)
    for objective in ("total", "worst_cell"):
        assert strategy.residual_planner(FLAT, objective).value(objective) == pytest.approx(
            strategy.optimal(FLAT, objective).value(objective), rel=1e-5
        )


def test_unequal_groups_need_more_than_one_scalar_per_residual() -> None:
    # With regions of 1, 2 and 4 forces the published planner's isotropic residuals cannot
    # reach the optimum; the optimum's block between regions is a dense matrix.
    for objective in ("total", "worst_cell"):
        nested = strategy.residual_planner(HIERARCHY, objective).value(objective)
        assert nested > strategy.optimal(HIERARCHY, objective).value(objective) * 1.01


def test_weights_are_priorities() -> None:
    # Two tables that share only their total: at the worst-cell optimum a table of weight
    # 3 has a third of the variance of a table of weight 1, and both do better than
    # measured alone with today's shares (3/4 and 1/4 of the loss: variances 4/3 and 4).
    workload = Workload(
        (("a", 5), ("b", 4)),
        (Marginal("a", (Column.of("a", 5),), 3.0), Marginal("b", (Column.of("b", 4),), 1.0)),
    )
    optimum = strategy.optimal(workload, "worst_cell")
    worst_a = optimum.cell_variances("a").max()
    worst_b = optimum.cell_variances("b").max()
    assert 3 * worst_a == pytest.approx(worst_b, rel=1e-5)
    assert worst_a < 4 / 3 and worst_b < 4


def test_groupings_of_every_shape() -> None:
    # Three levels (force -> region -> nation), two groupings that do not nest, a grand
    # total, and a key with no members: covariance as explicit matrices say.
    nation = Column("force", (0, 0, 0, 0, 0, 1, 1), 2)
    other = Column("force", (0, 1, 0, 1, 0, 1, 2), 4)  # key 3 has no members
    for tables in (
        (Marginal("f", (FORCE,)), Marginal("r", (REGION,)), Marginal("n", (nation, SEX), 2.0)),
        (Marginal("r", (REGION,)), Marginal("o", (other, SEX)), Marginal("all", ())),
        (Marginal("n", (nation,)), Marginal("r-by-o", (REGION, other))),
    ):
        workload = Workload(ATTRIBUTES, tables)
        queries = explicit_queries(workload)
        design = Design.residuals(strategy.optimal(workload))
        (matrix,) = explicit_strategy(design, workload)
        covariance = np.linalg.pinv(matrix.T.astype(float) @ matrix, rcond=1e-12, hermitian=True)
        for name, rows in queries.items():
            expected = rows @ covariance @ rows.T
            assert_close(design.covariance(name, [1.0]), expected)
            assert strategy.measured_tables(workload).value("total") >= strategy.optimal(
                workload
            ).value("total") * (1 - 1e-9)


# A table and its own margins, listed after it.
MARGINS = Workload(
    (("a", 4), ("b", 3)),
    (
        Marginal("ab", (Column.of("a", 4), Column.of("b", 3)), 2.0),
        Marginal("a", (Column.of("a", 4),)),
        Marginal("b", (Column.of("b", 3),)),
    ),
)


def test_the_pure_dp_planner_is_never_worse_than_today() -> None:
    for workload in (HIERARCHY, FLAT, MARGINS):
        for objective in ("total", "worst_cell"):
            planned, marginals, shares = strategy.marginal_weights(workload, objective)
            today = strategy.measured_tables(workload, model="pure")
            assert planned.value(objective) <= today.value(objective) * (1 + 1e-9)
            assert sum(shares) == pytest.approx(1.0)
            design = strategy.plan(workload, "pure", objective)
            assert all(query.norm == 1 for query in design.queries)
            assert [q.name for q in design.queries] == [
                m.name for m, s in zip(marginals, shares, strict=True) if s > 0
            ]


def test_distances_round_up_and_scales_spend_the_loss() -> None:
    query = strategy.Query("q", 3, 0.25, norm=2)
    assert query.distance("zcdp", 3) == 5  # 3 * sqrt(2) = 4.24
    assert query.distance("pure", 3) == 6
    assert strategy.Query("q", 3, 1.0, norm=4).distance("zcdp", 3) == 6
    design = strategy.plan(HIERARCHY, "zcdp")
    (query,) = design.queries
    (scale,) = design.scales(0.5, bound=3)
    gaussian = make_gaussian(vector_domain(atom_domain(T="i64")), l2_distance(T="i64"), scale=scale)
    assert float(gaussian.map(query.distance("zcdp", 3))) <= 0.5 * (1 + 1e-9)
    pure = strategy.plan(HIERARCHY, "pure")
    for query, scale in zip(pure.queries, pure.scales(1.0, bound=3), strict=True):
        laplace = make_laplace(
            vector_domain(atom_domain(T="i64")), l1_distance(T="i64"), scale=scale
        )
        assert float(laplace.map(query.distance("pure", 3))) <= query.share * (1 + 1e-9)


def test_opendp_noise_has_the_covariance_the_design_states() -> None:
    # 600 releases with OpenDP's discrete Gaussian at the design's scale. For each table,
    # the mean over releases of (error^2 / stated variance), averaged over its cells, is
    # 1 for Gaussian noise (at most 1: the discrete Gaussian's variance is below scale^2);
    # its standard error is at most sqrt(2 / 600) = 0.058, so 5 of them is 0.29.
    rng = np.random.default_rng(11)
    counts = rng.integers(0, 40, size=(7, 3, 2))
    design = strategy.plan(HIERARCHY, "zcdp")
    (scale,) = design.scales(0.2, bound=2)
    gaussian = make_gaussian(vector_domain(atom_domain(T="i64")), l2_distance(T="i64"), scale=scale)
    (exact,) = design.answers(design.leaf_counts(counts))
    variances = [strategy.noise_variance("zcdp", scale)]
    queries = explicit_queries(HIERARCHY)
    ratios: dict[str, list[np.ndarray]] = {name: [] for name in queries}
    stated = {name: np.diag(design.covariance(name, variances)) for name in queries}
    for _ in range(600):
        estimates = design.estimate([np.array(gaussian(exact.tolist()))], variances)
        for name, rows in queries.items():
            possible = stated[name] > 0
            error = estimates.cells(name) - rows @ counts.ravel()
            assert np.all(np.abs(error[~possible]) < 1e-6)  # cells no record can be in
            ratios[name].append(error[possible] ** 2 / stated[name][possible])
    for name, values in ratios.items():
        assert abs(float(np.mean(values)) - 1.0) < 5 * math.sqrt(2 / 600), name


def test_the_demo_spec_as_a_workload(tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = load(generate(tmp_path, crimes=200, seed=1).spec)
    workload = strategy.workload_from_spec(spec, "crimes")
    assert dict(workload.attributes) == {
        "force": 44,
        "offence_type": len(spec.categories["offence_type"].values),
        "environment": len(spec.categories["environment"].values),
        "online_element": len(spec.categories["online_element"].values),
    }
    structure = Structure(workload)
    force = structure.attributes[0]
    assert (force.leaves, force.blocks) == (44, 11)
    assert sorted(force.sizes.tolist()) == sorted(
        len(m)
        for m in spec.categories["region"].groups.members.values()  # type: ignore[union-attr]
    )
    region = structure.table("crimes-by-region")
    assert region.views[0].kind == "coarse"
    assert [m.weight for m in workload.marginals] == [
        t.weight for t in spec.tables if t.input == "crimes"
    ]
    assert [m.cells for m in workload.marginals] == [
        privacy.keys_of(spec, t).height for t in spec.tables if t.input == "crimes"
    ]
    assert not any(m.totals for m in workload.marginals)
    counted = strategy.workload_from_spec(spec, "crimes", totals=True)
    assert [m.totals for m in counted.marginals] == [
        t.totals for t in spec.tables if t.input == "crimes"
    ]


def test_bad_workloads_are_refused() -> None:
    with pytest.raises(ValueError, match="weight must be positive"):
        Workload(ATTRIBUTES, (Marginal("f", (FORCE,), 0.0),))
    with pytest.raises(ValueError, match="does not match its attribute"):
        Workload(ATTRIBUTES, (Marginal("f", (Column.of("force", 6),)),))
    with pytest.raises(ValueError, match="table names repeat"):
        Workload(ATTRIBUTES, (Marginal("f", (FORCE,)), Marginal("f", (SEX,))))
    structure = Structure(Workload(ATTRIBUTES, (Marginal("r", (REGION,)),)))
    with pytest.raises(ValueError, match="splits keys"):
        structure.table_for(Marginal("f", (FORCE,)))


def test_blocks_too_large_for_the_exact_planner_fall_back_to_residuals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(strategy, "MAX_BLOCK", 2)
    with pytest.raises(ValueError, match="larger than the exact planner takes"):
        strategy.optimal(HIERARCHY)
    design = strategy.plan(HIERARCHY, "zcdp")
    assert design.method == "residual planner"
    assert any("residual planner" in note for note in design.notes)
    counts = np.arange(42).reshape(7, 3, 2)
    estimates = design.estimate(design.answers(design.leaf_counts(counts)), [1.0])
    for name, rows in explicit_queries(HIERARCHY).items():
        np.testing.assert_allclose(estimates.cells(name), rows @ counts.ravel(), atol=1e-6)
