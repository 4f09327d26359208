"""The built website, opened in a real browser: headless Chromium driven by selenium.

Serves ``_build/html`` on a free localhost port and opens every page listed in ``_toc.yml`` (so a
new chapter is covered as soon as it is in the table of contents). Each page must have its first
heading in its title, and every image of its content must have loaded; the ledger page must have
one table row per check in ``data/results/cpu/*.json``, each chapter link leading to a page of
the book. A screenshot of the front page is saved to ``_build/screenshots/front.png``.

Needs the site built first (``jupyter-book build .``) and Debian's Chromium and its driver
(``apt-get install -y chromium chromium-driver``). It is the last stage of ``make test``
(``pytest tests -m site``); when selected that way, a missing site or browser fails the test
with the command that fixes it. Without ``-m site`` they only skip it.
"""

from __future__ import annotations

import functools
import http.server
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


def test_ledger_page_has_one_row_per_check(browser, base_url):
    page = "ledger.html"
    assert page in PAGES, "the ledger page is not in _toc.yml"
    checks = verdict.load("cpu")
    _open(browser, urljoin(base_url, page))
    tables = browser.execute_script("""
        return [...document.querySelectorAll('article table')].map(t => ({
            head: [...t.querySelectorAll('thead th')].map(th => th.textContent.trim()),
            rows: [...t.querySelectorAll('tbody tr')].map(tr => tr.textContent.trim()),
            links: [...t.querySelectorAll('tbody a[href]')].map(a => a.href)}));
    """)
    ledger = [t for t in tables if "verdict" in t["head"] and "claim" in t["head"]]
    assert len(ledger) == 1, f"expected one ledger table (with 'claim' and 'verdict' columns), found {len(ledger)}"
    rows, links = ledger[0]["rows"], ledger[0]["links"]
    if len(checks):
        assert len(rows) == len(checks), f"ledger table has {len(rows)} rows; data/results/cpu has {len(checks)} checks"
    else:
        assert len(rows) == 1 and "no chapter" in rows[0], "with no verdicts the ledger says so in a single row"
    pages = {urljoin(base_url, p) for p in PAGES}
    stray = sorted({link.split("#")[0] for link in links} - pages)
    assert not stray, f"ledger links to pages that are not chapters of the book: {stray}"
