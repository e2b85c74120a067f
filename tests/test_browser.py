"""The learner experience in JupyterLab, driven in headless Chromium (Debian's package) by Playwright.

One JupyterLab server for the session, started as `make lab` starts it (the virtual environment's
`jupyter lab` with its installed settings) on a free localhost port with a token, serving a
temporary copy of notebooks/. Per chapter: open the learner notebook, run every cell the way a
learner does (Shift+Enter, cell by cell, past the unwritten stubs), and check what is on screen;
then save, restart the kernel, reload the page and check the reopened notebook. Chapter 01 also
gets an answer typed in (right, then wrong) and the Validate button, untouched and completed.

Run alone with `.venv/bin/pytest -m browser`. Screenshots go to the folder printed at the start
(BROWSER_SCREENSHOTS, default <tmp>/dl-course-browser). Without /usr/bin/chromium the tests skip,
except in CI (CI=true), where a missing browser fails.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from conftest import answer_sources, learner_notebook

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CHAPTERS = sorted(p.name for p in NOTEBOOKS.iterdir() if (p / f"{p.name}.ipynb").is_file())
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(os.environ.get("BROWSER_SCREENSHOTS") or Path(tempfile.gettempdir()) / "dl-course-browser")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

CELL_TIMEOUT_MS = 180_000  # one cell, on a busy 2-core machine
STUB_MESSAGE = re.compile(r"^NotImplementedError: [\w.]+ is not written yet\.\n"
                          r"Write it in its answer cell \(In \[\d+\], the cell that defines [\w.]+\)")
WIDGET_ERROR = "Error displaying widget"


def _unavailable(reason):
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run here; .ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"{CHROMIUM} is missing: `apt-get install chromium` (Debian) runs the browser tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: make env (the test extra) installs it")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser tests: screenshots in {SCREENSHOTS}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def lab(tmp_path_factory, browser):
    """A JupyterLab server as `make lab` starts it, serving a temporary copy of notebooks/."""
    config = Path(sys.prefix) / "etc" / "jupyter"
    for name in ("jupyter_server_config.py", "nbgrader_config.py"):
        assert (config / name).is_file(), f"{config / name} is missing: run `make env` first"
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    shutil.copytree(NOTEBOOKS, root)
    home = base / "home"  # the learner's own Jupyter folders start empty: only the course's settings count
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"))
    port, token = _free_port(), os.urandom(12).hex()
    command = [str(Path(sys.prefix) / "bin" / "jupyter"), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]
    if os.geteuid() == 0:
        command.append("--allow-root")  # as the Makefile does
    log = open(base / "lab.log", "w")
    server = subprocess.Popen(command + [str(root)], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5)
            break
        except OSError:
            assert server.poll() is None, f"JupyterLab exited: {(base / 'lab.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, "JupyterLab did not answer within 120 s"
            time.sleep(0.3)
    yield {"url": url, "token": token, "root": root, "log": base / "lab.log"}
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


class Console:
    """The browser console's errors (and uncaught page errors) while a page is open."""

    # A progress bar made with leave=False closes its widget as soon as its loop ends; on a busy machine the
    # front end can ask for the model after that and logs "widget model not found" without showing anything
    # (what a learner would see, "Error displaying widget", is asserted on the page itself).
    BENIGN = ("Error: widget model not found",)

    def __init__(self, page):
        self.errors = []
        self.benign = 0
        page.on("console", self._on_console)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def _on_console(self, message):
        if message.type != "error":
            return
        if message.text.startswith(self.BENIGN):
            self.benign += 1
        else:
            self.errors.append(f"console.{message.type}: {message.text}")

    def assert_clean(self):
        assert not self.errors, "the browser console has errors:\n" + "\n".join(self.errors[:20])


def new_page(context):
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.console = Console(page)
    return page


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield new_page(context)
    context.close()


def copy_chapter(lab, chapter, as_name):
    """A separate copy of a chapter folder in the server's root, for a test that changes it."""
    target = lab["root"] / as_name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(NOTEBOOKS / chapter, target)
    return target


