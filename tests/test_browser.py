"""The built site in a real browser: Debian's Chromium driven by Playwright, with axe-core.

The site is built once from the repository's committed package and served on 127.0.0.1.
Every page is opened once and audited: console errors, failed or off-site requests, axe-core
violations of WCAG 2.2 AA (serious and critical), and charts or images without a text
alternative. Then every internal link and download found on any page is fetched. Screenshots
of the home page and of a table page go to ``test-artifacts/screenshots/`` for people to
look at. A last test removes a chart's text alternative and checks that the audit notices.

These tests are never skipped: without Chromium they fail and say how to install it.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from publisher.site import GENERATED_DIR, build_site

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = Path(os.environ.get("PUBLISHER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# WCAG 2.0, 2.1 and 2.2, levels A and AA, as axe-core tags its rules.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
BLOCKING = {"serious", "critical"}
TABLE_PAGE = f"{GENERATED_DIR}/tables/crimes-by-offence-type-and-environment.html"
PAGE_TIMEOUT_MS = 30_000

# Every chart and image in the content needs a text alternative: an <img> its alt, an
# <svg> the image role and a non-empty name (aria-labelledby, aria-label or <title>), and a
# chart also a description. Decorative graphics would say aria-hidden="true".
UNNAMED_GRAPHICS_JS = """
() => {
  const text = (ids) => (ids || '').split(/\\s+/).filter(Boolean)
    .map((id) => (document.getElementById(id) || {}).textContent || '').join(' ').trim();
  const problems = [];
  for (const el of document.querySelectorAll('.md-content svg, .md-content img')) {
    if (el.closest('[aria-hidden="true"]')) continue;
    const where = el.outerHTML.slice(0, 100);
    if (el.tagName.toLowerCase() === 'img') {
      if (!(el.getAttribute('alt') || '').trim()) problems.push('image without alt: ' + where);
      continue;
    }
    const title = el.querySelector(':scope > title');
    const name = text(el.getAttribute('aria-labelledby'))
      || (el.getAttribute('aria-label') || '').trim()
      || (title ? title.textContent.trim() : '');
    if (el.getAttribute('role') !== 'img') problems.push('svg without role="img": ' + where);
    if (!name) problems.push('svg without a name: ' + where);
    if (el.closest('figure.publisher-figure') && !text(el.getAttribute('aria-describedby'))) {
      problems.push('chart without a description: ' + where);
    }
  }
  return problems;
}
"""


@dataclass
class Audit:
    """What one page did in the browser, and what is wrong with it."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    bad_responses: list[str] = field(default_factory=list)
    off_site: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    unnamed_graphics: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def audit_page(
    context: BrowserContext, base: str, url: str, screenshot: Path | None = None
) -> Audit:
    """Open ``url`` in a new tab and audit it; nothing may be fetched from outside ``base``
    (requests elsewhere are recorded: the site must work offline)."""
    result = Audit(url)
    page: Page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)

    # Recorded, not blocked: routing every request through Python would slow each page.
    page.on(
        "request",
        lambda request: (
            None
            if request.url.startswith((base, "data:", "blob:"))
            else result.off_site.append(request.url)
        ),
    )
    page.on(
        "console", lambda m: result.console_errors.append(m.text) if m.type == "error" else None
    )
    page.on("pageerror", lambda error: result.console_errors.append(str(error)))
    page.on(
        "response",
        lambda response: (
            result.bad_responses.append(f"{response.status} {response.url}")
            if response.status >= 400
            else None
        ),
    )
    try:
        response = page.goto(url, wait_until="load")
        if response is None or response.status != 200:
            result.bad_responses.append(f"{response.status if response else 'no response'} {url}")
        page.wait_for_load_state("networkidle")
        axe = Axe().run(
            page,
            options={"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]},
        )
        for violation in axe.response["violations"]:
            if violation.get("impact") in BLOCKING:
                targets = [str(node.get("target")) for node in violation.get("nodes", [])][:3]
                result.violations.append(
                    f"{violation['id']} ({violation['impact']}): {violation['help']} at {targets}"
                )
        result.unnamed_graphics = page.evaluate(UNNAMED_GRAPHICS_JS)
        result.links = page.eval_on_selector_all(
            "a[href], link[href], img[src], script[src], source[src]",
            "els => els.map(el => el.href || el.src)",
        )
        result.ids = set(page.eval_on_selector_all("[id]", "els => els.map(el => el.id)"))
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        page.close()
    return result


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: the browser tests need it and are never "
            "skipped. Install it (Debian or Ubuntu: apt-get install -y chromium) or set "
            "PUBLISHER_CHROMIUM to the path of a Chromium executable.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site of the committed package, with the repository's mkdocs.yml and docs."""
    out = tmp_path_factory.mktemp("browser") / "site"
    return build_site(REPO / "datapackage", out_dir=out, project_dir=REPO)


def site_pages(site: Path) -> list[str]:
    return sorted(
        path.relative_to(site).as_posix()
        for path in site.rglob("*.html")
        if "assets" not in path.relative_to(site).parts
    )


@pytest.fixture(scope="module")
def audits(site: Path, browser: Browser) -> Iterator[tuple[str, dict[str, Audit], BrowserContext]]:
    """Every page of the site, audited once on a desktop screen, and the home page and a
    table page again on a phone screen (keys ``mobile:...``); also the base URL and a
    browser context to fetch links with."""
    pages = site_pages(site)
    assert len(pages) >= 20, pages
    screenshots = {"index.html": "home.png", TABLE_PAGE: "table-page.png"}
    with serve(site) as base:
        desktop = browser.new_context(viewport={"width": 1280, "height": 900})
        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
        try:
            reports = {
                page: audit_page(
                    desktop,
                    base,
                    base + page,
                    SCREENSHOTS / screenshots[page] if page in screenshots else None,
                )
                for page in pages
            }
            for page in ("index.html", TABLE_PAGE, f"{GENERATED_DIR}/downloads.html"):
                shot = SCREENSHOTS / "table-page-phone.png" if page == TABLE_PAGE else None
                reports[f"mobile:{page}"] = audit_page(phone, base, base + page, shot)
            yield base, reports, desktop
        finally:
            phone.close()
            desktop.close()


def test_every_page_loads_without_console_errors(
    audits: tuple[str, dict[str, Audit], BrowserContext],
) -> None:
    _, reports, _ = audits
    problems = {
        page: report.console_errors for page, report in reports.items() if report.console_errors
    }
    assert not problems


def test_every_request_succeeds_and_stays_on_the_site(
    audits: tuple[str, dict[str, Audit], BrowserContext],
) -> None:
    _, reports, _ = audits
    failed = {
        page: report.bad_responses for page, report in reports.items() if report.bad_responses
    }
    off_site = {page: report.off_site for page, report in reports.items() if report.off_site}
    assert not failed
    assert not off_site, "the site must work offline: nothing may be fetched from elsewhere"


def test_no_serious_or_critical_accessibility_violations(
    audits: tuple[str, dict[str, Audit], BrowserContext],
) -> None:
    _, reports, _ = audits
    violations = {page: report.violations for page, report in reports.items() if report.violations}
    assert not violations


def test_every_chart_and_image_has_a_text_alternative(
    audits: tuple[str, dict[str, Audit], BrowserContext],
) -> None:
    _, reports, _ = audits
    unnamed = {
        page: report.unnamed_graphics for page, report in reports.items() if report.unnamed_graphics
    }
    assert not unnamed


def test_charts_are_where_they_should_be(
    audits: tuple[str, dict[str, Audit], BrowserContext], site: Path
) -> None:
    """The home page and every table page have charts: the alt-text check has work to do."""
    for page in ["index.html", f"{GENERATED_DIR}/index.html", TABLE_PAGE]:
        html = (site / page).read_text(encoding="utf-8")
        assert 'class="publisher-chart"' in html, page
    tables = sorted((site / GENERATED_DIR / "tables").glob("*.html"))
    charted = [page for page in tables if 'class="publisher-chart"' in page.read_text("utf-8")]
    assert len(charted) == len(tables) - 1  # all but the index of tables


def test_every_internal_link_and_download_resolves(
    audits: tuple[str, dict[str, Audit], BrowserContext],
) -> None:
    base, reports, context = audits
    targets: dict[str, set[str]] = {}  # URL without fragment -> fragments linked to
    for report in reports.values():
        for link in report.links:
            if not link.startswith(base):
                assert urlsplit(link).scheme in ("https", "mailto"), (report.url, link)
                continue
            url, fragment = urldefrag(link)
            targets.setdefault(url, set()).update({fragment} if fragment else set())
    downloads = [url for url in targets if not url.endswith((".html", "/"))]
    assert any(url.endswith(".csv") for url in downloads), downloads
    assert any(url.endswith("datapackage.json") for url in downloads), downloads

    broken = []
    for url, fragments in sorted(targets.items()):
        response = context.request.get(url)
        if response.status != 200:
            broken.append(f"{response.status} {url}")
            continue
        page = url.removeprefix(base) or "index.html"
        if page in reports:
            missing = fragments - reports[page].ids
            broken += [f"no id '{fragment}' in {url}" for fragment in sorted(missing)]
    assert not broken


def test_screenshots_are_saved_for_people_to_look_at(
    audits: tuple[str, dict[str, Audit], BrowserContext],
) -> None:
    for name in ("home.png", "table-page.png", "table-page-phone.png"):
        shot = SCREENSHOTS / name
        assert shot.is_file() and shot.stat().st_size > 10_000, shot


def _strip_text_alternative(html: str, *, role: bool) -> str:
    """The page with the first chart's title, description and their references removed."""
    start = html.index('<svg xmlns="http://www.w3.org/2000/svg" role="img"')
    end = html.index("</svg>", start)
    chart = html[start:end]
    stripped = re.sub(r"<title id=[^>]*>.*?</title>|<desc id=[^>]*>.*?</desc>", "", chart)
    stripped = re.sub(r' aria-(labelledby|describedby)="[^"]*"', "", stripped)
    if role:
        stripped = stripped.replace(' role="img"', "", 1)
    assert stripped != chart
    return html[:start] + stripped + html[end:]


@pytest.mark.parametrize("role", [False, True], ids=["name-removed", "name-and-role-removed"])
def test_the_audit_fails_when_a_chart_loses_its_text_alternative(
    site: Path, browser: Browser, tmp_path: Path, role: bool
) -> None:
    variant = tmp_path / "site"
    shutil.copytree(site, variant)
    page = variant / TABLE_PAGE
    page.write_text(_strip_text_alternative(page.read_text("utf-8"), role=role), "utf-8")
    with serve(variant) as base:
        context = browser.new_context()
        try:
            report = audit_page(context, base, base + TABLE_PAGE)
        finally:
            context.close()
    assert any("svg without" in problem for problem in report.unnamed_graphics), report
    if not role:
        # axe-core's own rule for an image SVG without a name (impact: serious).
        assert any(violation.startswith("svg-img-alt") for violation in report.violations), report


def test_the_audit_fails_when_a_page_loads_something_from_elsewhere(
    site: Path, browser: Browser, tmp_path: Path
) -> None:
    variant = tmp_path / "site"
    shutil.copytree(site, variant)
    page = variant / "index.html"
    html = page.read_text("utf-8")
    remote = '<link rel="stylesheet" href="https://fonts.example.org/font.css">'
    page.write_text(html.replace("</head>", f"{remote}</head>", 1), "utf-8")
    with serve(variant) as base:
        context = browser.new_context()
        try:
            report = audit_page(context, base, base + "index.html")
        finally:
            context.close()
    assert "https://fonts.example.org/font.css" in report.off_site, report
