"""Measurement strategies for the count tables of one input: what to measure, with what noise.

Pure NumPy on public parameters (the tables, their keys and groupings, weights, losses):
nothing here reads data or draws noise. ``privacy`` asks a :class:`Design` for the integer
vectors to measure, has OpenDP add the noise, and hands the noisy vectors back to
:meth:`Design.estimate`, which gives every table's cells and their exact covariance.

The model. The tables of one input are marginals of one unknown cross-classification
``x`` of its records by the base columns the tables use (a derived column such as region
is a public grouping of its base column, force). A strategy measures linear queries
``A x`` with independent noise; least squares then estimates every table, with exact
covariance ``(A^T A)^+`` (times the noise variance). One record is one column of ``A``
and a person moves at most ``d`` records, so the sensitivity is ``d`` times the largest
L2 (Gaussian) or L1 (Laplace) norm of a column of ``A``.

The optimum for Gaussian noise (ResidualPlanner: Xiao, Ding and Kifer, "An Optimal and
Scalable Matrix Mechanism for Noisy Marginals under Convex Loss Functions", NeurIPS 2023,
extended to public hierarchies). Every table's cells split into residuals: per attribute,
the constant and the contrasts between its keys; for force grouped into regions, the span
of the region totals and, inside each region, the contrasts between its forces. Products
of one part per attribute are the *components*: orthogonal, and each table's Gram matrix
acts on each of them separately. The tables do not change when the forces of one region
(or the keys of an attribute without groups) are permuted, and the problem is convex, so
an optimal ``A^T A`` can be taken to be as symmetric: block diagonal, one small matrix
per component (as large as the product of the numbers of regions of the hierarchical
attributes it spans, 1 without a hierarchy) times the identity on its contrasts. Without
a hierarchy every block is 1 x 1: ResidualPlanner's residuals, each with its own noise.
With regions of unequal sizes the block between regions is a small dense matrix, which
ResidualPlanner's one scalar per residual cannot express (:func:`residual_planner` is
that restricted planner, kept for comparison and as the fallback for very large blocks).

The blocks come from the dual of the matrix mechanism (Li and Miklau; Edmonds, Nikolov
and Ullman, "The power of factorization mechanisms"): for a workload Gram matrix ``G``,

    min { tr(G M^-1) : diag(M) <= 1 }
        = max { tr((D^1/2 G D^1/2)^1/2)^2 : D >= 0 diagonal, tr D = 1 },

with ``M = D^-1/2 (D^1/2 G D^1/2)^1/2 D^-1/2`` at the optimum. ``D`` has one weight per
class of columns, found by a multiplicative fixed point; for the worst cell the cells get
weights too (a saddle point). Every iterate gives a strategy and a lower bound on every
strategy's error, so the answer carries its own certificate (``Strategy.bound``).

Objectives. The table weights keep the meaning they have in today's split of the loss:
``total`` minimises ``sum_t w_t^2 * (mean cell variance of t)``; ``worst_cell`` minimises
``max_t w_t * (largest cell variance of t)`` (for pure DP, where a table's variance falls
as the square of its share, ``w_t^3`` and ``w_t^2``). Were the tables to share nothing,
both would give each table the share ``w_t / sum w`` it gets today; what the planner
gains comes from what the tables share (the grand total, margins, regions inside forces).
A table marked ``totals`` counts its published totals in ``total`` too (the mean is then
over its cells and totals together): totals improve, cells pay for it.

Pure DP (Laplace). No closed form is known for L1. :func:`marginal_weights` optimises
the shares of the loss over the marginals the tables are made of (every table and every
table of a subset of its columns, HDMM's marginal family), estimating all together by
least squares; today's split is one point of that family, so it is never worse than today.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from publisher.spec import ReleaseSpec

__all__ = [
    "Column",
    "Design",
    "Estimates",
    "Marginal",
    "Model",
    "Objective",
    "Query",
    "Strategy",
    "Structure",
    "Workload",
    "margin_weights",
    "marginal_weights",
    "measured_tables",
    "noise_variance",
    "optimal",
    "plan",
    "residual_planner",
    "workload_from_spec",
]

Matrix = npt.NDArray[np.float64]
Index = npt.NDArray[np.int64]
Objective = Literal["total", "worst_cell"]
Model = Literal["zcdp", "pure"]

# The dual's fixed point stops when the strategy is within this relative gap of its bound.
GAP = 1e-7
_MAX_ITERATIONS = 20_000
# The largest block matrix the exact planner accepts (the product of the numbers of groups
# of the hierarchical attributes one component spans); beyond it, ResidualPlanner's scalars.
MAX_BLOCK = 400
# The integer queries never overflow 64 bits for inputs of up to this many records.
MAX_RECORDS = 2**40
# Entries of the integer strategy are rounded at about this resolution (relative).
_RESOLUTION = 2**20
_SMALLEST_RESOLUTION = 2**10


# ---------------------------------------------------------------------------------------
# What is published: tables of counts over the columns of one input.


@dataclass(frozen=True)
class Column:
    """A table's column, as a public grouping of the keys of one base attribute.

    ``groups[k]`` is the column's key (0-based) that base key ``k`` belongs to: the
    identity for the attribute itself, the region of each force for a derived column.
    ``keys`` is the number of the column's keys (a key with no members is a cell that is
    always empty).
    """

    attribute: str
    groups: tuple[int, ...]
    keys: int

    @classmethod
    def of(cls, attribute: str, size: int) -> Column:
        """The attribute itself: each of its ``size`` keys on its own."""
        return cls(attribute, tuple(range(size)), size)


@dataclass(frozen=True)
class Marginal:
    """A count table: the records counted by the keys of its columns (cells in C order of
    the columns' keys), with a weight (the release manager's priority) and whether its
    totals are published too (they then count in the objective)."""

    name: str
    columns: tuple[Column, ...]
    weight: float = 1.0
    totals: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(column.keys for column in self.columns)

    @property
    def cells(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Workload:
    """The tables of one input over its base attributes (name and number of keys)."""

    attributes: tuple[tuple[str, int], ...]
    marginals: tuple[Marginal, ...]

    def __post_init__(self) -> None:
        sizes = dict(self.attributes)
        problems = []
        if len(sizes) != len(self.attributes):
            problems.append("attribute names repeat")
        if any(size < 1 for size in sizes.values()):
            problems.append("an attribute has no keys")
        if not self.marginals:
            problems.append("no tables")
        names = [marginal.name for marginal in self.marginals]
        if len(set(names)) != len(names):
            problems.append("table names repeat")
        for marginal in self.marginals:
            if not (math.isfinite(marginal.weight) and marginal.weight > 0):
                problems.append(f"table {marginal.name}: the weight must be positive")
            for column in marginal.columns:
                size = sizes.get(column.attribute)
                if size is None or len(column.groups) != size:
                    problems.append(f"table {marginal.name}: a column does not match its attribute")
                elif not all(0 <= key < column.keys for key in column.groups):
                    problems.append(f"table {marginal.name}: a column names a key it does not have")
        if problems:
            raise ValueError("; ".join(problems))

    def marginal(self, name: str) -> Marginal:
        return next(marginal for marginal in self.marginals if marginal.name == name)


def workload_from_spec(spec: ReleaseSpec, input_name: str, *, totals: bool = False) -> Workload:
    """The tables of one input of a release spec, as a workload (public parameters only).

    Base attributes are the input's columns read from the file that some table uses
    directly or through a derived column, in the input's order; cells are in the order of
    ``privacy.keys_of``. With ``totals``, the totals a table publishes count in the
    ``total`` objective too.
    """
    source = spec.inputs[input_name]
    tables = [table for table in spec.tables if table.input == input_name]
    base_of = {name: column.derived_from or name for name, column in source.columns.items()}
    used = [
        name
        for name in source.columns
        if base_of[name] == name and any(base_of[c] == name for t in tables for c in t.by)
    ]
    keys = {name: spec.categories[source.columns[name].categories].values for name in used}
    marginals = []
    for table in tables:
        columns = []
        for name in table.by:
            base = base_of[name]
            category = spec.categories[source.columns[name].categories]
            if base == name:
                columns.append(Column.of(name, len(keys[name])))
                continue
            assert category.groups is not None  # checked by the spec
            position = {key: index for index, key in enumerate(category.values)}
            group_of = {
                member: position[group]
                for group, members in category.groups.members.items()
                for member in members
            }
            groups = tuple(group_of[key] for key in keys[base])
            columns.append(Column(base, groups, len(category.values)))
        marginals.append(
            Marginal(table.name, tuple(columns), table.weight, totals and table.totals)
        )
    return Workload(tuple((name, len(keys[name])) for name in used), tuple(marginals))


def margin_weights(marginal: Marginal) -> Matrix:
    """Rows summing the table's cells into each of its totals (every combination of keys
    and "total" with at least one total, in the order ``postprocess.with_totals`` lists
    them: keys then total for each column)."""
    grids = [np.arange(keys) for keys in marginal.shape]
    cells = np.array(list(itertools.product(*grids)), dtype=np.int64).reshape(
        marginal.cells, len(marginal.shape)
    )
    rows = []
    for keys in itertools.product(*([*range(k), -1] for k in marginal.shape)):
        if -1 not in keys:
            continue
        selected = np.ones(marginal.cells, dtype=bool)
        for position, key in enumerate(keys):
            if key >= 0:
                selected &= cells[:, position] == key
        rows.append(selected.astype(float))
    return np.array(rows).reshape(len(rows), marginal.cells)


# ---------------------------------------------------------------------------------------
# The structure shared by every strategy of a workload: attributes collapsed to the keys
# the tables tell apart, their hierarchy, the components and each table's view of them.


def _meet(labels: Sequence[Sequence[int] | Index], size: int) -> Index:
    """Block ids (0, 1, ... in order of first appearance) of the common refinement of
    partitions of ``range(size)``, each given as a label per element (one block if none)."""
    ids: dict[tuple[int, ...], int] = {}
    out = np.empty(size, dtype=np.int64)
    for element in range(size):
        out[element] = ids.setdefault(tuple(int(part[element]) for part in labels), len(ids))
    return out


def _kron(left: Matrix, right: Matrix) -> Matrix:
    return np.asarray(np.kron(left, right), dtype=np.float64)


def _first(labels: Index, count: int) -> Index:
    """The first element carrying each label 0..count-1."""
    return np.array([int(np.argmax(labels == label)) for label in range(count)], dtype=np.int64)


@dataclass(frozen=True)
class _Attribute:
    """One base attribute as the strategy sees it.

    Keys that no table tells apart are one *leaf*. Leaves are grouped into *coarse
    blocks*: the finest grouping every table partition other than the leaves is made of
    (regions; a single block without a hierarchy). Permuting the leaves of one coarse
    block changes no table.
    """

    name: str
    keys: int
    leaf_of_key: Index
    block_of_leaf: Index
    sizes: Index  # leaves per coarse block
    leaf_used: bool  # some table counts by the leaves themselves

    @property
    def leaves(self) -> int:
        return len(self.block_of_leaf)

    @property
    def blocks(self) -> int:
        return len(self.sizes)

    @cached_property
    def basis(self) -> Matrix:
        """leaves x blocks: the orthonormal indicators of the coarse blocks."""
        out = np.zeros((self.leaves, self.blocks))
        out[np.arange(self.leaves), self.block_of_leaf] = 1.0
        return out / np.sqrt(self.sizes)[None, :]

    @cached_property
    def membership(self) -> npt.NDArray[np.int64]:
        """blocks x leaves: which leaves each coarse block holds (integers)."""
        out = np.zeros((self.blocks, self.leaves), dtype=np.int64)
        out[self.block_of_leaf, np.arange(self.leaves)] = 1
        return out

    def inside(self, block: int) -> Index:
        """The leaves of one coarse block."""
        return np.flatnonzero(self.block_of_leaf == block).astype(np.int64)

    def contrast(self, block: int) -> Matrix:
        """leaves x leaves: the projection onto the contrasts inside one coarse block."""
        inside = (self.block_of_leaf == block).astype(float)
        return np.asarray(np.diag(inside) - np.outer(inside, inside) / self.sizes[block])


@dataclass(frozen=True)
class _View:
    """How one table partitions one attribute: by its leaves, by a grouping of its coarse
    blocks, or not at all (one block)."""

    kind: Literal["leaf", "coarse", "none"]
    block_of_block: Index  # for "coarse": the table's block of each coarse block
    parts: int

    def membership(self, attribute: _Attribute) -> Matrix:
        """parts x leaves: which leaves each of the table's blocks covers."""
        if self.kind == "leaf":
            return np.eye(attribute.leaves)
        if self.kind == "none":
            return np.ones((1, attribute.leaves))
        out = np.zeros((self.parts, attribute.leaves))
        out[self.block_of_block[attribute.block_of_leaf], np.arange(attribute.leaves)] = 1.0
        return out

    def classes(self, attribute: _Attribute) -> Index:
        """Each of the table's blocks' symmetry class: leaves of one coarse block are
        alike; every coarser block is its own class."""
        if self.kind == "leaf":
            return attribute.block_of_leaf
        return np.arange(self.parts, dtype=np.int64)


