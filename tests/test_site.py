"""The built website, opened in a real browser: headless Chromium driven by selenium.

Serves ``_build/html`` on a free localhost port and opens every page listed in ``_toc.yml`` (so a
new chapter is covered as soon as it is in the table of contents). Each page must have its first
heading in its title, and every image of its content must have loaded; the ledger page must have
one row per part of the paper's claims and, folded under each chapter, one per check in
``data/results/cpu/*.json``, each chapter link leading to a page of the book. Every page is read
as a reader would: a full-page screenshot under ``_build/screenshots/``, no table cell cut short,
no machine path, a chapter's verdict box near its top, and every figure as wide as the content
column. A screenshot of the front page is saved to ``_build/screenshots/front.png``.

Needs the site built first (``jupyter-book build .``) and Debian's Chromium and its driver
(``apt-get install -y chromium chromium-driver``). It is the last stage of ``make test``
(``pytest tests -m site``); when selected that way, a missing site or browser fails the test
with the command that fixes it. Without ``-m site`` they only skip it.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import yaml

from lib import verdict

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "_build" / "html"
SCREENSHOT = REPO / "_build" / "screenshots" / "front.png"
BROWSER_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--window-size=1280,1000")
LOAD_TIMEOUT = 20  # seconds for a page and its images

pytestmark = pytest.mark.site


def toc_pages(toc: Path = REPO / "_toc.yml") -> list[str]:
    """The HTML path of every ``file`` entry of the table of contents (root first, in reading order)."""
    doc = yaml.safe_load(toc.read_text())
    files = [doc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in doc.items() if k != "root"})
    return [str(Path(f).with_suffix("")) + ".html" for f in files]


PAGES = toc_pages()
ROOT_PAGE = PAGES[0]


def _unavailable(request, message: str):
    """Fail when the ``site`` stage was asked for (``-m site``); otherwise only skip."""
    if "site" in (request.config.getoption("markexpr") or ""):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def base_url(request):
    """``_build/html`` served on a free localhost port by a background thread."""
    if not (SITE / ROOT_PAGE).is_file():
        _unavailable(request, f"no built site at {SITE} (no {ROOT_PAGE}): run `jupyter-book build .` first "
                              "(or `make book`)")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(SITE)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(request):
    """Headless Debian Chromium through its chromedriver (no browser download, no Selenium Manager)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        _unavailable(request, "Chromium and its driver are not installed: `apt-get install -y chromium chromium-driver` "
                              "(as root; `apt-get update` first). .ci/run installs them.")
    try:
        from selenium import webdriver
    except ImportError:
        _unavailable(request, "selenium is not installed in this environment: `pip install -e .` (or `make venv`)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in BROWSER_ARGS:
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_page_load_timeout(LOAD_TIMEOUT)
    yield driver
    driver.quit()


def _open(browser, url: str):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, LOAD_TIMEOUT).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _images(browser) -> list[dict]:
    """Every image in the page's content, once each has finished loading (or failed to)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    script = """
        const imgs = [...document.querySelectorAll('main img')];
        imgs.forEach(img => { if (!img.complete) img.scrollIntoView(); });
        return imgs.map(img => ({src: img.currentSrc || img.src, complete: img.complete,
                                 width: img.naturalWidth}));
    """
    try:
        WebDriverWait(browser, LOAD_TIMEOUT).until(lambda d: all(i["complete"] for i in d.execute_script(script)))
    except TimeoutException:
        pass  # reported below, image by image
    return browser.execute_script(script)


@pytest.mark.parametrize("page", PAGES)
def test_page_has_its_title_and_its_figures_load(browser, base_url, page):
    assert (SITE / page).is_file(), f"{page} is in _toc.yml but not in {SITE}: rebuild with `jupyter-book build .`"
    _open(browser, urljoin(base_url, page))
    heading = browser.execute_script("""
        const h = document.querySelector('article h1') || document.querySelector('main h1');
        if (!h) return null;
        const c = h.cloneNode(true);
        c.querySelectorAll('.headerlink').forEach(a => a.remove());
        return c.textContent.trim();
    """)
    title = browser.title.strip()
    assert heading, f"{page}: no <h1> in its content"
    assert title and heading in title, f"{page}: title {title!r} does not contain its heading {heading!r}"
    broken = [i["src"] for i in _images(browser) if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"{page}: images that did not load: {broken}"


def test_front_page_redirects_to_the_root_page_and_is_screenshotted(browser, base_url):
    """``index.html`` leads to the root page; its screenshot is ``_build/screenshots/front.png``."""
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, base_url)
    WebDriverWait(browser, LOAD_TIMEOUT).until(lambda d: urlparse(d.current_url).path.endswith("/" + ROOT_PAGE))
    _open(browser, browser.current_url)  # the redirect's target, fully loaded
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT)), "the screenshot was not written"
    assert SCREENSHOT.stat().st_size > 10_000, f"{SCREENSHOT} is suspiciously small"


def test_ledger_page_has_one_row_per_part_and_every_check_underneath(browser, base_url):
    page = "ledger.html"
    assert page in PAGES, "the ledger page is not in _toc.yml"
    checks, parts = verdict.load("cpu"), verdict.load_parts("cpu")
    _open(browser, urljoin(base_url, page))
    tables = browser.execute_script("""
        return [...document.querySelectorAll('article table')].map(t => ({
            head: [...t.querySelectorAll('thead th')].map(th => th.textContent.trim()),
            rows: [...t.querySelectorAll('tbody tr')].map(tr => tr.textContent.trim()),
            links: [...t.querySelectorAll('tbody a[href]')].map(a => a.href)}));
    """)
    by_part = [t for t in tables if "verdict" in t["head"] and any(h.endswith("claim, in parts") for h in t["head"])]
    by_check = [t for t in tables if "verdict" in t["head"] and "check" in t["head"]]
    assert len(by_part) == 1, f"expected one table of the claims' parts, found {len(by_part)}"
    assert len(by_part[0]["rows"]) == len(parts), f"{len(by_part[0]['rows'])} part rows; the verdict files have {len(parts)}"
    assert sum(len(t["rows"]) for t in by_check) == len(checks), "the chapters' check tables miss or repeat checks"
    pages = {urljoin(base_url, p) for p in PAGES}
    stray = sorted({link.split("#")[0] for link in by_part[0]["links"]} - pages)
    assert not stray, f"ledger links to pages that are not chapters of the book: {stray}"


# ------------------------------------------------------------------ what a reader sees on every page

SHOTS = REPO / "_build" / "screenshots"
MACHINE_PATH = re.compile(r"(?<![\w.])(/home/|/Users/|/work/|/root/|/tmp/|[A-Z]:\\Users)")
VERDICT_PAGES = [p for p in PAGES if re.match(r"chapters/0[1-9]_", p)]  # the chapters that end in a verdict
TOP = 1200  # px from the top of the page within which a chapter's verdict box must start (below the title)


@pytest.mark.parametrize("page", PAGES)
def test_page_reads_at_a_glance(browser, base_url, page):
    """Full-page screenshot; no truncated table cell; no machine path; the verdict box near the top of a
    chapter; every figure at least as wide as the content column (at a 1280-px window)."""
    _open(browser, urljoin(base_url, page))
    _images(browser)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(max(height, 1000), 30000))
    try:
        shot = SHOTS / (page.replace("/", "_").removesuffix(".html") + ".png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(shot)), f"{page}: the screenshot was not written"
        cut = browser.execute_script("""
            return [...document.querySelectorAll('article td, article th')].map(c => c.textContent.trim())
                   .filter(t => t.endsWith('…') || t.endsWith('...'));""")
        assert not cut, f"{page}: table cells cut short: {cut[:5]}"
        found = MACHINE_PATH.findall(browser.page_source)
        assert not found, f"{page}: machine paths in the HTML: {sorted(set(found))}"
        if page in VERDICT_PAGES:
            top = browser.execute_script("""
                const box = document.querySelector('article .verdict-glance');
                return box ? box.getBoundingClientRect().top + window.scrollY : null;""")
            assert top is not None, f"{page}: no verdict box (.verdict-glance)"
            assert top < TOP, f"{page}: the verdict box starts {top:.0f} px down the page (at most {TOP})"
        narrow = browser.execute_script("""
            const article = document.querySelector('article'), style = getComputedStyle(article);
            const column = article.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
            const inner = el => { const s = getComputedStyle(el);  // a dropdown's figure fills the dropdown
                return el.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight); };
            const width = img => { const card = img.closest('.sd-card-body'); return card ? inner(card) : column; };
            return [...document.querySelectorAll('article figure img, article .cell_output img')]
                   .filter(img => img.getBoundingClientRect().width < 0.95 * width(img))
                   .map(img => [img.getAttribute('src'), Math.round(img.getBoundingClientRect().width), Math.round(width(img))]);""")
        assert not narrow, f"{page}: figures narrower than the content column (src, px, column px): {narrow}"
    finally:
        browser.set_window_size(1280, 1000)