def shot(page, name):
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


# --- driving JupyterLab -------------------------------------------------------------------------

CELLS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell"


def open_notebook(page, lab, path, reload=False):
    """Open ``path`` (relative to the server's root) and wait until every cell is attached and the kernel idle."""
    if reload:
        page.reload()
    else:
        page.goto(f"{lab['url']}/lab/tree/{path}?reset&token={lab['token']}")
    count = len(nbformat.read(str(lab["root"] / path), as_version=4).cells)
    # JupyterLab attaches the cells below the first screen when the browser is idle.
    page.wait_for_function("([sel, n]) => document.querySelectorAll(sel).length === n", arg=[CELLS, count])
    wait_for_kernel(page)
    return count


def wait_for_kernel(page, timeout=120_000):
    """Until the notebook's kernel is started and idle (the toolbar's kernel name and status)."""
    page.wait_for_function(
        """() => {
            const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
            if (!panel) return false;
            const name = panel.querySelector('[data-jp-item-name="kernelName"]');
            const status = panel.querySelector('.jp-Notebook-ExecutionIndicator');
            return name && !/No Kernel/.test(name.textContent) && status && status.dataset.status === 'idle';
        }""", timeout=timeout)


def cell_index(page, text):
    """The index of the first cell whose source contains ``text``."""
    index = page.evaluate(
        """([sel, text]) => [...document.querySelectorAll(sel)].findIndex(
               c => (c.querySelector('.jp-InputArea-editor, .jp-MarkdownOutput') || c).innerText.includes(text))""",
        [CELLS, text])
    assert index >= 0, f"no cell contains {text!r}"
    return index


def select_cell(page, index):
    cell = page.locator(CELLS).nth(index)
    cell.scroll_into_view_if_needed()
    cell.locator(".jp-InputPrompt").click()  # the prompt area: selects the cell, command mode


def run_cell(page, index, last=False):
    """Shift+Enter on the selected cell ``index`` (Ctrl+Enter on the last one), then wait for it."""
    code = "jp-CodeCell" in (page.locator(CELLS).nth(index).get_attribute("class") or "")
    page.keyboard.press("Control+Enter" if last else "Shift+Enter")
    if code:
        page.wait_for_function(
            """([sel, i]) => {
                const prompt = document.querySelectorAll(sel)[i].querySelector('.jp-InputPrompt');
                return prompt && /\\[\\d+\\]/.test(prompt.textContent);
            }""", arg=[CELLS, index], timeout=CELL_TIMEOUT_MS)


def run_every_cell(page, until=None):
    """Run the notebook top to bottom like a learner: each cell in turn, on past the errors
    (or until ``until()`` holds)."""
    count = page.locator(CELLS).count()
    select_cell(page, 0)
    for index in range(count):
        run_cell(page, index, last=index == count - 1)
        if until is not None and until():
            break
    wait_for_kernel(page)
    return count


def explorer_with_a_slider(page):
    return page.locator(f"{CELLS} .widget-interact").filter(has=page.locator(".widget-output img")).filter(
        has=page.locator(".noUi-handle")).first


def move_a_slider(page):
    """Drag the first explorer's first slider and wait until its figure is redrawn."""
    explorer = explorer_with_a_slider(page)
    explorer.scroll_into_view_if_needed()
    before = explorer.locator(".widget-output img").first.get_attribute("src")
    slider = explorer.locator(".noUi-target").first
    track, box = slider.bounding_box(), slider.locator(".noUi-handle").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    # A third of the track towards its farther end: the value surely changes.
    to = x + track["width"] / 3 if x < track["x"] + track["width"] / 2 else x - track["width"] / 3
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(to, y, steps=5)
    page.mouse.up()
    try:
        page.wait_for_function(
            "([el, before]) => { const img = el.querySelector('.widget-output img'); return img && img.src !== before; }",
            arg=[explorer.element_handle(), before], timeout=CELL_TIMEOUT_MS)
    except Exception:
        shot(page, "slider-not-redrawn")
        raise