@dataclass(frozen=True)
class _Table:
    marginal: Marginal
    views: tuple[_View, ...]  # one per attribute of the structure
    # For each cell (the columns' keys, C order): its flat index in the grid of the views'
    # blocks, or -1 for a cell no record can be in (say, a force outside its region).
    cell_block: Index

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(view.parts for view in self.views)

    @property
    def possible_cells(self) -> int:
        return int((self.cell_block >= 0).sum())


@dataclass(frozen=True)
class _Component:
    """One part per attribute: the coarse span (-1) or the contrasts inside one coarse
    block (the block's index)."""

    parts: tuple[int, ...]

    def spans(self) -> list[int]:
        return [axis for axis, part in enumerate(self.parts) if part < 0]


class Structure:
    """The attributes, hierarchy and components shared by every strategy of a workload."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        sizes = dict(workload.attributes)
        used = [
            name
            for name, _ in workload.attributes
            if any(c.attribute == name for m in workload.marginals for c in m.columns)
        ]
        attributes = []
        for name in used:
            partitions = [
                _meet([c.groups for c in m.columns if c.attribute == name], sizes[name])
                for m in workload.marginals
                if any(c.attribute == name for c in m.columns)
            ]
            leaf_of_key = _meet(partitions, sizes[name])
            leaves = int(leaf_of_key.max()) + 1
            on_leaves = [partition[_first(leaf_of_key, leaves)] for partition in partitions]
            coarser = [p for p in on_leaves if int(p.max()) + 1 < leaves]
            block_of_leaf = _meet(coarser, leaves)
            attributes.append(
                _Attribute(
                    name=name,
                    keys=sizes[name],
                    leaf_of_key=leaf_of_key,
                    block_of_leaf=block_of_leaf,
                    sizes=np.bincount(block_of_leaf).astype(np.int64),
                    leaf_used=len(coarser) < len(on_leaves),
                )
            )
        self.attributes = tuple(attributes)
        self.tables = tuple(self.table_for(marginal) for marginal in workload.marginals)
        options = [
            [-1, *([g for g in range(a.blocks) if a.sizes[g] > 1] if a.leaf_used else [])]
            for a in self.attributes
        ]
        self.components = tuple(_Component(tuple(p)) for p in itertools.product(*options))
        self.block_sizes = [
            math.prod(self.attributes[axis].blocks for axis in c.spans()) for c in self.components
        ]

    def table(self, name: str) -> _Table:
        return next(table for table in self.tables if table.marginal.name == name)

    def resolve(self, table: str | Marginal) -> _Table:
        """A workload table by name, or any marginal over the same groupings."""
        return self.table(table) if isinstance(table, str) else self.table_for(table)

    @cached_property
    def ranges(self) -> tuple[Matrix, ...]:
        """Per component, an orthonormal basis of the part the tables' cells reach: what a
        strategy must measure, and the only part of it the estimates use."""
        out = []
        for component, size in zip(self.components, self.block_sizes, strict=True):
            gram = np.zeros((size, size))
            for table in self.tables:
                gram += self.gram(table, component)
            values, vectors = np.linalg.eigh(gram)
            keep = values > max(float(values.max()), 0.0) * 1e-12
            out.append(vectors[:, keep])
        return tuple(out)

    def table_for(self, marginal: Marginal) -> _Table:
        """A table (of the workload or any other over the same groupings) in this structure."""
        views = []
        for attribute in self.attributes:
            own = [c.groups for c in marginal.columns if c.attribute == attribute.name]
            views.append(_view(attribute, _meet(own, attribute.keys) if own else None))
        return _Table(marginal, tuple(views), _cell_blocks(marginal, self.attributes, views))

    def figures(self, objective: Objective) -> tuple[tuple[int, _Table], ...]:
        """What the objective counts, with the index of the table each figure is of: each
        table's cells and, for ``total`` and a table that publishes them, its totals (the
        tables of each proper subset of its columns)."""
        return self._totals if objective == "total" else tuple(enumerate(self.tables))

    @cached_property
    def _totals(self) -> tuple[tuple[int, _Table], ...]:
        out = []
        for index, table in enumerate(self.tables):
            out.append((index, table))
            marginal = table.marginal
            if not marginal.totals:
                continue
            for size in range(len(marginal.columns)):
                for subset in itertools.combinations(range(len(marginal.columns)), size):
                    columns = tuple(marginal.columns[i] for i in subset)
                    out.append((index, self.table_for(Marginal(marginal.name, columns))))
        return tuple(out)

    @cached_property
    def types(self) -> tuple[int, ...]:
        """The column classes: one per combination of coarse blocks."""
        return tuple(attribute.blocks for attribute in self.attributes)

    @cached_property
    def type_counts(self) -> Matrix:
        """Columns (cells of the cross-classification by leaves) in each column class."""
        out = np.ones(1)
        for attribute in self.attributes:
            out = np.multiply.outer(out, attribute.sizes.astype(float)).ravel()
        return out

    def multiplicity(self, component: _Component) -> int:
        """The dimension of the contrasts the component's block matrix is repeated over."""
        return math.prod(
            int(self.attributes[axis].sizes[part]) - 1
            for axis, part in enumerate(component.parts)
            if part >= 0
        )

    def sees(self, table: _Table, component: _Component) -> bool:
        """Whether the table's cells have a part in the component (contrasts inside a
        block are seen only by tables that count by the leaves)."""
        return all(
            part < 0 or view.kind == "leaf"
            for part, view in zip(component.parts, table.views, strict=True)
        )

    def factor(self, table: _Table, axis: int) -> Matrix:
        """The table's blocks on one attribute, in the orthonormal coarse coordinates."""
        attribute = self.attributes[axis]
        return table.views[axis].membership(attribute) @ attribute.basis

    def gram(self, table: _Table, component: _Component) -> Matrix:
        """The table's Gram matrix on the component's block (0 if it does not see it)."""
        size = self.block_sizes[self.components.index(component)]
        if not self.sees(table, component):
            return np.zeros((size, size))
        out: Matrix = np.ones((1, 1))
        for axis in component.spans():
            factor = self.factor(table, axis)
            out = _kron(out, factor.T @ factor)
        return out

    def column_weights(self, component: _Component) -> tuple[Index, Matrix]:
        """For each coarse coordinate of the component: its column class, and the factor
        by which its diagonal entry enters the squared norm of a column of that class."""
        grids = [
            np.arange(self.attributes[axis].blocks) if part < 0 else np.array([part])
            for axis, part in enumerate(component.parts)
        ]
        mesh = [m.ravel() for m in np.meshgrid(*grids, indexing="ij")]
        types = np.ravel_multi_index(mesh, self.types) if mesh else np.zeros(1, dtype=np.int64)
        weight = np.ones(len(types))
        for axis, part in enumerate(component.parts):
            sizes = self.attributes[axis].sizes[mesh[axis]].astype(float)
            weight *= (1.0 / sizes) if part < 0 else (1.0 - 1.0 / sizes)
        return np.asarray(types, dtype=np.int64), weight

    # Moving a vector over the leaves into a component's coordinates and back. Component
    # coordinates: the orthonormal coarse coordinates of the spanned attributes (first,
    # flattened), then the leaves of the component's block for each other attribute.

    def to_component(self, component: _Component, vector: Matrix) -> Matrix:
        return self.reduce(component, vector, integer=False)

    def reduce(
        self, component: _Component, tensor: npt.NDArray[Any], *, integer: bool
    ) -> npt.NDArray[Any]:
        """A tensor over the leaves in a component's coordinates: along each spanned
        attribute its coarse blocks (orthonormal, or with ``integer`` the blocks' totals),
        along each other attribute its block's leaves minus their mean (with ``integer``
        times the block's size, so that integer counts stay integers)."""
        out = tensor
        for axis, part in enumerate(component.parts):
            attribute = self.attributes[axis]
            if part < 0:
                coarse = attribute.membership.T if integer else attribute.basis
                out = np.moveaxis(np.tensordot(out, coarse, axes=([axis], [0])), -1, axis)
            else:
                out = np.take(out, attribute.inside(part), axis=axis)
                if integer:
                    out = int(attribute.sizes[part]) * out - out.sum(axis=axis, keepdims=True)
                else:
                    out = out - out.mean(axis=axis, keepdims=True)
        return self._flatten(component, out)

    def from_component(self, component: _Component, coordinates: Matrix) -> Matrix:
        out = self._unflatten(component, coordinates)
        for axis, part in enumerate(component.parts):
            attribute = self.attributes[axis]
            if part < 0:
                out = np.moveaxis(np.tensordot(out, attribute.basis, axes=([axis], [1])), -1, axis)
            else:
                full = np.zeros((*out.shape[:axis], attribute.leaves, *out.shape[axis + 1 :]))
                index = [slice(None)] * out.ndim
                index[axis] = attribute.inside(part)  # type: ignore[call-overload]
                full[tuple(index)] = out
                out = full
        return out

    def _flatten(self, component: _Component, tensor: Matrix) -> Matrix:
        spans = component.spans()
        others = [axis for axis in range(len(self.attributes)) if axis not in spans]
        moved = np.transpose(tensor, spans + others)
        return moved.reshape(self.block_sizes[self.components.index(component)], -1)

    def _unflatten(self, component: _Component, coordinates: Matrix) -> Matrix:
        spans = component.spans()
        others = [axis for axis in range(len(self.attributes)) if axis not in spans]
        shape = [self.attributes[a].blocks for a in spans] + [
            int(self.attributes[a].sizes[component.parts[a]]) for a in others
        ]
        order = spans + others
        return np.transpose(coordinates.reshape(shape), np.argsort(order))

    def table_cells(self, table: _Table, leaves: Matrix) -> Matrix:
        """A table's cells (its cell order) from a vector over the leaves."""
        out = leaves
        for axis, attribute in enumerate(self.attributes):
            membership = table.views[axis].membership(attribute)
            out = np.moveaxis(np.tensordot(out, membership, axes=([axis], [1])), -1, axis)
        flat = out.reshape(-1)
        cells = np.zeros(table.marginal.cells)
        possible = table.cell_block >= 0
        cells[possible] = flat[table.cell_block[possible]]
        return cells

    def table_transpose(self, table: _Table, cells: Matrix) -> Matrix:
        """The adjoint of :meth:`table_cells`: a vector over the leaves."""
        grid = np.zeros(math.prod(table.grid))
        possible = table.cell_block >= 0
        np.add.at(grid, table.cell_block[possible], cells[possible])
        out = grid.reshape(table.grid)
        for axis, attribute in enumerate(self.attributes):
            membership = table.views[axis].membership(attribute)
            out = np.moveaxis(np.tensordot(out, membership, axes=([axis], [0])), -1, axis)
        return out


