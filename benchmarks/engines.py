"""Benchmarks of the engines on the demo as Parquet, at 10 and 100 million records.

    python benchmarks/engines.py [--records 10000000,100000000] [--out benchmarks]

Records are rows over the demo's three inputs (crimes, victims, suspects: about 4.23
records per crime). For each size it writes the demo as Parquet folders (``publisher demo
--format parquet``, timed), then runs, each in a fresh Python process (wall time and peak
RSS its own, as in ``run.py``):

- ``duckdb``: the full release on the duckdb engine (``engine.memory_limit`` 1.5 GB);
- ``polars``: the full release on the polars engine (at 10 million records only: at 100
  million its in-memory truncation needs more than this machine's 24 GB is safe to try);
- ``groupby``: DuckDB's own non-private group-bys of the same tables, the baseline: each
  table's counts over its full public keys (zeros included) from the Parquet folders,
  written as CSV, with DuckDB's defaults (all cores, 80% of memory).

It writes ``ENGINES.md`` and ``engines.json`` and says for each target whether it is met.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import _HARNESS, ROOT  # the harness of run.py, shared

RECORDS_PER_CRIME = 4.228

JOBS = {
    # Each release starts from a fresh ledger: the same version is never released twice.
    "duckdb": """
from publisher import pipeline
(work / "demo" / "ledger.sqlite").unlink(missing_ok=True)
pipeline.release(work / "demo" / "release.yaml", work / "package-duckdb", engine="duckdb")
""",
    "polars": """
from publisher import pipeline
(work / "demo" / "ledger.sqlite").unlink(missing_ok=True)
pipeline.release(work / "demo" / "release.yaml", work / "package-polars", engine="polars")
""",
    "groupby": """
import itertools
import duckdb
from publisher import spec as spec_module
spec = spec_module.load(work / "demo" / "release.yaml")
out = work / "groupby"
out.mkdir(exist_ok=True)
connection = duckdb.connect()
def quoted(text):
    return "'" + text.replace("'", "''") + "'"
for table in spec.tables:
    source = spec.inputs[table.input]
    columns = []
    for column in table.by:
        declared = source.columns[column]
        if declared.derived_from is None:
            columns.append(f'"{column}"')
            continue
        groups = spec.categories[declared.categories].groups
        cases = " ".join(
            f"WHEN {quoted(key)} THEN {quoted(group)}"
            for group, keys in groups.members.items() for key in keys
        )
        columns.append(f'CASE "{declared.derived_from}" {cases} END AS "{column}"')
    by = ", ".join(f'"{column}"' for column in table.by)
    keys = " CROSS JOIN ".join(
        f"(SELECT unnest([{', '.join(quoted(v) for v in spec.category_of(table, c).values)}]) "
        f'AS "{c}")'
        for c in table.by
    )
    path = quoted(str(spec.input_path(table.input) / "*.parquet"))
    connection.execute(
        f"COPY (SELECT {by}, coalesce(n, 0) AS count FROM {keys} LEFT JOIN "
        f"(SELECT {by}, count(*) AS n FROM (SELECT {', '.join(columns)} FROM read_parquet({path})) "
        f"GROUP BY ALL) USING ({by})) TO {quoted(str(out / (table.name + '.csv')))} (HEADER)"
    )
""",
}

TARGETS = """
- 100 million records on the duckdb engine: peak RSS at most 4 GB.
- 100 million records on the duckdb engine: at most 3 times DuckDB's own non-private
  group-bys of the same tables.