def outputs(page):
    """[(mime type, text)] of every output on the page."""
    return page.evaluate(
        """(sel) => [...document.querySelectorAll(sel + ' .jp-OutputArea-output')].map(
               o => [o.dataset.mimeType || '', o.textContent]) """, CELLS)


def error_texts(page):
    return [text for mime, text in outputs(page) if mime == "application/vnd.jupyter.stderr"]


def save(page):
    with page.expect_response(lambda r: r.request.method == "PUT" and "/api/contents/" in r.url) as response:
        page.keyboard.press("Control+s")
    assert response.value.ok, f"saving failed: {response.value.status}"


def restart_kernel(page):
    page.locator('jp-button[data-command="notebook:restart-kernel"]').first.click()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    page.wait_for_selector(".jp-Dialog", state="detached")
    wait_for_kernel(page)


def assert_no_widget_errors(page):
    texts = "\n".join(text for _, text in outputs(page))
    assert WIDGET_ERROR not in page.text_content("body"), "a widget failed to display"
    assert "interactive(children" not in texts, "an explorer shows as text (interactive(...)), not as widgets"


# --- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_runs_in_the_browser_and_survives_a_reopen(page, lab, chapter):
    started = time.monotonic()
    path = f"{chapter}/{chapter}.ipynb"
    cells = open_notebook(page, lab, path)
    run_every_cell(page)
    shot(page, f"{chapter}-1-ran")

    # Math renders (MathJax), without MathJax errors.
    assert page.locator(f"{CELLS} .jp-MarkdownOutput mjx-container").count() > 0, "no rendered math"
    assert page.locator(f"{CELLS} mjx-merror").count() == 0, "MathJax could not typeset some math"

    # Every explorer renders as widgets; the only errors are the unwritten stubs' own message.
    assert_no_widget_errors(page)
    assert page.locator(f"{CELLS} .widget-interact").count() > 0, "no explorer rendered as widgets"
    errors = error_texts(page)
    assert errors, "an untouched notebook should stop at its unwritten stubs"
    others = [text for text in errors if not STUB_MESSAGE.match(text)]
    assert not others, "errors other than the stubs' message:\n" + "\n---\n".join(others[:5])
    assert not any("Traceback" in text or "site-packages" in text for text in errors)

    # Moving a slider redraws an explorer's figure. Where every explorer needs a function the learner
    # has not written yet, a completed copy is run from the top until its first explorer is up.
    slider_page = page
    if not explorer_with_a_slider(page).count():
        slider_page = new_page(page.context)
        folder = copy_chapter(lab, chapter, f"slider-{chapter}")
        nbformat.write(learner_notebook(folder / f"{chapter}.ipynb", answer_sources(chapter)),
                       str(folder / f"{chapter}.ipynb"))
        open_notebook(slider_page, lab, f"slider-{chapter}/{chapter}.ipynb")
        run_every_cell(slider_page, until=lambda: explorer_with_a_slider(slider_page).count() > 0)
    move_a_slider(slider_page)
    shot(slider_page, f"{chapter}-2-slider-moved")
    if slider_page is not page:
        slider_page.console.assert_clean()
        slider_page.close()

    # Saved, kernel restarted, page reloaded: no widget errors, a line saying how to get the sliders back.
    save(page)
    restart_kernel(page)
    assert open_notebook(page, lab, path, reload=True) == cells
    shot(page, f"{chapter}-3-reopened")
    assert_no_widget_errors(page)
    texts = [text for _, text in outputs(page)]
    assert any("run this cell to bring them back" in text for text in texts), "the reopened explorers say nothing"
    page.get_by_text("run this cell to bring them back").first.scroll_into_view_if_needed()
    shot(page, f"{chapter}-4-reopened-explorer")

    # No Assignments panel errors without an exchange, and Validate is there.
    body = page.text_content("body")
    assert "Error fetching courses" not in body and "exchange directory does not exist" not in body
    assert page.get_by_role("button", name="Validate").count() == 1
    page.console.assert_clean()
    print(f"{chapter}: {cells} cells, {time.monotonic() - started:.0f} s in the browser")