def _view(attribute: _Attribute, labels: Index | None) -> _View:
    if labels is None:
        return _View("none", np.zeros(attribute.blocks, dtype=np.int64), 1)
    if any(
        len(set(labels[attribute.leaf_of_key == leaf].tolist())) > 1
        for leaf in range(attribute.leaves)
    ):
        raise ValueError(f"a table splits keys of {attribute.name} the workload's tables do not")
    on_leaves = _meet([labels[_first(attribute.leaf_of_key, attribute.leaves)]], attribute.leaves)
    parts = int(on_leaves.max()) + 1
    if parts == attribute.leaves and attribute.leaf_used:
        return _View("leaf", np.zeros(attribute.blocks, dtype=np.int64), parts)
    first_leaf = _first(attribute.block_of_leaf, attribute.blocks)
    block_of_block = on_leaves[first_leaf]
    if not np.array_equal(block_of_block[attribute.block_of_leaf], on_leaves):
        raise ValueError(f"a table groups {attribute.name} across the groups of the workload")
    return _View("coarse", block_of_block, parts)


def _cell_blocks(
    marginal: Marginal, attributes: Sequence[_Attribute], views: Sequence[_View]
) -> Index:
    """Each cell of the table (keys of its columns) -> its block in the views' grid."""
    grid = tuple(view.parts for view in views)
    out = np.full(marginal.cells, -1, dtype=np.int64)
    keys_of_block = []
    for attribute, view in zip(attributes, views, strict=True):
        member = view.membership(attribute)
        keys_of_block.append(member[:, attribute.leaf_of_key].astype(bool))  # parts x keys
    for position, keys in enumerate(itertools.product(*(range(k) for k in marginal.shape))):
        index = []
        for attribute, blocks in zip(attributes, keys_of_block, strict=True):
            members = np.ones(attribute.keys, dtype=bool)
            for column, key in zip(marginal.columns, keys, strict=True):
                if column.attribute == attribute.name:
                    members &= np.asarray(column.groups) == key
            if not members.any():
                break
            index.append(int(np.argmax(blocks[:, int(np.argmax(members))])))
        else:
            out[position] = int(np.ravel_multi_index(index, grid)) if grid else 0
    return out