- 10 million records: the duckdb engine within 1.5 times the polars engine's time.
- `publisher demo --format parquet` writes 100 million records in a few minutes.
"""


def run_job(name: str, work: Path) -> dict[str, float]:
    script = textwrap.dedent(_HARNESS).format(body=textwrap.dedent(JOBS[name]))
    result = subprocess.run(
        [sys.executable, "-c", script, str(work)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if result.returncode != 0:
        print(result.stderr[-3000:], flush=True)
        return {"failed": 1.0, "seconds": float("nan"), "peak_rss_mb": float("nan")}
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def benchmark(records: int, jobs: list[str]) -> dict[str, dict[str, float]]:
    crimes = round(records / RECORDS_PER_CRIME)
    with tempfile.TemporaryDirectory(prefix="publisher-engines-") as folder:
        work = Path(folder)
        demo = textwrap.dedent(_HARNESS).format(
            body=textwrap.dedent(
                f"""
                from publisher import demo
                demo.generate(work / "demo", crimes={crimes}, format="parquet")
                """
            )
        )
        made = subprocess.run(
            [sys.executable, "-c", demo, str(work)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        results = {"demo": dict(json.loads(made.stdout.strip().splitlines()[-1]))}
        import polars as pl

        results["demo"]["records"] = float(
            sum(
                pl.scan_parquet(work / "demo" / name / "*.parquet")
                .select(pl.len())
                .collect()
                .item()
                for name in ("crimes", "victims", "suspects")
            )
        )
        for name in jobs:
            print(f"  {name} ...", flush=True)
            results[name] = run_job(name, work)
            print(f"  {name}: {results[name]}", flush=True)
    return results


def _cell(run: dict[str, float] | None) -> str:
    if run is None:
        return "not run"
    if run.get("failed"):
        return "failed"
    return f"{run['seconds']:.0f} s ({run['peak_rss_mb'] / 1024:.2f} GB)"


def report(results: dict[int, dict[str, dict[str, float]]]) -> str:
    lines = [
        "# Engines benchmark",
        "",
        f"Machine: {platform.machine()}, {platform.system()}, Python "
        f"{platform.python_version()}, 2 cores, 24 GB; generated by "
        "`python benchmarks/engines.py`.",
        "",
        "Wall time (peak RSS) of each job in its own process, start-up included. Records are "
        "rows over the three inputs.",
        "",
        "| records | demo as Parquet | duckdb release | polars release | DuckDB group-bys | "
        "duckdb / group-bys | duckdb / polars |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for _, r in sorted(results.items()):
        duck, polars, group = r.get("duckdb"), r.get("polars"), r.get("groupby")
        over_group = (
            f"{duck['seconds'] / group['seconds']:.1f}x"
            if duck and group and not duck.get("failed")
            else "-"
        )
        over_polars = (
            f"{duck['seconds'] / polars['seconds']:.2f}x"
            if duck and polars and not polars.get("failed") and not duck.get("failed")
            else "-"
        )
        lines.append(
            f"| {int(r['demo']['records']):,} | {_cell(r['demo'])} | {_cell(duck)} | "
            f"{_cell(polars)} | {_cell(group)} | {over_group} | {over_polars} |"
        )
    lines += ["", "## Targets", "", TARGETS.strip(), "", "## Verdict", ""]
    lines += verdicts(results)
    return "\n".join(lines) + "\n"


def verdicts(results: dict[int, dict[str, dict[str, float]]]) -> list[str]:
    found = []
    large = results.get(max(results)) if results else None
    if large and large.get("duckdb") and not large["duckdb"].get("failed"):
        rss = large["duckdb"]["peak_rss_mb"] / 1024
        ratio = large["duckdb"]["seconds"] / large["groupby"]["seconds"]
        records = int(large["demo"]["records"])
        found.append(
            f"- Peak RSS at {records:,} records (duckdb): {rss:.2f} GB "
            f"({'met' if rss <= 4 else 'missed'})."
        )
        found.append(
            f"- duckdb release / DuckDB's group-bys at {records:,} records: {ratio:.1f}x "
            f"({'met' if ratio <= 3 else f'missed: {ratio:.1f}x of the 3x asked'})."
        )
        minutes = large["demo"]["seconds"] / 60
        found.append(f"- The demo as Parquet at {records:,} records: {minutes:.1f} minutes.")
    small = results.get(min(results)) if results else None
    if small and small.get("polars") and small.get("duckdb"):
        ratio = small["duckdb"]["seconds"] / small["polars"]["seconds"]
        records = int(small["demo"]["records"])
        found.append(
            f"- duckdb / polars at {records:,} records: {ratio:.2f}x "
            f"({'met' if ratio <= 1.5 else f'missed: {ratio:.2f}x of the 1.5x asked'})."
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="10000000,100000000")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument(
        "--report-only", action="store_true", help="Rewrite ENGINES.md from engines.json."
    )
    arguments = parser.parse_args()
    saved = arguments.out / "engines.json"
    if arguments.report_only:
        loaded = {int(k): v for k, v in json.loads(saved.read_text(encoding="utf-8")).items()}
        (arguments.out / "ENGINES.md").write_text(report(loaded), encoding="utf-8")
        return
    sizes = [int(size) for size in arguments.records.split(",")]
    # Sizes run before (another invocation) are kept unless run again.
    results = (
        {int(k): v for k, v in json.loads(saved.read_text(encoding="utf-8")).items()}
        if saved.exists()
        else {}
    )
    for size in sizes:
        print(f"benchmarking {size:,} records ...", flush=True)
        jobs = ["groupby", "duckdb"] + (["polars"] if size <= 20_000_000 else [])
        results[size] = benchmark(size, jobs)
    saved.write_text(
        json.dumps({str(k): v for k, v in results.items()}, indent=2) + "\n", encoding="utf-8"
    )
    (arguments.out / "ENGINES.md").write_text(report(results), encoding="utf-8")
    print(report(results))


if __name__ == "__main__":
    main()