CORRECT_XOR_FEATURES = """def xor_features(X):
    return np.column_stack([X[:, 0], X[:, 1], X[:, 0] * X[:, 1]])
"""
WRONG_XOR_FEATURES = """def xor_features(X):
    return X.copy()
"""


def type_answer(page, index, source):
    editor = page.locator(CELLS).nth(index).locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(source)  # as pasted: no auto-indent or bracket closing
    page.keyboard.press("Escape")


def test_ch01_answer_cell_shows_the_check_and_its_hint(page, lab):
    chapter = "01_mlp_xor"
    copy_chapter(lab, chapter, "answer-01")
    open_notebook(page, lab, f"answer-01/{chapter}.ipynb")
    select_cell(page, cell_index(page, "from dlcourse import"))
    run_cell(page, cell_index(page, "from dlcourse import"))
    answer = cell_index(page, "def xor_features(X):")
    check = answer + 1
    check_output = page.locator(CELLS).nth(check).locator(".jp-OutputArea")

    type_answer(page, answer, CORRECT_XOR_FEATURES)
    run_cell(page, answer)
    run_cell(page, check)
    assert "\u2713 xor_features: visible checks passed." in check_output.inner_text()
    shot(page, "01-answer-correct")

    select_cell(page, answer)
    type_answer(page, answer, WRONG_XOR_FEATURES)
    run_cell(page, answer)
    run_cell(page, check)
    text = check_output.inner_text()
    shot(page, "01-answer-wrong")
    assert "CheckFailed: xor_features: the features has shape (3, 2), expected (3, 3)." in text
    assert "Hint: return the columns [x1, x2, x1 * x2] side by side" in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 3 and lines[2].lstrip().startswith("(In ["), f"more than one line of where:\n{text}"
    assert "checks.py" not in text and "Traceback" not in text
    page.console.assert_clean()


def validate(page):
    page.get_by_role("button", name="Validate").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=300_000)
    text = dialog.inner_text()
    return text


def test_validate_names_the_unwritten_functions_then_says_success(page, lab):
    chapter = "01_mlp_xor"
    copy_chapter(lab, chapter, "validate-untouched")
    open_notebook(page, lab, f"validate-untouched/{chapter}.ipynb")
    text = validate(page)
    shot(page, "01-validate-untouched")
    assert "The following cell failed" in text, text
    for function in ("xor_features", "sigmoid", "DataLoader"):  # each unwritten function is named
        assert f"{function}: not written yet (its answer cell still raises" in text, text
    assert "Traceback" not in text, text
    page.locator(".jp-Dialog .jp-mod-accept, .jp-Dialog button").first.click()

    folder = copy_chapter(lab, chapter, "validate-completed")
    completed = learner_notebook(folder / f"{chapter}.ipynb", answer_sources(chapter))
    nbformat.write(completed, str(folder / f"{chapter}.ipynb"))
    open_notebook(page, lab, f"validate-completed/{chapter}.ipynb")
    text = validate(page)
    shot(page, "01-validate-completed")
    assert "Success" in text and "failed" not in text, text
    page.console.assert_clean()


def test_no_assignments_panel_without_an_exchange(page, lab):
    """A self-learner has no nbgrader exchange: no Assignments panel (and none of its errors); Validate stays."""
    chapter = CHAPTERS[0]
    open_notebook(page, lab, f"{chapter}/{chapter}.ipynb")
    page.get_by_text("Nbgrader", exact=True).click()
    menu = page.locator(".lm-Menu").last
    menu.wait_for()
    text = menu.inner_text()
    shot(page, "nbgrader-menu")
    page.keyboard.press("Escape")
    assert "Assignment List" not in text, f"the Nbgrader menu offers the Assignments panel: {text!r}"
    body = page.text_content("body")
    assert "Error fetching courses" not in body and "exchange directory does not exist" not in body
    assert page.get_by_role("button", name="Validate").count() == 1
    page.console.assert_clean()