# ---------------------------------------------------------------------------------------
# Strategies: the precision (A^T A) of each component's block.


@dataclass(frozen=True)
class Strategy:
    """A measurement strategy, as the precision (``A^T A``) of each component's block,
    in units of the noise: the covariance of the estimates is the inverse.

    A planner's strategy is normalised: noise of variance 1 and one record's column of
    squared norm at most 1. For a loss ``rho`` and a person who moves at most ``d``
    records, its variances are then multiplied by ``d^2 / (2 rho)``.
    """

    structure: Structure
    precisions: tuple[Matrix, ...]
    name: str = "strategy"
    bound: float | None = None  # a lower bound on the objective (normalised units), if known
    objective: Objective | None = None
    notes: tuple[str, ...] = field(default=())
    # The noise the units refer to: the weights' priority depends on it (see value()).
    model: Model = "zcdp"

    def column_norms(self) -> Matrix:
        """The squared norm of one record's column, per column class."""
        norms = np.zeros(math.prod(self.structure.types))
        for component, precision in zip(self.structure.components, self.precisions, strict=True):
            types, weight = self.structure.column_weights(component)
            np.add.at(norms, types, np.diag(precision) * weight)
        return norms

    @property
    def sensitivity(self) -> float:
        """The largest squared norm of one record's column (1 when normalised)."""
        return float(self.column_norms().max())

    def normalised(self) -> Strategy:
        scale = self.sensitivity
        return replace(self, precisions=tuple(p / scale for p in self.precisions))

    def scaled(self, variance: float) -> Strategy:
        """The same strategy with noise of the given variance."""
        return replace(self, precisions=tuple(p / variance for p in self.precisions))

    @cached_property
    def covariances(self) -> tuple[Matrix, ...]:
        """The covariance of each component's block (its precision inverted on the part the
        tables reach)."""
        return tuple(
            _inverse_on(p, basis)
            for p, basis in zip(self.precisions, self.structure.ranges, strict=True)
        )

    def covariance(self, table: str | Marginal, other: str | Marginal | None = None) -> Matrix:
        """The covariance of the estimates of the cells of ``table`` (and ``other``), in
        the tables' cell order. A table may be any marginal over the workload's groupings."""
        first = self.structure.resolve(table)
        second = self.structure.resolve(other) if other is not None else first
        grid = _block_covariance(self.structure, first, second, self.covariances)
        out = np.zeros((first.marginal.cells, second.marginal.cells))
        rows, cols = first.cell_block >= 0, second.cell_block >= 0
        out[np.ix_(rows, cols)] = grid[np.ix_(first.cell_block[rows], second.cell_block[cols])]
        return out

    def cell_variances(self, table: str | Marginal) -> Matrix:
        return np.diag(self.covariance(table))

    def total_variances(self, table: str | Marginal) -> Matrix:
        """The variance of each of the table's totals (:func:`margin_weights`)."""
        marginal = self.structure.resolve(table).marginal
        weights = margin_weights(marginal)
        return np.asarray(((weights @ self.covariance(table)) * weights).sum(axis=1))

    def value(self, objective: Objective) -> float:
        """The objective over each table's published figures (cells, and totals when
        published): ``sum_t w_t^(p+1) mean_var_t`` or ``max_t w_t^p max_var_t``, with
        ``p`` 1 for zCDP and 2 for pure DP (see the module's docstring)."""
        power = _power(self.model)
        s = self.structure
        per_table: list[list[Matrix]] = [[] for _ in s.tables]
        for index, figure in s.figures(objective):
            variances = np.diag(_block_covariance(s, figure, figure, self.covariances))
            per_table[index].append(variances[figure.cell_block[figure.cell_block >= 0]])
        values = []
        for table, parts in zip(s.tables, per_table, strict=True):
            variances = np.concatenate(parts)
            weight = table.marginal.weight
            if objective == "total":
                values.append(weight ** (power + 1) * float(variances.mean()))
            else:
                values.append(weight**power * float(variances.max()))
        return math.fsum(values) if objective == "total" else max(values)


def _inverse_on(precision: Matrix, basis: Matrix) -> Matrix:
    """The covariance on the part of a block the tables reach (``basis``): the inverse of
    the precision restricted to it. Infinite where that part is not measured."""
    if basis.shape[1] == 0:
        return np.zeros_like(precision)
    restricted = basis.T @ precision @ basis
    values, vectors = np.linalg.eigh((restricted + restricted.T) / 2)
    if values.min() <= max(float(values.max()), 1e-300) * 1e-13:
        return np.full_like(precision, np.inf)
    rotated = basis @ vectors
    return np.asarray((rotated / values) @ rotated.T)


def _block_covariance(
    s: Structure, first: _Table, second: _Table, inverses: Sequence[Matrix]
) -> Matrix:
    """Covariance between the blocks of two tables (their views' grids)."""
    n = len(s.attributes)
    total = np.zeros(first.grid + second.grid)
    letters = "abcdefghijklmnopqrstuvwxyz"
    rows, cols = letters[:n], letters[n : 2 * n]
    for component, inverse in zip(s.components, inverses, strict=True):
        if not (s.sees(first, component) and s.sees(second, component)):
            continue
        spans = component.spans()
        left: Matrix = np.ones((1, 1))
        right: Matrix = np.ones((1, 1))
        for axis in spans:
            left = _kron(left, s.factor(first, axis))
            right = _kron(right, s.factor(second, axis))
        core = (left @ inverse @ right.T).reshape(
            [first.grid[a] for a in spans] + [second.grid[a] for a in spans]
        )
        operands: list[Matrix] = [core]
        subscripts = ["".join(rows[a] for a in spans) + "".join(cols[a] for a in spans)]
        for axis, part in enumerate(component.parts):
            if part >= 0:
                operands.append(s.attributes[axis].contrast(part))
                subscripts.append(rows[axis] + cols[axis])
        total += np.einsum(",".join(subscripts) + "->" + rows + cols, *operands)
    return total.reshape(math.prod(first.grid), math.prod(second.grid))


# ---------------------------------------------------------------------------------------
# Cell classes: cells alike by symmetry have the same variance under a symmetric strategy.


@dataclass(frozen=True)
class _Classes:
    table_of: Index  # class -> index of the table whose figure it is
    cells: Matrix  # possible cells per class
    rows: tuple[Matrix, ...]  # per component: the seen classes' rows in its coordinates
    seen: tuple[Index, ...]  # per component: which classes
    variance_factor: tuple[Matrix, ...]  # per component: the contrasts' share of a cell

    def scaled(self, factor: Matrix) -> _Classes:
        """Every class's variance multiplied by ``factor`` (per table)."""
        root = np.sqrt(factor)[self.table_of]
        rows = tuple(r * root[seen][:, None] for r, seen in zip(self.rows, self.seen, strict=True))
        return replace(self, rows=rows)


def _classes(s: Structure, objective: Objective) -> _Classes:
    table_of: list[int] = []
    figure_of: list[_Table] = []
    cells: list[float] = []
    keys: list[tuple[int, ...]] = []
    for index, table in s.figures(objective):
        per_axis = [view.classes(a) for view, a in zip(table.views, s.attributes, strict=True)]
        counts: dict[tuple[int, ...], int] = {}
        for flat in sorted(set(table.cell_block[table.cell_block >= 0].tolist())):
            block = np.unravel_index(flat, table.grid)
            key = tuple(int(per_axis[a][block[a]]) for a in range(len(per_axis)))
            counts[key] = counts.get(key, 0) + 1
        for key, count in counts.items():
            table_of.append(index)
            figure_of.append(table)
            cells.append(count)
            keys.append(key)
    rows, seen, factors = [], [], []
    for k, component in enumerate(s.components):
        component_rows, component_seen, component_factor = [], [], []
        for c, (table, key) in enumerate(zip(figure_of, keys, strict=True)):
            if not s.sees(table, component):
                continue
            if any(p >= 0 and key[a] != p for a, p in enumerate(component.parts)):
                continue
            row: Matrix = np.ones(1)
            for axis in component.spans():
                attribute = s.attributes[axis]
                if table.views[axis].kind == "leaf":
                    factor = np.zeros(attribute.blocks)
                    factor[key[axis]] = 1.0 / math.sqrt(attribute.sizes[key[axis]])
                else:
                    factor = s.factor(table, axis)[key[axis]]
                row = _kron(row, factor)
            component_rows.append(row)
            component_seen.append(c)
            component_factor.append(
                math.prod(
                    1.0 - 1.0 / float(s.attributes[a].sizes[p])
                    for a, p in enumerate(component.parts)
                    if p >= 0
                )
            )
        rows.append(np.array(component_rows).reshape(len(component_rows), s.block_sizes[k]))
        seen.append(np.array(component_seen, dtype=np.int64))
        factors.append(np.array(component_factor))
    return _Classes(
        np.array(table_of, dtype=np.int64),
        np.array(cells),
        tuple(rows),
        tuple(seen),
        tuple(factors),
    )


