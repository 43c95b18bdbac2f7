"""The public site of a release, generated from its data package only.

The modules, in the order a page is made:

- :mod:`publisher.model` (shared with the rest of the publisher) reads the package once:
  every path checked, no link followed, every file matched with its checksum.
- :mod:`~publisher.site.views` chooses what each page shows (totals, largest categories,
  markers used, files to offer), with no prose.
- :mod:`~publisher.site.charts` measures and places the bars of each chart.
- ``templates/`` (Jinja2) holds every sentence of the site: one template per page kind
  (``release.md.j2``, ``table.md.j2``, ``methodology.md.j2``...), the chart's SVG
  (``chart.svg.j2``) and its words (``chart-words.txt.j2``). A statistician changes a
  sentence there, without reading Python.
- :mod:`~publisher.site.text` holds the filters the templates must print through:
  Markdown, HTML and BibTeX escaping of untrusted text, numbers, dates and sizes.
- :mod:`~publisher.site.render` sets up the templates and renders every page.
- :mod:`~publisher.site.build` writes the pages and verified copies of the package's
  files into the generated folder, and builds the site with MkDocs.
- ``assets/``: the stylesheet and a small script (the note shown when the site is opened
  from disk), copied into the generated folder.

The site never sees the microdata, and the output is byte-stable (no timestamps other
than the package's own), so a test compares freshly generated pages with the committed
ones. The pages are standard Markdown for MkDocs and Material: no plugin of ours is
needed to build them.
"""

from publisher.site.build import GENERATED_DIR, SITE_MARKER, build_site, generate_pages

__all__ = ["GENERATED_DIR", "SITE_MARKER", "build_site", "generate_pages"]
