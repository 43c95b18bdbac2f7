"""publisher: publish sensitive counts as safe, documented open data.

The modules, in the order data flows through them (see DESIGN.md):

- ``spec``: the YAML release spec, loaded safely into frozen, validated models
  (``lookalike``: category keys readers could not tell apart are refused).
- ``ingest``: the private inputs, read once in bounded batches, checked against the spec
  and staged for the measurements (identifiers hashed).
- ``staging``: private temporary folders for those working copies.
- ``ledger``: the private SQLite privacy-budget ledger: reserve before noise, commit after.
- ``accounting``: what each measurement costs each privacy unit (OpenDP's privacy maps),
  from public parameters only; under zCDP an input's measurements are its strategy's.
- ``engines``: where each input is bounded and counted (Polars in memory, DuckDB out of
  core, or Spark): exact counts only, the same on every engine (``ingest`` only checks
  rows).
- ``privacy``: differentially private counts with OpenDP, the only module that draws
  noise, from the engines' exact counts.
- ``postprocess``: consistent estimates (least squares, from the strategy's answers or
  the tables' noisy cells), totals and headline shares with intervals, from noisy values
  only.
- ``disclosure``: rounding, thresholds and GSS markers.
- ``package``: the Frictionless data package, validated and swapped into place atomically.
- ``model``: a written package read back once and checked (paths, links, checksums), for
  everything that reads a package.
- ``pipeline``: the release end to end.
- ``plan``: the loss split and expected margins of error, from public parameters only.
- ``strategy``: the optimal measurement strategy of one input's tables (what to measure,
  with what noise, and the estimates' exact covariance), from public parameters only.
- ``site``: the public MkDocs site, generated from a package (a package of its own:
  views, Jinja2 templates holding every sentence, charts, build).
- ``demo``: synthetic microdata shaped like the police data, for demonstrations and tests.
- ``cli``: the ``publisher`` command, a thin layer over the above.
"""

from importlib.metadata import version

__all__ = ["__version__"]

__version__ = version("publisher")
