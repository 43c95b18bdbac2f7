"""The bounding and counting of one input in SQL, shared by DuckDB and Spark.

Each input is a relation with an ``id`` (the person of its own unit, as a 64-bit hash), for
an input bounded for a linked unit a ``linked`` (the linked person), and one integer code
column per base column (``c0``, ``c1``, ...: positions in the public keys). The queries
return counts only.

Truncation keeps the first ``k`` records of each person in the keyed order::

    row_number() over (partition by id order by key, c0, c1, ...) <= k

The linked projection is :func:`publisher.privacy.linked_projection`'s greedy matching,
run in rounds. Its edges are the distinct ``(own, linked)`` pairs in the keyed order
(ties broken by the pair). The sequential algorithm decides each edge from what the
earlier edges at its two endpoints decided (is the own person matched, how many own
people the linked person has), so an edge can be decided as soon as every earlier edge at
both of its endpoints is. Each round decides all such edges: those first, among the
undecided, at both endpoints. Before each round every undecided edge has an unmatched own
person and a linked person with a free place (see below), so each of them is accepted,
exactly as the sequential run accepts it; two of them never share an endpoint, so they
are independent. After the round, every undecided edge of a now matched own person or a
now full linked person is rejected in bulk: the sequential run rejects it too, whenever
it reaches it (matched people stay matched, places only fill), and a rejected edge
changes nothing. The first undecided edge in the order is always first at both of its
endpoints, so every round decides at least one edge and the loop ends with exactly the
sequential run's matching (``tests/test_engines.py`` checks this on random graphs against
``linked_projection``). With a random order, few rounds are needed (a greedy matching in
random order has a short dependence length). Before the rounds, the own people whose first
edge goes to a linked person who can never be full are decided in one pass (see
:func:`_settle_first`): in data like the demo, most of them.
"""

from __future__ import annotations

import itertools
from abc import abstractmethod
from collections.abc import Sequence

import numpy as np

from publisher.engines import Int64Array, LeafCounts, OrderKey, SqlDialect

__all__ = [
    "SqlRunner",
    "edge_table",
    "first_edges",
    "greedy_rounds",
    "histogram",
    "leaf_counts",
    "linked_counted",
    "linked_counts",
]


class SqlRunner(SqlDialect):
    """An engine's connection: runs statements, fetches small results, keeps tables."""

    @abstractmethod
    def fetch(self, query: str) -> list[tuple[int, ...]]:
        """The rows of a query (counts only: never row-level data)."""

    @abstractmethod
    def materialize(self, name: str, query: str) -> None:
        """Keep the result of ``query`` as a table ``name`` for the following queries."""

    @abstractmethod
    def drop(self, name: str) -> None:
        """Remove a table made by :meth:`materialize`."""

    def new_name(self, stem: str) -> str:
        """A table name not used before in this connection."""
        return f"__{stem}_{next(_NAMES)}"


_NAMES = itertools.count()


def code_columns(width: int) -> list[str]:
    return [f"c{position}" for position in range(width)]


def leaf_counts(
    runner: SqlRunner,
    relation: str,
    columns: Sequence[str],
    shape: Sequence[int],
    bound: int,
    order: OrderKey,
) -> LeafCounts:
    """The exact counts of the records kept by truncation to ``bound`` per person.

    A person with at most ``bound`` records keeps them all, so only the others are put in
    the keyed order (a window sorts each person's records; a count per person does not):
    the same counts as the window over everyone, in about half the time on the demo."""
    codes = code_columns(len(columns))
    listed = ", ".join(codes)
    carried = "".join(f", s.{code}" for code in codes)
    key = order.sql(["id", *codes], split=[True] + [False] * len(codes), dialect=runner)
    query = f"""
        WITH people AS (SELECT id, count(*) AS records FROM {relation} GROUP BY id),
        counted AS (
            SELECT s.id{carried}, p.records FROM {relation} s JOIN people p ON p.id = s.id
        )
        SELECT {listed}, sum(kept) FROM (
            SELECT {listed}, count(*) AS kept FROM counted
            WHERE records <= {int(bound)} GROUP BY {listed}
            UNION ALL
            SELECT {listed}, count(*) AS kept FROM (
                SELECT {listed},
                       row_number() OVER (PARTITION BY id ORDER BY key, {listed}) AS position
                FROM (SELECT id, {listed}, {key} AS key FROM counted
                      WHERE records > {int(bound)})
            ) WHERE position <= {int(bound)}
            GROUP BY {listed}
        ) GROUP BY {listed}
    """
    return LeafCounts.from_frame(columns, shape, runner.fetch(query))


