"""The built site in a real browser: Debian's Chromium driven by Playwright, with axe-core.

The site is built once from the repository's committed package and served on 127.0.0.1.
Every page is opened on a desktop screen and on a 390 px phone screen and audited: console
errors, failed or off-site requests, axe-core violations of every rule axe has (WCAG 2.2
A, AA and AAA, best practices, experimental rules; serious and critical), charts or images
without a text alternative, and content wider than the screen. Then every internal link and
download found on any page is fetched. A screenshot of every page at both widths goes to
``test-artifacts/screenshots/`` for people to look at. The site is also opened from disk
(it says how to search), searched (snippets are sentences), and read as a dataset search
engine reads it (JSON-LD). A last test removes a chart's text alternative and checks that
the audit notices.

These tests are never skipped: without Chromium they fail and say how to install it.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
# Every rule axe-core has: WCAG 2.x at levels A, AA and AAA, best practices and the
# experimental rules (which axe leaves out unless asked), by the tags that select them.
AXE_TAGS = [
    "wcag2a",
    "wcag2aa",
    "wcag2aaa",
    "wcag21a",
    "wcag21aa",
    "wcag22aa",
    "best-practice",
    "experimental",
]
BLOCKING = {"serious", "critical"}
WIDTHS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
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
    too_wide: int = 0  # how far the page is wider than the screen, in CSS pixels


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
        result.too_wide = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            # JPEG: several times faster to encode than PNG for long pages.
            page.screenshot(path=str(screenshot), full_page=True, type="jpeg", quality=75)
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


def _audit_every_page(width: str, pages: list[str], base: str) -> dict[str, Audit]:
    """Every page at one width, in a browser of its own (so both widths run at once, each
    in its own thread, as Playwright's synchronous API allows)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=WIDTHS[width], is_mobile=width == "phone")
        try:
            return {
                f"{width}:{page}": audit_page(
                    context,
                    base,
                    base + page,
                    SCREENSHOTS / width / (page.removesuffix(".html").replace("/", "-") + ".jpg"),
                )
                for page in pages
            }
        finally:
            context.close()
            browser.close()


@pytest.fixture(scope="module")
def audits(site: Path, browser: Browser) -> Iterator[tuple[str, dict[str, Audit], BrowserContext]]:
    """Every page of the site, audited on a desktop screen and on a phone screen (keys
    ``desktop:PAGE`` and ``phone:PAGE``), each with its screenshot; also the base URL and a
    browser context to fetch links with."""
    pages = site_pages(site)
    assert len(pages) >= 20, pages
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    with serve(site) as base, ThreadPoolExecutor(max_workers=len(WIDTHS)) as pool:
        futures = [pool.submit(_audit_every_page, width, pages, base) for width in WIDTHS]
        reports = {key: audit for future in futures for key, audit in future.result().items()}
        context = browser.new_context()
        try:
            yield base, reports, context
        finally:
            context.close()


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


def test_no_serious_or_critical_accessibility_violations_at_either_width(
    audits: tuple[str, dict[str, Audit], BrowserContext],
) -> None:
    _, reports, _ = audits
    assert {key.split(":")[0] for key in reports} == set(WIDTHS)
    violations = {page: report.violations for page, report in reports.items() if report.violations}
    assert not violations


def test_no_page_is_wider_than_the_screen(
    audits: tuple[str, dict[str, Audit], BrowserContext],
) -> None:
    """On a phone, charts and tables fit: nothing scrolls sideways, nothing is cut off."""
    _, reports, _ = audits
    wide = {page: report.too_wide for page, report in reports.items() if report.too_wide > 0}
    assert not wide


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
        assert 'class="publisher-chart publisher-chart--wide"' in html, page
        assert 'class="publisher-chart publisher-chart--narrow"' in html, page
    tables = sorted((site / GENERATED_DIR / "tables").glob("*.html"))
    charted = [page for page in tables if "publisher-chart--wide" in page.read_text("utf-8")]
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
        page = "desktop:" + (url.removeprefix(base) or "index.html")
        if page in reports:
            missing = fragments - reports[page].ids
            broken += [f"no id '{fragment}' in {url}" for fragment in sorted(missing)]
    assert not broken


def test_screenshots_of_every_page_at_both_widths(
    audits: tuple[str, dict[str, Audit], BrowserContext], site: Path
) -> None:
    for width in WIDTHS:
        shots = sorted((SCREENSHOTS / width).glob("*.jpg"))
        assert len(shots) == len(site_pages(site)), width
        assert all(shot.stat().st_size > 5_000 for shot in shots), width


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


def test_opened_from_disk_the_site_says_how_to_search(site: Path, browser: Browser) -> None:
    """A browser does not start the theme's search on file: pages: each page says so and
    how to search instead, with no error and nothing fetched."""
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("requestfailed", lambda request: problems.append(request.url))
    try:
        page.goto((site / TABLE_PAGE).as_uri(), wait_until="load")
        note = page.locator(".publisher-offline")
        assert note.is_visible()
        assert "python3 -m http.server" in note.inner_text()
    finally:
        context.close()
    assert not problems


def test_served_the_note_about_search_stays_hidden_and_search_finds_sentences(
    site: Path, browser: Browser
) -> None:
    with serve(site) as base:
        context = browser.new_context(viewport=WIDTHS["desktop"])
        page = context.new_page()
        try:
            page.goto(base + "index.html", wait_until="load")
            assert not page.locator(".publisher-offline").is_visible()
            # A query typed before the search worker has loaded its index is not run.
            page.wait_for_function(
                "!document.querySelector('.md-search-result__meta').textContent"
                ".includes('Initializing')",
                timeout=4 * PAGE_TIMEOUT_MS,
            )
            # Typed as a reader types (the theme reacts to key presses, not to a filled value).
            page.click("input.md-search__input")
            page.keyboard.type("environment")
            page.wait_for_selector(".md-search-result__item", timeout=4 * PAGE_TIMEOUT_MS)
            snippets = page.locator(".md-search-result__item").all_inner_texts()
        finally:
            context.close()
    assert snippets
    # Chart legends and tick labels are not in the index: snippets are sentences.
    assert not [text for text in snippets if "Estimate" in text and "95% interval" in text]
    assert any("environment" in text.lower() and ". " in text for text in snippets)


def test_the_search_index_holds_no_chart_words(site: Path) -> None:
    index = json.loads((site / "search" / "search_index.json").read_text("utf-8"))
    texts = [doc["text"] for doc in index["docs"]]
    assert texts
    assert not [text for text in texts if "Bar chart of" in text or "Estimate 95% interval" in text]
    assert not [text for text in texts if "@context" in text]  # nor the JSON-LD


def test_the_release_page_describes_the_dataset_for_search_engines(
    site: Path, browser: Browser
) -> None:
    package = json.loads((REPO / "datapackage" / "datapackage.json").read_text("utf-8"))
    with serve(site) as base:
        context = browser.new_context()
        page = context.new_page()
        try:
            page.goto(f"{base}{GENERATED_DIR}/index.html", wait_until="load")
            scripts = page.eval_on_selector_all(
                'script[type="application/ld+json"]', "els => els.map(el => el.textContent)"
            )
        finally:
            context.close()
    (dataset,) = (json.loads(text) for text in scripts)
    assert dataset["@context"] == "https://schema.org" and dataset["@type"] == "Dataset"
    assert dataset["name"] == package["title"] and dataset["version"] == package["version"]
    assert dataset["license"] == package["licenses"][0]["path"]
    assert dataset["url"] == package["homepage"]
    tables = {r["path"] for r in package["resources"] if r.get("format") == "csv"}
    downloads = {item["contentUrl"] for item in dataset["distribution"]}
    assert tables <= downloads
    assert all((site / GENERATED_DIR / url).is_file() for url in downloads)


def test_every_page_has_its_own_title_and_description(site: Path) -> None:
    titles: dict[str, str] = {}
    for page in site_pages(site):
        if page == "404.html":
            continue
        html = (site / page).read_text("utf-8")
        title = re.search(r"<title>(.*?)</title>", html, re.S)
        description = re.search(r'<meta name="description" content="([^"]+)"', html)
        assert title is not None and description is not None, page
        titles[page] = title.group(1)
    repeated = {title for title in titles.values() if list(titles.values()).count(title) > 1}
    assert not repeated


def test_table_pages_are_in_the_navigation_with_previous_and_next(site: Path) -> None:
    tables = sorted((site / GENERATED_DIR / "tables").glob("*.html"))
    home = (site / "index.html").read_text("utf-8")
    for page in tables:
        html = page.read_text("utf-8")
        assert "md-footer__link--prev" in html and "md-footer__link--next" in html, page
        assert f"{GENERATED_DIR}/tables/{page.name}" in home, page  # in the navigation
    # The public release and the release manager's pages are separate tabs.
    tabs = re.findall(r'class="md-tabs__link"[^>]*>\s*([^<]+?)\s*<', home)
    assert tabs[:3] == ["Home", "Release", "For release managers"], tabs
