"""The learner experience in JupyterLab, driven in headless Chromium (Debian's package) by Playwright.

One JupyterLab server for the session, started as `make lab` starts it (the virtual environment's
`jupyter lab` with its installed settings) on a free localhost port with a token, serving a
temporary copy of notebooks/. Per chapter: open the learner notebook, run every cell the way a
learner does (Shift+Enter, cell by cell, past the unwritten stubs), and check what is on screen;
then save, restart the kernel, reload the page and check the reopened notebook. Per chapter again,
a completed copy (its cells' small settings, COURSE_QUICK=1): every explorer on the page gets one
slider dragged, and its figure must end up drawn for the value the slider shows (the caption and
PNG record of dlcourse.runtime.interact); no cell may print a stray repr. Chapter 01 also gets an
answer typed in (right, then wrong) and the Validate button, untouched and completed.

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


EXPLORERS = f"{CELLS} .widget-interact"
# What no cell may print: a function or object repr (an explorer returning what it made), a figure's repr, an
# explorer that did not become widgets.
STRAY_REPR = re.compile(r"<function [^>]*>|<[\w.]+ object at 0x[0-9a-fA-F]+>|<Figure size [^>]*>|interactive\(children")
EXPLORER_PNG_KEY = "dlcourse-explorer"  # dlcourse.runtime.EXPLORER_PNG_KEY: what an explorer's figure says


def figure_record(src):
    """{"caption", "values"} that dlcourse.runtime.interact wrote into an explorer's PNG (data: URL), or None."""
    import base64
    import struct

    if not src or not src.startswith("data:image/png;base64,"):
        return None
    png = base64.b64decode(src.split(",", 1)[1])
    position = 8
    while position + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[position:position + 8])
        data = png[position + 8:position + 8 + length]
        if kind in (b"tEXt", b"iTXt"):
            key, _, value = data.partition(b"\0")
            if kind == b"iTXt":  # compression flag, method, language, translated keyword, then the text
                value = value[2:].split(b"\0", 2)[-1]
            if key.decode("latin-1") == EXPLORER_PNG_KEY:
                return json.loads(value.decode("latin-1" if kind == b"tEXt" else "utf-8"))
        position += 12 + length
    return None


def explorer_state(explorer):
    """What an explorer shows: its sliders' labels and readouts, and the records of the figures in its output."""
    return explorer.evaluate(
        """(el) => ({
            sliders: [...el.querySelectorAll('.widget-slider')].map(s => {
                const handle = s.querySelector('.noUi-handle');
                const range = handle ? [handle.getAttribute('aria-valuemin'), handle.getAttribute('aria-valuemax')] : [];
                return {label: (s.querySelector('.widget-label') || {}).textContent || '',
                        readout: ((s.querySelector('.widget-readout') || {}).textContent || '').trim(),
                        movable: range.length === 2 && range[0] !== range[1]};
            }),
            images: [...el.querySelectorAll('.widget-output img')].map(img => img.src),
            text: [...el.querySelectorAll('.widget-output .jp-OutputArea-output')].map(o => o.textContent).join('\\n'),
        })""")


def _decimals(text):
    mantissa = text.lower().split("e")[0]
    return len(mantissa.split(".")[1]) if "." in mantissa else 0


def shows_value(caption, label, readout):
    """Does ``caption`` (the text under a figure) give the control ``label`` the value its readout shows?"""
    item = next((part for part in caption.split("   ") if part.startswith(f"{label} = ")), None)
    if item is None:
        return False
    # ipywidgets' readouts (d3-format) write negative numbers with the minus sign U+2212
    drawn, readout = item[len(label) + 3:].replace("\u2212", "-"), readout.replace("\u2212", "-")
    try:
        a, b = float(drawn), float(readout)
    except ValueError:
        return drawn == readout
    # the two sides format alike (the control's readout format), up to trailing zeros
    return abs(a - b) <= 0.5 * 10 ** -min(_decimals(drawn), _decimals(readout)) + 1e-12 * abs(b)