def histogram(runner: SqlRunner, relation: str, bins: int) -> Int64Array:
    """People by their number of records: one bin per count from 1, the last bin for that
    many records or more."""
    rows = runner.fetch(
        f"SELECT least(records, {int(bins)}), count(*) FROM "
        f"(SELECT count(*) AS records FROM {relation} GROUP BY id) GROUP BY 1"
    )
    counts = np.zeros(bins, dtype=np.int64)
    for records, people in rows:
        counts[int(records) - 1] = int(people)
    return counts


def greedy_rounds(
    runner: SqlRunner, edges: str, firsts: str, cap: int, codes: Sequence[str]
) -> list[tuple[int, ...]]:
    """Run the greedy matching of ``edges`` (``own``, ``linked``, ``key``, the own person's
    ``codes``, ``load`` = 0) with at most ``cap`` own people per linked person, in rounds:
    the counts of the matched own people by ``codes`` (rows of codes then a count; one row
    per round and combination: they add up). ``firsts`` is :func:`first_edges` of the
    edges (made once for every cap the caller runs).

    Each undecided edge carries ``load``, how many own people its linked person has."""
    carried = "".join(f", {code}" for code in codes)
    grouped = ", ".join(codes)
    rows: list[tuple[int, ...]] = []
    remaining = _settle_first(runner, edges, firsts, cap, codes, rows)
    while True:
        accepted = runner.new_name("chosen")
        runner.materialize(
            accepted,
            f"""SELECT own, linked{carried} FROM (
                SELECT own, linked{carried},
                       row_number() OVER (PARTITION BY own ORDER BY key, linked) AS at_own,
                       row_number() OVER (PARTITION BY linked ORDER BY key, own) AS at_linked
                FROM {remaining}
            ) WHERE at_own = 1 AND at_linked = 1""",
        )
        counted = runner.fetch(
            f"SELECT {grouped}{', ' if codes else ''}count(*) FROM {accepted}"
            + (f" GROUP BY {grouped}" if codes else "")
        )
        found = [row for row in counted if row[-1]]
        if not found:  # the first undecided edge is always accepted: none are left
            runner.drop(accepted)
            break
        rows.extend(found)
        # Each linked person gains at most one own person a round.
        load = "e.load + CASE WHEN c.linked IS NULL THEN 0 ELSE 1 END"
        left = runner.new_name("edges")
        runner.materialize(
            left,
            f"""SELECT e.own, e.linked, e.key{"".join(f", e.{c}" for c in codes)}, {load} AS load
                FROM {remaining} e LEFT JOIN (SELECT linked FROM {accepted}) c
                ON c.linked = e.linked
                WHERE NOT EXISTS (SELECT 1 FROM {accepted} o WHERE o.own = e.own)
                AND {load} < {int(cap)}""",
        )
        runner.drop(accepted)
        runner.drop(remaining)
        remaining = left
    runner.drop(remaining)
    return rows


def first_edges(runner: SqlRunner, edges: str, codes: Sequence[str]) -> str:
    """A new table of each own person's first edge in the order (``own``, ``linked``, the
    own person's ``codes``) with the linked person's ``degree``: how many own people they
    have in all. It does not depend on the cap, so one serves every cap."""
    carried = "".join(f", e.{code}" for code in codes)
    firsts = runner.new_name("firsts")
    runner.materialize(
        firsts,
        f"""SELECT e.own, e.linked{carried}, d.degree FROM (
                SELECT own, linked{"".join(f", {code}" for code in codes)},
                       row_number() OVER (PARTITION BY own ORDER BY key, linked) AS at_own
                FROM {edges}
            ) e JOIN (SELECT linked, count(*) AS degree FROM {edges} GROUP BY linked) d
            ON d.linked = e.linked
            WHERE e.at_own = 1""",
    )
    return firsts