def _power(model: Model) -> int:
    """How a table's variance falls with its share of the loss (1 / share for Gaussian
    noise under zCDP, 1 / share^2 for Laplace noise): the power of the weights that keeps
    today's split when the tables share nothing."""
    return 1 if model == "zcdp" else 2


def _class_weights(
    s: Structure, classes: _Classes, objective: Objective, model: Model = "zcdp"
) -> tuple[_Classes, Matrix]:
    """The classes (rows scaled by each table's priority) and their starting weights."""
    weights = np.array([table.marginal.weight for table in s.tables])
    power = _power(model)
    possible = np.zeros(len(s.tables))
    for index, figure in s.figures(objective):
        possible[index] += figure.possible_cells
    if objective == "total":
        # sum_t w_t^(p+1) * mean variance: each figure weighs w_t^(p+1) / (figures of t).
        per_cell = (weights ** (power + 1) / possible)[classes.table_of]
        return classes, per_cell * classes.cells
    scaled = classes.scaled(weights**power)
    return scaled, classes.cells / classes.cells.sum()


# ---------------------------------------------------------------------------------------
# The optimum (Gaussian noise), by the dual's multiplicative fixed point.


def optimal(
    workload: Workload | Structure,
    objective: Objective = "total",
    *,
    gap: float = GAP,
    max_iterations: int = _MAX_ITERATIONS,
) -> Strategy:
    """The optimal strategy for the workload's tables under Gaussian noise (zCDP).

    Returns the normalised strategy with ``bound``, a lower bound on the objective of any
    strategy of sensitivity 1; the strategy's objective is within ``gap`` (relative) of it
    unless ``max_iterations`` ran out (see ``notes``).
    """
    s = workload if isinstance(workload, Structure) else Structure(workload)
    too_large = max(s.block_sizes)
    if too_large > MAX_BLOCK:
        raise ValueError(
            f"a block of {too_large} coarse cells is larger than the exact planner takes "
            f"({MAX_BLOCK}); use residual_planner"
        )
    classes, weights = _class_weights(s, _classes(s, objective), objective)
    groups = _Batches.of(s, classes)
    counts = s.type_counts
    delta = np.full(len(counts), 1.0 / counts.sum())  # per column; sum over columns is 1
    best: tuple[float, list[Matrix]] | None = None
    bound = 0.0
    converged = False
    for _ in range(max_iterations):
        norms = np.zeros(len(counts))
        variances = np.zeros(len(weights))
        root_bound = 0.0
        precisions = []
        for group in groups:
            # The workload's Gram matrix on each block, per dimension of its contrasts.
            share = weights[group.seen] * group.share
            gram = np.einsum("gcs,gc,gct->gst", group.rows, share, group.rows)
            root_d = np.sqrt(delta[group.types])
            scaled = root_d[:, :, None] * gram * root_d[:, None, :]
            values, vectors = np.linalg.eigh(scaled)
            top = np.maximum(values.max(axis=1, keepdims=True), 1e-300)
            keep = values > top * 1e-14
            roots = np.where(keep, np.sqrt(np.maximum(values, 0.0)), 0.0)
            inverse_roots = np.where(keep, 1.0 / np.where(keep, roots, 1.0), 0.0)
            half = np.einsum("gsk,gk,gtk->gst", vectors, roots, vectors)
            inverse_half = np.einsum("gsk,gk,gtk->gst", vectors, inverse_roots, vectors)
            root_bound += float(group.multiplicity @ roots.sum(axis=1))
            precision = half / root_d[:, :, None] / root_d[:, None, :]
            covariance = root_d[:, :, None] * inverse_half * root_d[:, None, :]
            precisions.append(precision)
            diagonal = np.einsum("gss->gs", precision) * group.column_weight
            np.add.at(norms, group.types.ravel(), diagonal.ravel())
            per_class = np.einsum("gcs,gst,gct->gc", group.rows, covariance, group.rows)
            np.add.at(
                variances, group.seen[group.present], (per_class * group.factor)[group.present]
            )
        largest = float(norms.max())
        achieved = largest * (root_bound if objective == "total" else float(variances.max()))
        bound = max(bound, root_bound**2)
        if best is None or achieved < best[0]:
            best = (achieved, [p / largest for p in precisions])
        if best[0] <= bound * (1.0 + gap):
            converged = True
            break
        # Weight moves to the columns (and cells) the current strategy finds costliest; any
        # positive weights give a valid bound, so a floor keeps the formulas finite.
        delta = delta * norms / root_bound
        delta = np.maximum(delta, float(delta.max()) * 1e-12)
        delta /= float(delta @ counts)
        if objective == "worst_cell":
            weights = weights * variances / root_bound
            weights = np.maximum(weights, float(weights.max()) * 1e-12)
            weights /= weights.sum()
    assert best is not None
    blocks: list[Matrix] = [np.zeros((0, 0))] * len(s.components)
    for group, stacked in zip(groups, best[1], strict=True):
        for position, k in enumerate(group.components):
            blocks[k] = stacked[position]
    notes = () if converged else (f"stopped {best[0] / bound - 1:.1e} above the bound",)
    return Strategy(s, tuple(blocks), "optimum", bound, objective, notes)


@dataclass(frozen=True)
class _Batch:
    """The components whose blocks have one size, stacked (classes padded with zeros)."""

    components: list[int]
    rows: Matrix  # components x classes x block
    seen: Index  # components x classes: the class index (0 where padded)
    present: npt.NDArray[np.bool_]  # components x classes: not padding
    factor: Matrix  # components x classes: the contrasts' share of a cell's variance
    share: Matrix  # factor / multiplicity (0 where padded)
    multiplicity: Matrix  # per component
    types: Index  # components x block: column class of each coordinate
    column_weight: Matrix  # components x block


class _Batches:
    @staticmethod
    def of(s: Structure, classes: _Classes) -> list[_Batch]:
        out = []
        for size in sorted(set(s.block_sizes)):
            members = [k for k, b in enumerate(s.block_sizes) if b == size]
            width = max(1, *(len(classes.seen[k]) for k in members))
            rows = np.zeros((len(members), width, size))
            seen = np.zeros((len(members), width), dtype=np.int64)
            present = np.zeros((len(members), width), dtype=bool)
            factor = np.zeros((len(members), width))
            types = np.zeros((len(members), size), dtype=np.int64)
            column_weight = np.zeros((len(members), size))
            multiplicity = np.array([s.multiplicity(s.components[k]) for k in members], dtype=float)
            for position, k in enumerate(members):
                count = len(classes.seen[k])
                rows[position, :count] = classes.rows[k]
                seen[position, :count] = classes.seen[k]
                present[position, :count] = True
                factor[position, :count] = classes.variance_factor[k]
                types[position], column_weight[position] = s.column_weights(s.components[k])
            share = factor / multiplicity[:, None]
            out.append(
                _Batch(
                    members, rows, seen, present, factor, share, multiplicity, types, column_weight
                )
            )
        return out


# ---------------------------------------------------------------------------------------
# ResidualPlanner as published: one noise scale per residual, hierarchies as nested
# subspaces (constant, between groups, within groups, each one isotropic residual).


