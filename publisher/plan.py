"""What a release will cost and how accurate it will be, before anything is spent.

Everything here comes from the spec's public parameters (losses, weights, per-person
bounds, keys, rounding): the data is never read. The noise scale of each table follows
from its loss and its sensitivity (one person changes a count table by at most
``max_records_per_person`` records, which is what OpenDP derives for the release's
truncated query); OpenDP's own privacy map checks that scale against the loss, and
OpenDP's accuracy functions give the margins.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np
from opendp.accuracy import (
    accuracy_to_discrete_gaussian_scale,
    accuracy_to_discrete_laplacian_scale,
    discrete_gaussian_scale_to_accuracy,
    discrete_laplacian_scale_to_accuracy,
)
from opendp.domains import atom_domain, vector_domain
from opendp.measurements import make_gaussian, make_laplace
from opendp.metrics import l1_distance, l2_distance
from rich.console import Group
from rich.table import Table as RichTable
from rich.text import Text

from publisher import postprocess
from publisher.errors import SpecError
from publisher.privacy import CONFIDENCE, epsilon_delta, keys_of
from publisher.spec import ReleaseSpec, Table

__all__ = ["Plan", "TablePlan", "parse_targets", "plan"]

_ALPHA = 1.0 - CONFIDENCE


@dataclass(frozen=True)
class TablePlan:
    """One table's share of the loss and its expected accuracy."""

    name: str
    loss: float  # rho or epsilon, in the spec's model
    distribution: str  # as OpenDP names it
    scale: float
    margin_noise: float  # 95% margin of one cell's noise, as measured (OpenDP)
    margin_estimate: float  # the largest cell margin after estimation with the other tables
    margin_published: float  # the same, allowing for rounding to the base
    target: float | None = None


@dataclass(frozen=True)
class Plan:
    """The whole release: per-table plans and the total as the model and (epsilon, delta)."""

    model: str
    loss_name: str
    total_loss: float
    epsilon: float
    delta: float
    cap: float
    tables: tuple[TablePlan, ...]
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
                "cap": {self.loss_name: self.cap},
                "meets_cap": self.meets_targets,
                "weights": self.weights,
                "tables": [asdict(table) for table in self.tables],
            },
            indent=2,
        )

    def to_table(self) -> Group:
        """The plan for a terminal: one row per table, then the total."""
        unit = (
            "\N{GREEK SMALL LETTER RHO}"
            if self.loss_name == "rho"
            else "\N{GREEK SMALL LETTER EPSILON}"
        )
        table = RichTable(
            title="Privacy loss and expected 95% margins of error (counts)",
            caption=f"Noise: {self.tables[0].distribution}. Margins are for one cell; "
            "'after estimation' is the least precise cell of the table once all tables of "
            "its input are estimated together.",
        )
        table.add_column("Table", overflow="fold")
        for header in (f"Loss ({unit})", "Share", "Noise scale"):
            table.add_column(header, justify="right")
        for header in ("One cell", "After estimation", "As published", "Target"):
            table.add_column(header, justify="right")
        for row in self.tables:
            table.add_row(
                row.name,
                f"{row.loss:.4g}",
                f"{row.loss / self.total_loss:.0%}",
                f"{row.scale:.3g}",
                f"\N{PLUS-MINUS SIGN}{row.margin_noise:.0f}",
                f"\N{PLUS-MINUS SIGN}{row.margin_estimate:.1f}",
                f"\N{PLUS-MINUS SIGN}{row.margin_published:.1f}",
                "" if row.target is None else f"\N{PLUS-MINUS SIGN}{row.target:g}",
            )
        total = f"Total: {self.loss_name} = {self.total_loss:.4g}"
        if self.model == "zcdp":
            total += f", that is (epsilon = {self.epsilon:.4g}, delta = {self.delta:.0e})-DP"
        total += f"; lifetime cap {self.loss_name} = {self.cap:g}."
        if any(row.target is not None for row in self.tables):
            weights = ", ".join(f"{name}: {weight:g}" for name, weight in self.weights.items())
            total += (
                f"\nTo release with these targets, set privacy.{self.loss_name}: "
                f"{self.total_loss:.4g} and the table weights {weights}."
            )
        return Group(table, Text(total))

    @property
    def weights(self) -> dict[str, float]:
        """Table weights that give this split (proportional to each table's loss)."""
        smallest = min(table.loss for table in self.tables)
        return {table.name: round(table.loss / smallest, 6) for table in self.tables}


def _sensitivity(spec: ReleaseSpec, table: Table) -> int:
    return spec.inputs[table.input].max_records_per_person