def drag_slider(page, explorer, index):
    """Drag the explorer's slider ``index`` to near its farther end (so even a slider of two options changes)."""
    slider = explorer.locator(".widget-slider").nth(index)
    slider.scroll_into_view_if_needed()
    target = slider.locator(".noUi-target").first
    track, box = target.bounding_box(), target.locator(".noUi-handle").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    left, right = track["x"] + 0.1 * track["width"], track["x"] + 0.9 * track["width"]
    to = right if x < track["x"] + track["width"] / 2 else left
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(to, y, steps=5)  # passes through values on the way, as a hand does
    page.mouse.up()


def check_explorer_follows_its_slider(page, explorer, name):
    """Move one slider of an explorer; its figure must end up drawn for (and captioned with) the final value."""
    explorer.scroll_into_view_if_needed()
    state = explorer_state(explorer)
    assert state["images"], f"{name}: the explorer shows no figure:\n{state['text'][:500]}"
    records = [figure_record(src) for src in state["images"]]
    assert all(records), (f"{name}: a figure without the caption that dlcourse.runtime.interact draws (every "
                          "explorer puts up its sliders through it)")
    for slider in state["sliders"]:
        assert shows_value(records[0]["caption"], slider["label"], slider["readout"]), \
            f"{name}: the figure says {records[0]['caption']!r}, the slider {slider['label']} {slider['readout']}"
    # The first slider that can move (a slider of one option, as some cells' small settings leave, cannot).
    index = next((i for i, slider in enumerate(state["sliders"]) if slider["movable"]), None)
    if index is None:
        explorer.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
        return
    label, before = state["sliders"][index]["label"], state["sliders"][index]["readout"]
    drag_slider(page, explorer, index)
    deadline = time.monotonic() + CELL_TIMEOUT_MS / 1000
    while True:
        state = explorer_state(explorer)
        final = state["sliders"][index]["readout"]
        records = [figure_record(src) for src in state["images"]]
        if final != before and records and all(r and shows_value(r["caption"], label, final) for r in records):
            break
        if time.monotonic() > deadline:
            shot(page, f"{name}-not-redrawn")
            raise AssertionError(f"{name}: the slider {label!r} reads {final} (was {before}), the figure says "
                                 f"{[r and r['caption'] for r in records]}")
        time.sleep(0.3)
    # the page may still be busy with redraws for the values passed on the way: the last one must stay
    page.wait_for_timeout(300)
    wait_for_kernel(page)
    records = [figure_record(src) for src in explorer_state(explorer)["images"]]
    assert records and all(r and shows_value(r["caption"], label, final) for r in records), \
        f"{name}: after the last redraw the figure says {[r and r['caption'] for r in records]}, the slider {final}"
    explorer.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


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


def assert_no_stray_repr(page):
    stray = [text.strip()[:200] for _, text in outputs(page) if STRAY_REPR.search(text)]
    assert not stray, "a cell printed a repr instead of nothing:\n" + "\n".join(stray[:5])


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

    assert_no_stray_repr(page)

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


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_explorer_draws_the_value_its_slider_ends_on(page, lab, chapter):
    """Every explorer of a completed copy of the chapter (found on the page, whatever the chapter): one slider
    dragged, the figure ends up drawn for the value the slider shows; no cell prints a stray repr.
    The copy runs with COURSE_QUICK=1 (its cells' small settings) so that training cells take seconds."""
    started = time.monotonic()
    folder = copy_chapter(lab, chapter, f"explorers-{chapter}")
    completed = learner_notebook(folder / f"{chapter}.ipynb", answer_sources(chapter))
    completed.cells.insert(0, nbformat.v4.new_code_cell('import os\nos.environ["COURSE_QUICK"] = "1"'))
    nbformat.write(completed, str(folder / f"{chapter}.ipynb"))
    open_notebook(page, lab, f"explorers-{chapter}/{chapter}.ipynb")
    run_every_cell(page)
    errors = error_texts(page)
    assert not errors, "the completed notebook has errors:\n" + "\n---\n".join(e[:500] for e in errors[:3])
    assert_no_widget_errors(page)
    assert_no_stray_repr(page)
    explorers = page.locator(EXPLORERS)
    count = explorers.count()
    assert count > 0, "no explorer rendered as widgets"
    for index in range(count):
        check_explorer_follows_its_slider(page, explorers.nth(index), f"{chapter}-explorer-{index + 1}")
    assert_no_stray_repr(page)
    page.console.assert_clean()
    print(f"{chapter}: {count} explorers, {time.monotonic() - started:.0f} s in the browser")


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