def residual_planner(
    workload: Workload | Structure, objective: Objective = "total", *, gap: float = GAP
) -> Strategy:
    """ResidualPlanner with public hierarchies as nested residuals: for each attribute the
    constant, the contrasts between its coarse blocks (regions) and the contrasts inside
    them (forces within regions), each product of one per attribute measured with its own
    isotropic noise. Optimal when no attribute is grouped, or groups are of equal sizes;
    scalable to any size (every block is a scalar)."""
    s = workload if isinstance(workload, Structure) else Structure(workload)
    # Per attribute, its residual kinds: 0 constant, 1 between blocks, 2 within blocks.
    kinds = [
        [0, *([1] if a.blocks > 1 else []), *([2] if a.leaf_used and (a.sizes > 1).any() else [])]
        for a in s.attributes
    ]
    residuals = list(itertools.product(*kinds))
    classes, weights = _class_weights(s, _classes(s, objective), objective)
    # Each residual's block matrices: per component, the projection it has there.
    projections: list[list[Matrix | None]] = []
    for residual in residuals:
        per_component: list[Matrix | None] = []
        for component in s.components:
            if any(
                (part < 0) == (kind == 2)
                for part, kind in zip(component.parts, residual, strict=True)
            ):
                per_component.append(None)
                continue
            block: Matrix = np.ones((1, 1))
            for axis in component.spans():
                attribute = s.attributes[axis]
                root = np.sqrt(attribute.sizes.astype(float))
                constant = np.outer(root, root) / attribute.leaves
                block = _kron(
                    block, constant if residual[axis] == 0 else np.eye(attribute.blocks) - constant
                )
            per_component.append(block)
        projections.append(per_component)
    # Column cost (C) and cell-class variance coefficient (U) of each residual at unit noise.
    cost = np.zeros((math.prod(s.types), len(residuals)))
    coefficient = np.zeros((len(weights), len(residuals)))
    for r, per_component in enumerate(projections):
        for k, projection in enumerate(per_component):
            if projection is None:
                continue
            types, column_weight = s.column_weights(s.components[k])
            np.add.at(cost[:, r], types, np.diag(projection) * column_weight)
            rows, seen = classes.rows[k], classes.seen[k]
            if len(rows):
                coefficient[seen, r] += (
                    np.einsum("ij,jk,ik->i", rows, projection, rows) * (classes.variance_factor[k])
                )
    precision, bound, notes = _scalar_dual(coefficient, weights, cost, objective, gap)
    precisions = []
    for k in range(len(s.components)):
        size = s.block_sizes[k]
        block = np.zeros((size, size))
        for r, per_component in enumerate(projections):
            projection = per_component[k]
            if projection is not None:
                block += precision[r] * projection
        precisions.append(block)
    return Strategy(s, tuple(precisions), "residual planner", bound, objective, notes)


def _scalar_dual(
    coefficient: Matrix, weights: Matrix, cost: Matrix, objective: Objective, gap: float
) -> tuple[Matrix, float, tuple[str, ...]]:
    """min over precisions theta >= 0 of sum_i q_i sum_r U_ir / theta_r (or its max over
    i) subject to cost @ theta <= 1, by the same dual fixed point as :func:`optimal`."""
    columns = np.full(cost.shape[0], 1.0 / cost.shape[0])
    best: tuple[float, Matrix] | None = None
    bound = 0.0
    coefficient = np.where(coefficient > np.abs(coefficient).max() * 1e-12, coefficient, 0.0)
    for _ in range(_MAX_ITERATIONS):
        need = coefficient.T @ weights
        price = cost.T @ columns
        measured = need > 0
        theta = np.zeros(len(need))
        theta[measured] = np.sqrt(need[measured] / price[measured])
        root_bound = float(np.sqrt(need * price).sum())
        norms = cost @ theta
        variances = coefficient[:, measured] @ (1.0 / theta[measured])
        largest = float(norms.max())
        achieved = largest * (root_bound if objective == "total" else float(variances.max()))
        bound = max(bound, root_bound**2)
        if best is None or achieved < best[0]:
            best = (achieved, theta / largest)
        if best[0] <= bound * (1.0 + gap):
            return best[1], bound, ()
        columns = columns * norms / root_bound
        columns = np.maximum(columns, float(columns.max()) * 1e-12)
        columns /= columns.sum()
        if objective == "worst_cell":
            weights = weights * variances / root_bound
            weights = np.maximum(weights, float(weights.max()) * 1e-12)
            weights /= weights.sum()
    assert best is not None
    return best[1], bound, (f"stopped {best[0] / bound - 1:.1e} above the bound",)


# ---------------------------------------------------------------------------------------
# Marginal strategies: today's (each table with its share) and the L1 planner's.


def measured_tables(
    workload: Workload | Structure, shares: Sequence[float] | None = None, model: Model = "zcdp"
) -> Strategy:
    """Each table measured as it is with its share of the loss (by weight unless
    ``shares`` are given), all estimated together by least squares: today's release.
    Units as :func:`optimal` (zCDP) or :func:`marginal_weights` (pure DP)."""
    s = workload if isinstance(workload, Structure) else Structure(workload)
    marginals = [table.marginal for table in s.tables]
    shares = shares if shares is not None else [m.weight for m in marginals]
    total = math.fsum(shares)
    measured = _marginal_strategy(s, marginals, [share / total for share in shares], model)
    return measured.normalised() if model == "zcdp" else measured


def _marginal_strategy(
    s: Structure, marginals: Sequence[Marginal], shares: Sequence[float], model: Model
) -> Strategy:
    """Marginals measured with shares of one unit of loss: precision share (zCDP, noise
    variance 1 / share) or share^2 (pure DP, in units of the Laplace variance at scale 1)."""
    tables = [s.table_for(marginal) for marginal in marginals]
    precisions = []
    for component in s.components:
        size = s.block_sizes[s.components.index(component)]
        precision = np.zeros((size, size))
        for table, share in zip(tables, shares, strict=True):
            if share > 0:
                precision += (share if model == "zcdp" else share**2) * s.gram(table, component)
        precisions.append(precision)
    return Strategy(s, tuple(precisions), "hand-set weights", model=model)


def _sub_marginals(s: Structure) -> list[Marginal]:
    """The workload's tables, then every table of a subset of a table's columns that counts
    something no earlier one does."""
    seen: set[tuple[tuple[str, int], ...]] = set()
    out = []

    def add(candidate: Marginal) -> None:
        views = s.table_for(candidate).views
        key = tuple((view.kind, hash(view.block_of_block.tobytes())) for view in views)
        if key not in seen:
            seen.add(key)
            out.append(candidate)

    for table in s.tables:
        add(table.marginal)
    for table in s.tables:
        columns = table.marginal.columns
        for size in range(len(columns) - 1, -1, -1):
            for subset in itertools.combinations(range(len(columns)), size):
                name = f"{table.marginal.name}[{','.join(str(i) for i in subset)}]"
                add(Marginal(name, tuple(columns[i] for i in subset)))
    return out


def marginal_weights(
    workload: Workload | Structure, objective: Objective = "total"
) -> tuple[Strategy, tuple[Marginal, ...], tuple[float, ...]]:
    """The pure-DP planner: shares of the loss over the workload's tables and their
    sub-tables (each measured with Laplace noise at its share), all estimated together,
    chosen to minimise the objective. Started from today's split and kept only where it
    does better, so it is never worse than today.

    Returns the strategy (precision in units of ``2 (d / epsilon)^2``, normalised to
    shares summing to 1), the marginals and their shares.
    """
    s = workload if isinstance(workload, Structure) else Structure(workload)
    candidates = _sub_marginals(s)
    classes, class_weights = _class_weights(s, _classes(s, objective), objective, "pure")
    grams = [[s.gram(s.table_for(m), component) for component in s.components] for m in candidates]

    def evaluate(theta: Matrix, weights: Matrix) -> tuple[float, Matrix, Matrix]:
        """At shares ``theta``: the classes' variances weighted by ``weights``, its gradient,
        and each class's variance."""
        gradient = np.zeros(len(theta))
        variances = np.zeros(len(weights))
        for k in range(len(s.components)):
            rows, seen = classes.rows[k], classes.seen[k]
            if len(rows) == 0:
                continue
            precision = sum(t**2 * grams[i][k] for i, t in enumerate(theta))
            inverse = _inverse_on(np.asarray(precision), s.ranges[k])
            if not np.isfinite(inverse).all():
                return math.inf, gradient, np.full(len(weights), math.inf)
            variances[seen] += (
                np.einsum("ij,jk,ik->i", rows, inverse, rows) * (classes.variance_factor[k])
            )
            share = weights[seen] * classes.variance_factor[k]
            inner = inverse @ ((rows * share[:, None]).T @ rows) @ inverse
            for i, t in enumerate(theta):
                if t > 0:
                    gradient[i] -= 2 * t * float(np.sum(inner * grams[i][k]))
        return float(weights @ variances), gradient, variances

    def descend(theta: Matrix, weights: Matrix, steps: int) -> Matrix:
        """Lower the weighted variances by multiplicative steps, halved until they help.
        At the optimum theta_i * (-gradient_i) is the same for every measured marginal (the
        objective is homogeneous of degree -2); the full step is exact when the marginals
        share nothing."""
        value, gradient, _ = evaluate(theta, weights)
        power = 1.0
        for _ in range(steps):
            step = np.cbrt(np.maximum(theta * -gradient, 0.0) / max(float(value), 1e-300))
            candidate = theta * step**power
            candidate = np.maximum(candidate, candidate.max() * 1e-12)
            candidate /= candidate.sum()
            tried, tried_gradient, _ = evaluate(candidate, weights)
            if tried < value:
                theta, value, gradient = candidate, tried, tried_gradient
                power = min(1.0, 2.0 * power)
            else:
                power /= 2.0
                if power < 1e-3:
                    break
        return theta

    def objective_value(theta: Matrix) -> float:
        total, _, variances = evaluate(theta, class_weights)
        return total if objective == "total" else float(variances.max())

    weight_of = {table.marginal.name: table.marginal.weight for table in s.tables}
    today = np.array([weight_of.get(m.name, 0.0) for m in candidates])
    today /= today.sum()
    starts = [today, np.full(len(candidates), 1.0 / len(candidates))]
    best_value, best_theta = objective_value(today), today
    for start in starts:
        if objective == "total":
            theta = descend(start, class_weights, 300)
        else:
            # A saddle point: weight moves to the cells with the largest variance, and the
            # shares follow the weighted variances.
            theta, weights = start, class_weights.copy()
            for _ in range(400):
                theta = descend(theta, weights, 1)
                _, _, variances = evaluate(theta, weights)
                if not np.isfinite(variances).all():
                    break
                value = float(variances.max())
                if value < best_value:
                    best_value, best_theta = value, theta
                weights = weights * variances / float(weights @ variances)
        value = objective_value(theta)
        if value < best_value:
            best_value, best_theta = value, theta
    # A marginal with a tiny share is not worth an OpenDP call: dropped when the objective
    # does not notice (a thousandth at most).
    pruned = np.where(best_theta > 1e-3 * best_theta.max(), best_theta, 0.0)
    pruned /= pruned.sum()
    if objective_value(pruned) <= best_value * (1 + 1e-3):
        best_theta = pruned
    shares = tuple(float(t) for t in best_theta / best_theta.sum())
    strategy = _marginal_strategy(s, candidates, shares, "pure")
    strategy = replace(strategy, name="marginal weights (L1)", objective=objective)
    return strategy, tuple(candidates), shares