def _scale(model: str, loss: float, sensitivity: int) -> tuple[str, float]:
    """The noise scale for ``loss``, checked by OpenDP's privacy map."""
    vectors = vector_domain(atom_domain(T="i64"))
    if model == "zcdp":
        scale = sensitivity / math.sqrt(2.0 * loss)
        mechanism = make_gaussian(vectors, l2_distance(T="i64"), scale=scale)
        distribution = "Integer Gaussian"
    else:
        scale = sensitivity / loss
        mechanism = make_laplace(vectors, l1_distance(T="i64"), scale=scale)
        distribution = "Integer Laplace"
    spent = float(mechanism.map(sensitivity))  # type: ignore[no-untyped-call]
    assert spent <= loss * (1 + 1e-9), "OpenDP's privacy map disagrees with the scale"
    return distribution, scale


def _noise_margin(distribution: str, scale: float) -> float:
    if distribution == "Integer Gaussian":
        return float(discrete_gaussian_scale_to_accuracy(scale, _ALPHA))
    return float(discrete_laplacian_scale_to_accuracy(scale, _ALPHA))


def _loss_for_margin(name: str, model: str, margin: float, sensitivity: int) -> float:
    """The least loss whose noise margin per cell (OpenDP's accuracy) is at most ``margin``.

    OpenDP's accuracy of integer noise moves in whole steps, so its inverse is only a
    starting point: the largest scale that still meets the margin is found by bisection.
    """
    distribution = "Integer Gaussian" if model == "zcdp" else "Integer Laplace"
    inverse = (
        accuracy_to_discrete_gaussian_scale
        if model == "zcdp"
        else accuracy_to_discrete_laplacian_scale
    )
    high = 2.0 * float(inverse(float(margin), _ALPHA))
    low = 0.0
    for _ in range(60):
        middle = (low + high) / 2.0
        if middle > 0 and _noise_margin(distribution, middle) <= margin:
            low = middle
        else:
            high = middle
    if low == 0.0:
        raise SpecError(
            f"--target {name}={margin:g}: no noise scale gives so small a margin (OpenDP's "
            "margins of integer noise are whole numbers of at least 1); raise the target"
        )
    return sensitivity**2 / (2.0 * low**2) if model == "zcdp" else sensitivity / low


def _variance(distribution: str, scale: float) -> float:
    if distribution == "Integer Laplace":
        decay = math.exp(-1.0 / scale)
        return 2.0 * decay / (1.0 - decay) ** 2
    return scale**2


def plan(spec: ReleaseSpec, targets: dict[str, float] | None = None) -> Plan:
    """Plan the spec's release; with ``targets`` (table -> 95% margin per cell), find the
    least loss for each targeted table that meets its target, keeping the others' loss.
    """
    targets = targets or {}
    model = spec.privacy.model
    losses = {table.name: spec.table_loss(table) for table in spec.tables}
    for name, margin in targets.items():
        losses[name] = _loss_for_margin(name, model, margin, _sensitivity(spec, spec.table(name)))

    noise: dict[str, tuple[str, float]] = {
        table.name: _scale(model, losses[table.name], _sensitivity(spec, table))
        for table in spec.tables
    }
    deviations = _largest_deviations(spec, noise)
    base = spec.disclosure.rounding_base
    tables = []
    for table in spec.tables:
        distribution, scale = noise[table.name]
        deviation = deviations[table.name]
        q = postprocess.quantile(distribution)
        tables.append(
            TablePlan(
                name=table.name,
                loss=losses[table.name],
                distribution=distribution,
                scale=scale,
                margin_noise=_noise_margin(distribution, scale),
                margin_estimate=q * deviation,
                # Rounding adds an error of at most half the base, spread evenly (base^2/12).
                margin_published=q * math.sqrt(deviation**2 + base**2 / 12.0),
                target=targets.get(table.name),
            )
        )
    total = math.fsum(losses.values())
    epsilon, delta = epsilon_delta(model, total, spec.privacy.delta)
    return Plan(
        model=model,
        loss_name=spec.privacy.loss_name,
        total_loss=total,
        epsilon=epsilon,
        delta=delta,
        cap=spec.privacy.cap_loss,
        tables=tuple(tables),
        meets_targets=total <= spec.privacy.cap_loss * (1 + 1e-9),
    )


def _largest_deviations(spec: ReleaseSpec, noise: dict[str, tuple[str, float]]) -> dict[str, float]:
    """The largest cell standard deviation of each table after estimation with its input's
    other tables (the consistency step of the release)."""
    deviations: dict[str, float] = {}
    for input_name in spec.inputs:
        tables = [table for table in spec.tables if table.input == input_name]
        if not tables:
            continue
        variances = [_variance(*noise[table.name]) for table in tables]
        _, covariance = postprocess.projection(spec, tables, variances)
        cell_variances = np.diag(covariance)
        start = 0
        for table in tables:
            size = keys_of(spec, table).height
            deviations[table.name] = math.sqrt(float(cell_variances[start : start + size].max()))
            start += size
    return deviations


def parse_targets(spec: ReleaseSpec, texts: tuple[str, ...]) -> dict[str, float]:
    """``table=MOE`` options into targets, every problem reported at once."""
    targets: dict[str, float] = {}
    problems = []
    names = [table.name for table in spec.tables]
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
        else:
            targets[name] = margin
    if problems:
        raise SpecError(problems)
    return targets