def _settle_first(
    runner: SqlRunner,
    edges: str,
    firsts: str,
    cap: int,
    codes: Sequence[str],
    rows: list[tuple[int, ...]],
) -> str:
    """Decide at once the own people whose first edge in the order goes to a linked person
    with at most ``cap`` own people in all (from ``firsts``, see :func:`first_edges`): adds
    their counts to ``rows`` and returns the other own people's edges (a new table), on
    which the rounds give the rest.

    The sequential run accepts such a first edge (the own person is unmatched, and the
    linked person can never be full) and then rejects the person's later edges, so these
    people take a place only where places never run out: the decisions on every other
    edge are the same without them. In data like the demo, where most linked people have
    few own people, this decides most edges in one pass.
    """
    grouped = ", ".join(codes)
    counted = runner.fetch(
        f"SELECT {grouped}{', ' if codes else ''}count(*) FROM {firsts} "
        f"WHERE degree <= {int(cap)}" + (f" GROUP BY {grouped}" if codes else "")
    )
    rows.extend(row for row in counted if row[-1])
    left = runner.new_name("edges")
    runner.materialize(
        left,
        f"SELECT e.* FROM {edges} e WHERE NOT EXISTS "
        f"(SELECT 1 FROM {firsts} s WHERE s.own = e.own AND s.degree <= {int(cap)})",
    )
    return left


def edge_table(runner: SqlRunner, relation: str, order: OrderKey, width: int = 0) -> str:
    """The distinct (own, linked) pairs of a linked input, with their order key, the
    first ``width`` codes of the own person and a ``load`` of 0, as :func:`greedy_rounds`
    reads them. One pass over the input: a person counted once has the same columns on
    all their records (the checks refuse an input where they differ), so the codes of any
    of their records are theirs."""
    edges = runner.new_name("edges")
    key = order.sql(["own", "linked"], split=[True, True], dialect=runner)
    codes = code_columns(width)
    people = "".join(f", min({code}) AS {code}" for code in codes)
    plain = "".join(f", {code}" for code in codes)
    runner.materialize(
        edges,
        f"SELECT own, linked, {key} AS key{plain}, 0 AS load FROM "
        f"(SELECT id AS own, linked{people} FROM {relation} GROUP BY id, linked)",
    )
    return edges


def linked_counted(
    runner: SqlRunner, relation: str, caps: Sequence[int], order: OrderKey
) -> list[int]:
    """How many own people the linked projection counts under each of ``caps``."""
    edges = edge_table(runner, relation, order)
    firsts = first_edges(runner, edges, [])
    counted = [
        sum(int(row[-1]) for row in greedy_rounds(runner, edges, firsts, cap, [])) for cap in caps
    ]
    runner.drop(firsts)
    runner.drop(edges)
    return counted


def linked_counts(
    runner: SqlRunner,
    relation: str,
    columns: Sequence[str],
    shape: Sequence[int],
    cap: int,
    reference_cap: int | None,
    order: OrderKey,
) -> tuple[LeafCounts, int]:
    """The counts of the own people the linked projection counts (each once, with their
    columns, which are the same on all their records), and how many more a bound of
    ``reference_cap`` would count (0 without one)."""
    codes = code_columns(len(columns))
    edges = edge_table(runner, relation, order, len(codes))
    firsts = first_edges(runner, edges, codes)
    rows = greedy_rounds(runner, edges, firsts, cap, codes)
    leaves = LeafCounts.from_frame(columns, shape, rows)
    more = 0
    if reference_cap is not None:
        reference = greedy_rounds(runner, edges, firsts, reference_cap, [])
        more = sum(int(row[-1]) for row in reference) - leaves.total
    runner.drop(firsts)
    runner.drop(edges)
    return leaves, more