# ---------------------------------------------------------------------------------------
# Designs: the integer queries to give OpenDP, and the estimates from their noisy answers.


def noise_variance(model: Model, scale: float) -> float:
    """The variance of OpenDP's integer noise at ``scale``: discrete Laplace exactly; the
    discrete Gaussian's is at most ``scale^2`` (used as the bound)."""
    if model == "pure":
        decay = math.exp(-1.0 / scale)
        return 2.0 * decay / (1.0 - decay) ** 2
    return scale**2


@dataclass(frozen=True)
class Query:
    """One vector of integer linear combinations of the counts, measured by one OpenDP call
    (``make_gaussian`` or ``make_laplace`` on a vector of integers) with its share of the
    input's loss. ``norm`` is, exactly, the largest squared L2 norm (zCDP) or the largest
    L1 norm (pure DP) of one record's column: the sensitivity per record."""

    name: str
    size: int
    share: float
    norm: int

    def distance(self, model: Model, bound: int) -> int:
        """OpenDP's input distance for a privacy unit that moves at most ``bound`` records:
        ``bound * sqrt(norm)`` rounded up (L2) or ``bound * norm`` (L1)."""
        if model == "pure":
            return bound * self.norm
        squared = bound * bound * self.norm
        root = math.isqrt(squared)
        return root if root * root == squared else root + 1


@dataclass(frozen=True)
class _MarginalQuery:
    query: Query
    table: _Table


@dataclass(frozen=True)
class _ResidualQuery:
    """The components' rows: for component c, ``R_c`` applied to the integer vector of
    the coarse blocks' totals (spanned attributes) times, for each other attribute, the
    block's leaves minus their mean times the block's size."""

    query: Query
    components: tuple[int, ...]
    rows: tuple[npt.NDArray[np.int64], ...]


@dataclass(frozen=True)
class Estimates:
    """Every table's estimated cells, with the exact covariance of the estimates."""

    strategy: Strategy  # precision at the noise actually added
    leaves: Matrix  # the estimate of the cross-classification by leaves

    def cells(self, table: str | Marginal) -> Matrix:
        """The estimated cells (the table's cell order)."""
        return self.strategy.structure.table_cells(
            self.strategy.structure.resolve(table), self.leaves
        )

    def covariance(self, table: str | Marginal, other: str | Marginal | None = None) -> Matrix:
        return self.strategy.covariance(table, other)


@dataclass(frozen=True)
class Design:
    """What to measure for one input and how to estimate from it.

    ``queries`` are measured by OpenDP, each with its share of the input's loss (noise
    scale for a loss ``rho``: ``distance / sqrt(2 share rho)``; for ``epsilon``:
    ``distance / (share epsilon)``). ``joint`` designs estimate all tables together;
    otherwise each table is its own query's noisy cells (per-table OpenDP).
    """

    structure: Structure
    model: Model
    method: str
    parts: tuple[_MarginalQuery | _ResidualQuery, ...]
    joint: bool = True
    notes: tuple[str, ...] = ()

    @property
    def queries(self) -> tuple[Query, ...]:
        return tuple(part.query for part in self.parts)

    # Building designs.

    @classmethod
    def residuals(cls, strategy: Strategy) -> Design:
        """A Gaussian (zCDP) strategy as one vector of integer queries (see
        :class:`_ResidualQuery`), rounded at a resolution that keeps every value within 64
        bits for up to :data:`MAX_RECORDS` records; its exact sensitivity is computed from
        the integers, and its estimates' covariance from the integers too."""
        s = strategy.structure
        factors: list[tuple[int, Matrix]] = []
        for k, precision in enumerate(strategy.precisions):
            values, vectors = np.linalg.eigh((precision + precision.T) / 2)
            keep = values > max(float(values.max()), 0.0) * 1e-10
            if not keep.any():
                continue
            rows = np.sqrt(values[keep])[:, None] * vectors[:, keep].T
            # Integers measure block totals (sqrt(size) in orthonormal units) and contrasts
            # times the block's size.
            rows = (
                rows
                / _coarse_roots(s, s.components[k])[None, :]
                / _block_leaves(s, s.components[k])
            )
            factors.append((k, rows))
        reach = max(
            float(np.abs(rows).sum(axis=1).max()) * _contrast_reach(s, s.components[k])
            for k, rows in factors
        )
        largest = max(float(np.abs(rows).max()) for _, rows in factors)
        resolution = min(_RESOLUTION / largest, 2.0**62 / (MAX_RECORDS * reach))
        if resolution * largest < _SMALLEST_RESOLUTION:
            raise ValueError("the design's integer queries would need more than 64 bits")
        components, integer_rows = [], []
        for k, rows in factors:
            rounded = np.rint(rows * resolution).astype(np.int64)
            if np.linalg.matrix_rank(rounded.astype(float)) < len(rows):
                raise ValueError("rounding the design lost a measured direction")
            components.append(k)
            integer_rows.append(rounded)
        norm = _residual_norm(s, components, integer_rows)
        size = sum(
            len(rows) * _block_leaves(s, s.components[k])
            for k, rows in zip(components, integer_rows, strict=True)
        )
        query = Query("residuals", size, 1.0, norm)
        notes = strategy.notes
        return cls(
            s,
            "zcdp",
            strategy.name,
            (_ResidualQuery(query, tuple(components), tuple(integer_rows)),),
            True,
            notes,
        )

    @classmethod
    def marginals(
        cls,
        workload: Workload | Structure,
        marginals: Sequence[Marginal],
        shares: Sequence[float],
        model: Model,
        *,
        method: str = "hand-set weights",
        joint: bool = True,
    ) -> Design:
        """Each marginal's cells measured as one query with its share (L2 and L1 norm 1)."""
        s = workload if isinstance(workload, Structure) else Structure(workload)
        total = math.fsum(shares)
        parts = tuple(
            _MarginalQuery(Query(m.name, m.cells, share / total, 1), s.table_for(m))
            for m, share in zip(marginals, shares, strict=True)
            if share > 0
        )
        return cls(s, model, method, parts, joint)

    # Measuring.

    def leaf_counts(self, counts: npt.NDArray[np.integer]) -> npt.NDArray[np.int64]:
        """Counts by the keys of the workload's attributes (one axis each, in order) ->
        counts by the leaves of the attributes the tables use."""
        out = np.asarray(counts, dtype=np.int64)
        used = {attribute.name: attribute for attribute in self.structure.attributes}
        names = [name for name, _ in self.structure.workload.attributes]
        if out.shape != tuple(size for _, size in self.structure.workload.attributes):
            raise ValueError("the counts do not have one axis per attribute, of its keys")
        out = out.sum(axis=tuple(i for i, name in enumerate(names) if name not in used))
        for axis, attribute in enumerate(self.structure.attributes):
            membership = np.zeros((attribute.keys, attribute.leaves), dtype=np.int64)
            membership[np.arange(attribute.keys), attribute.leaf_of_key] = 1
            out = np.moveaxis(np.tensordot(out, membership, axes=([axis], [0])), -1, axis)
        return out

    def answers(self, leaf_counts: npt.NDArray[np.int64]) -> list[npt.NDArray[np.int64]]:
        """The exact integer answers of every query (what OpenDP adds noise to)."""
        s = self.structure
        out = []
        for part in self.parts:
            if isinstance(part, _MarginalQuery):
                exact = _integer_cells(s, part.table, leaf_counts)
                out.append(exact)
                continue
            pieces = []
            for k, rows in zip(part.components, part.rows, strict=True):
                pieces.append((rows @ s.reduce(s.components[k], leaf_counts, integer=True)).ravel())
            out.append(np.concatenate(pieces))
        return out

    def scales(self, loss: float, bound: int) -> list[float]:
        """The noise scale of each query for the input's ``loss`` (rho or epsilon) when one
        person moves at most ``bound`` records (OpenDP's privacy map confirms it)."""
        out = []
        for query in self.queries:
            distance = query.distance(self.model, bound)
            share = query.share * loss
            out.append(
                distance / math.sqrt(2.0 * share) if self.model == "zcdp" else distance / share
            )
        return out

    # Estimating.

    def strategy(self, variances: Sequence[float]) -> Strategy:
        """The strategy at the given noise variances (per query): its covariances are
        those of :meth:`estimate`'s estimates."""
        s = self.structure
        precisions = [np.zeros((size, size)) for size in s.block_sizes]
        for part, variance in zip(self.parts, variances, strict=True):
            if isinstance(part, _MarginalQuery):
                for k, component in enumerate(s.components):
                    precisions[k] += s.gram(part.table, component) / variance
            else:
                for k, rows in zip(part.components, part.rows, strict=True):
                    precisions[k] += _residual_precision(s, k, rows) / variance
        return Strategy(s, tuple(precisions), self.method, model=self.model)

    def covariance(self, table: str, variances: Sequence[float]) -> Matrix:
        """The covariance of a table's estimated cells at the given noise variances."""
        if self.joint:
            return self.strategy(variances).covariance(table)
        for part, variance in zip(self.parts, variances, strict=True):
            if isinstance(part, _MarginalQuery) and part.table.marginal.name == table:
                return np.eye(part.table.marginal.cells) * variance
        raise KeyError(table)

    def estimate(
        self, noisy: Sequence[npt.NDArray[np.integer] | Matrix], variances: Sequence[float]
    ) -> Estimates:
        """Least-squares estimates from the queries' noisy answers (same order as
        :attr:`queries`) and their noise variances. Requires a joint design."""
        if not self.joint:
            raise ValueError("a per-table design has no joint estimate: read each query")
        s = self.structure
        strategy = self.strategy(variances)
        leaves = np.zeros(tuple(a.leaves for a in s.attributes))
        # A^T y / variance, per component, in its coordinates.
        back: list[Matrix | None] = [None] * len(s.components)

        def add(k: int, more: Matrix) -> None:
            known = back[k]
            back[k] = more if known is None else known + more

        for part, answer, variance in zip(self.parts, noisy, variances, strict=True):
            values = np.asarray(answer, dtype=float)
            if isinstance(part, _MarginalQuery):
                spread = s.table_transpose(part.table, values) / variance
                for k, component in enumerate(s.components):
                    if s.sees(part.table, component):
                        add(k, s.to_component(component, spread))
                continue
            start = 0
            for k, rows in zip(part.components, part.rows, strict=True):
                component = s.components[k]
                count = len(rows) * _block_leaves(s, component)
                piece = values[start : start + count].reshape(len(rows), -1)
                start += count
                add(k, _residual_back(s, component, rows, piece) / variance)
        for k, component in enumerate(s.components):
            measured = back[k]
            if measured is not None:
                estimate = strategy.covariances[k] @ measured
                leaves = leaves + s.from_component(component, estimate)
        return Estimates(strategy, leaves)


