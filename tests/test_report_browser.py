"""report.html as a reader meets it: opened in headless Chromium (Debian's ``chromium``).

Skipped, with the reason in the summary, where no Chromium can be found (``nox -s browser``
installs it; ``$CHROMIUM`` names another binary). Writes ``screenshot.png``, the first screen,
beside the report it checked: the fixture's, built afresh, or the report folder named by
``$CNN_ZOO_REPORT`` (e.g. ``CNN_ZOO_REPORT=reports/<run> nox -s browser``).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from browser import Chromium, Page, find_chromium

from bench.cli.report import main as report_main

FIXTURE = Path(__file__).parent / "fixtures" / "report"

pytestmark = pytest.mark.browser

# The values of one column of the first table holding ``header``, as the page shows them.
_COLUMN = """(() => {{
  const table = Array.from(document.querySelectorAll("table.data")).find(
    t => Array.from(t.tHead.rows[0].cells).some(c => c.textContent === {header!r}));
  const col = Array.from(table.tHead.rows[0].cells).findIndex(c => c.textContent === {header!r});
  return Array.from(table.tBodies[0].rows).map(r => r.cells[col].textContent);
}})()"""

_CLICK = """(() => {{
  const th = Array.from(document.querySelectorAll("table.data th")).find(
    c => c.textContent === {header!r});
  th.click();
  return th.getAttribute("aria-sort");
}})()"""


def _number(text: str) -> float:
    return float(text.split(" ")[0].replace(",", ""))


@pytest.fixture(scope="module")
def page_checked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium on PATH: `nox -s browser` installs Debian's chromium")
    if os.environ.get("CNN_ZOO_REPORT"):
        out = Path(os.environ["CNN_ZOO_REPORT"])
    else:
        out = tmp_path_factory.mktemp("report")
        assert report_main([str(FIXTURE), "--out", str(out)]) == 0
    with Chromium(binary) as page:
        page.call("Page.navigate", url=(out / "report.html").as_uri())
        page.wait_for("document.readyState === 'complete' && document.body.dataset.ready === '1'")
        found = _read_page(page)
        shot = page.call("Page.captureScreenshot", format="png")
        (out / "screenshot.png").write_bytes(base64.b64decode(shot["data"]))
        found["errors"] = page.errors()
    found["out"] = out
    return found


def _read_page(page: Page) -> dict:
    images = page.evaluate(
        "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])"
    )
    links = page.evaluate(
        "Array.from(document.querySelectorAll('nav.toc a')).map(a => "
        "[a.getAttribute('href'), !!document.getElementById(decodeURIComponent(a.hash.slice(1)))])"
    )
    before = page.evaluate(_COLUMN.format(header="samples/s"))
    first = page.evaluate(_CLICK.format(header="samples/s"))
    ascending = page.evaluate(_COLUMN.format(header="samples/s"))
    second = page.evaluate(_CLICK.format(header="samples/s"))
    descending = page.evaluate(_COLUMN.format(header="samples/s"))
    return {
        "images": images,
        "links": links,
        "sorting": (before, first, ascending, second, descending),
    }


def test_the_page_runs_without_console_errors(page_checked: dict) -> None:
    assert page_checked["errors"] == []


def test_every_figure_loads(page_checked: dict) -> None:
    images = page_checked["images"]
    assert len(images) >= 6
    assert all(done and width > 0 for done, width, _ in images), images


def test_every_contents_link_lands_on_a_heading(page_checked: dict) -> None:
    links = page_checked["links"]
    assert len(links) >= 8
    assert all(ok for _, ok in links), [href for href, ok in links if not ok]


def test_clicking_a_header_sorts_its_column(page_checked: dict) -> None:
    before, first, ascending, second, descending = page_checked["sorting"]
    numbers = [t for t in before if t and t != "error"]
    assert first == "ascending" and second == "descending"
    assert ascending != before and sorted(ascending) == sorted(before)  # same rows, new order
    shown = [_number(t) for t in ascending if t and t != "error"]
    assert shown == sorted(_number(t) for t in numbers)
    assert [_number(t) for t in descending if t and t != "error"] == sorted(shown, reverse=True)
    assert all(not t or t == "error" for t in ascending[len(shown) :])  # then blanks and errors


def test_a_screenshot_of_the_first_screen_is_written_beside_the_report(
    page_checked: dict,
) -> None:
    shot = page_checked["out"] / "screenshot.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (page_checked["out"] / "report.html").is_file()