def _coarse_roots(s: Structure, component: _Component) -> Matrix:
    out = np.ones(1)
    for axis in component.spans():
        out = _kron(out, np.sqrt(s.attributes[axis].sizes.astype(float)))
    return out


def _block_leaves(s: Structure, component: _Component) -> int:
    """The number of leaves of the component's blocks, over its non-spanned attributes:
    the size of its contrasts' integer frame, and that frame's gain."""
    return math.prod(int(s.attributes[a].sizes[p]) for a, p in enumerate(component.parts) if p >= 0)


def _contrast_reach(s: Structure, component: _Component) -> float:
    """The largest absolute value of the contrasts' integer frame, per record counted."""
    return float(
        math.prod(
            int(s.attributes[a].sizes[p]) - 1 for a, p in enumerate(component.parts) if p >= 0
        )
    )


def _residual_precision(s: Structure, k: int, rows: npt.NDArray[np.int64]) -> Matrix:
    """``A^T A`` of a component's integer rows, in its orthonormal coordinates (unit noise)."""
    component = s.components[k]
    scaled = rows.astype(float) * _coarse_roots(s, component)[None, :] * _block_leaves(s, component)
    return scaled.T @ scaled


def _residual_norm(
    s: Structure, components: Sequence[int], rows: Sequence[npt.NDArray[np.int64]]
) -> int:
    """The largest squared L2 norm of one record's column of the integer rows, exactly."""
    norms = [0] * math.prod(s.types)
    for k, integer_rows in zip(components, rows, strict=True):
        component = s.components[k]
        types, _ = s.column_weights(component)
        frame = math.prod(
            int(s.attributes[a].sizes[p]) * (int(s.attributes[a].sizes[p]) - 1)
            for a, p in enumerate(component.parts)
            if p >= 0
        )
        columns = [
            sum(int(v) * int(v) for v in integer_rows[:, j]) for j in range(integer_rows.shape[1])
        ]
        for j, kind in enumerate(types.tolist()):
            norms[kind] += columns[j] * frame
    return max(norms)


def _residual_back(
    s: Structure, component: _Component, rows: npt.NDArray[np.int64], noisy: Matrix
) -> Matrix:
    """``A^T y`` of a component's integer rows, in its coordinates."""
    coarse = (rows.astype(float).T @ noisy) * _coarse_roots(s, component)[:, None]
    spans = component.spans()
    others = [a for a in range(len(s.attributes)) if a not in spans]
    shape = [s.attributes[a].blocks for a in spans] + [
        int(s.attributes[a].sizes[component.parts[a]]) for a in others
    ]
    tensor = coarse.reshape(shape)
    for position, axis in enumerate(others, start=len(spans)):
        size = int(s.attributes[axis].sizes[component.parts[axis]])
        tensor = size * tensor - tensor.sum(axis=position, keepdims=True)
    return tensor.reshape(coarse.shape)


def _integer_cells(
    s: Structure, table: _Table, leaf_counts: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    out = leaf_counts
    for axis, attribute in enumerate(s.attributes):
        membership = table.views[axis].membership(attribute).astype(np.int64)
        out = np.moveaxis(np.tensordot(out, membership, axes=([axis], [1])), -1, axis)
    flat = out.reshape(-1)
    cells = np.zeros(table.marginal.cells, dtype=np.int64)
    possible = table.cell_block >= 0
    cells[possible] = flat[table.cell_block[possible]]
    return cells


# ---------------------------------------------------------------------------------------
# The planner.


def plan(workload: Workload, model: Model, objective: Objective = "total") -> Design:
    """The design to release one input's tables with: for zCDP the optimum (or, when a
    block is too large for it, ResidualPlanner's scalars), for pure DP the optimised
    shares of the marginals. ``Design.notes`` says which."""
    s = Structure(workload)
    if model == "pure":
        strategy, marginals, shares = marginal_weights(s, objective)
        design = Design.marginals(s, marginals, shares, "pure", method=strategy.name)
        return replace(
            design,
            notes=(
                "pure DP: the shares of the loss are optimised over the tables and their "
                "sub-tables (Laplace noise, least squares); no optimum is known to compare",
            ),
        )
    if max(s.block_sizes) > MAX_BLOCK:
        strategy = residual_planner(s, objective)
        strategy = replace(
            strategy,
            notes=(*strategy.notes, "blocks too large for the exact planner: residual planner"),
        )
    else:
        strategy = optimal(s, objective)
    return Design.residuals(strategy)
