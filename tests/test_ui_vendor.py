"""The vendored code editor (``ui/static/vendor/codemirror.js``) in the UI's page,
in headless Chromium (the harness of ``test_ui_browser``): it mounts under the
page's strict Content-Security-Policy with no violation, highlights Python,
numbers its lines from ``firstLine``, marks the problems given to
``setProblems`` at their line, and answers real keys.  And the files that ship
with it: ``VERSIONS`` is what ``package-lock.json`` pins, ``LICENSE`` names
every package of the bundle.
"""

import json
import re
import sys
from pathlib import Path

import pytest

SKIPPED = ""
try:  # the browser harness: its Chromium fixture
    from test_ui_browser import By, _wait, browser  # noqa: F401 - a fixture, used by its name
except pytest.skip.Exception as exc:  # no browser here: the tests of files still run
    SKIPPED = str(exc)

VENDOR = Path(__file__).resolve().parent.parent / "src" / "microdag" / "ui" / "static" / "vendor"
SOURCES = VENDOR.parent.parent / "vendor-src"


def _bundled() -> "list[tuple[str, str]]":
    return [tuple(line.rsplit("@", 1)) for line in (VENDOR / "VERSIONS").read_text().splitlines()]  # type: ignore[misc]


def test_versions_are_the_lock_files() -> None:
    lock = json.loads((SOURCES / "package-lock.json").read_text())["packages"]
    bundled = _bundled()
    assert bundled, "VERSIONS names no package"
    for name, version in bundled:
        assert lock.get(f"node_modules/{name}", {}).get("version") == version, name
    direct = json.loads((SOURCES / "package.json").read_text())["dependencies"]
    for name, version in direct.items():  # exact versions, each in the bundle
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), (name, version)
        assert (name, version) in bundled, name


def test_the_licence_names_every_bundled_package() -> None:
    text = (VENDOR / "LICENSE").read_text()
    for name, version in _bundled():
        assert re.search(rf"^{re.escape(name)}@{re.escape(version)} \(", text, re.M), name
    assert "Permission is hereby granted" in text  # the MIT text itself, not only the names


def test_the_bundle_fetches_and_evaluates_nothing() -> None:
    code = (VENDOR / "codemirror.js").read_text()
    for word in ("eval(", "new Function", "fetch(", "XMLHttpRequest", "import(", "importScripts"):
        assert word not in code, word
    assert re.search(r"export\s*\{[^}]*\bcreatePythonEditor\b", code)


# -- in the browser

CODE = "import os\n\n\ndef shout(word):\n    return word.upper()\n"

#: Mounts an editor in the page, as a page script would, and records CSP violations.
MOUNT = """
const done = arguments[arguments.length - 1];
window.__violations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__violations.push(e.violatedDirective + " " + e.blockedURI));
window.__changes = []; window.__runs = 0; window.__saves = 0;
import("/static/vendor/codemirror.js").then((cm) => {
  const parent = document.createElement("div");
  parent.id = "vendor-test";
  document.body.prepend(parent);
  window.__editor = cm.createPythonEditor(parent, {
    doc: arguments[0], firstLine: 10, label: "step code",
    onChange: (text) => window.__changes.push(text),
    onRun: () => { window.__runs += 1; }, onSave: () => { window.__saves += 1; },
  });
  done("mounted");
}, (error) => done("failed: " + error));
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> "object":
    from uiserver import UI

    server = UI(str(tmp_path_factory.mktemp("vendor")))
    yield server
    assert server.stop() == 0, server.stderr


def test_each_page_gets_a_nonce_for_styles_and_only_the_page(served: "object") -> None:
    """The server draws a nonce per page: in its CSP header (style-src) and in a meta tag
    the editor reads; other responses keep the strict policy; the bundle is served."""
    nonces = []
    for _ in range(2):
        status, headers, body = served.request("GET", "/")  # type: ignore[attr-defined]
        assert status == 200
        (nonce,) = re.findall(rb'<meta name="csp-nonce" content="([0-9a-f]{32})">', body)
        assert f"style-src 'self' 'nonce-{nonce.decode()}';" in headers["content-security-policy"]
        nonces.append(nonce)
    assert nonces[0] != nonces[1]
    status, headers, body = served.request("GET", "/static/vendor/codemirror.js")  # type: ignore[attr-defined]
    assert status == 200 and body == (VENDOR / "codemirror.js").read_bytes()
    assert headers["content-type"].startswith("text/javascript")
    assert "style-src 'self';" in headers["content-security-policy"]


def _mount(browser: "object", served: "object") -> None:
    if SKIPPED:
        pytest.skip(SKIPPED)
    browser.get(served.url)  # type: ignore[attr-defined]
    browser.get_log("browser")  # type: ignore[attr-defined] # what was logged before: not this test's
    assert browser.execute_async_script(MOUNT, CODE) == "mounted"  # type: ignore[attr-defined]


def _csp_messages(browser: "object") -> "list[str]":
    logged = [entry["message"] for entry in browser.get_log("browser")]  # type: ignore[attr-defined]
    seen = browser.execute_script("return window.__violations")  # type: ignore[attr-defined]
    return [m for m in logged if "Content Security Policy" in m] + seen


def test_the_editor_mounts_highlights_python_and_breaks_no_csp_rule(served: "object", browser: "object") -> None:
    _mount(browser, served)
    editor = browser.find_element(By.CSS_SELECTOR, "#vendor-test .cm-editor")  # type: ignore[attr-defined]
    assert editor.value_of_css_property("display") == "flex"  # CodeMirror's own style sheet applies
    content = editor.find_element(By.CSS_SELECTOR, ".cm-content")
    assert content.get_attribute("aria-label") == "step code"
    numbers = [e.text for e in editor.find_elements(By.CSS_SELECTOR, ".cm-lineNumbers .cm-gutterElement")]
    assert [n for n in numbers if n][-6:] == ["10", "11", "12", "13", "14", "15"]
    line = editor.find_elements(By.CSS_SELECTOR, ".cm-line")[3]
    assert line.text == "def shout(word):"
    keyword = line.find_element(By.XPATH, "./span[text()='def']")  # a styled span, coloured unlike plain text
    assert keyword.get_attribute("class")
    assert keyword.value_of_css_property("color") != line.value_of_css_property("color")
    assert browser.execute_script("return window.__editor.getValue()") == CODE  # type: ignore[attr-defined]
    assert _csp_messages(browser) == []


def test_set_problems_marks_the_line(served: "object", browser: "object") -> None:
    _mount(browser, served)
    browser.execute_script(  # type: ignore[attr-defined]
        "window.__editor.setProblems([{line: 5, col: 11, message: 'no step or input named wrd'}])")
    lines = browser.find_elements(By.CSS_SELECTOR, "#vendor-test .cm-line")  # type: ignore[attr-defined]
    marked = _wait(browser, lambda d: lines[4].find_element(By.CSS_SELECTOR, ".cm-lintRange-error"), 10,
                   "the problem's mark")
    assert marked.text == "word.upper()"  # from the column to the end of the line
    assert not [line for line in lines[:4] if line.find_elements(By.CSS_SELECTOR, ".cm-lintRange")]
    marker = browser.find_element(By.CSS_SELECTOR, "#vendor-test .cm-lint-marker-error")  # type: ignore[attr-defined]
    number = browser.find_element(  # type: ignore[attr-defined]
        By.XPATH, "//*[@id='vendor-test']//*[contains(@class, 'cm-lineNumbers')]/*[text()='14']")
    assert abs(marker.rect["y"] + marker.rect["height"] / 2 - number.rect["y"] - number.rect["height"] / 2) < 4
    browser.execute_script("window.__editor.setProblems([])")  # type: ignore[attr-defined]
    _wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "#vendor-test .cm-lintRange"), 10, "no mark")
    assert _csp_messages(browser) == []


def test_real_keys_edit_run_save_and_leave(served: "object", browser: "object") -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    _mount(browser, served)
    lines = browser.find_elements(By.CSS_SELECTOR, "#vendor-test .cm-line")  # type: ignore[attr-defined]
    lines[4].click()
    keys = ActionChains(browser)  # type: ignore[arg-type]
    keys.send_keys(Keys.END, Keys.ENTER, "if word:", Keys.ENTER, "pass").perform()
    text = browser.execute_script("return window.__editor.getValue()")  # type: ignore[attr-defined]
    assert "    return word.upper()\n    if word:\n        pass\n" in text  # indented as Python is
    assert browser.execute_script("return window.__changes.at(-1)") == text  # type: ignore[attr-defined]
    keys = ActionChains(browser)  # type: ignore[arg-type]
    keys.key_down(Keys.CONTROL).send_keys(Keys.ENTER).send_keys("s").key_up(Keys.CONTROL).perform()
    assert browser.execute_script("return [window.__runs, window.__saves]") == [1, 1]  # type: ignore[attr-defined]
    assert browser.execute_script("return window.__editor.getValue()") == text  # type: ignore[attr-defined]
    keys = ActionChains(browser)  # type: ignore[arg-type]
    keys.key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()  # undo
    assert browser.execute_script("return window.__editor.getValue()") != text  # type: ignore[attr-defined]
    ActionChains(browser).send_keys(Keys.TAB).perform()  # type: ignore[arg-type] # Tab indents ...
    assert browser.execute_script(  # type: ignore[attr-defined]
        "return document.activeElement.classList.contains('cm-content')") is True
    ActionChains(browser).send_keys(Keys.ESCAPE, Keys.TAB).perform()  # type: ignore[arg-type] # ... Escape, Tab leaves
    assert browser.execute_script(  # type: ignore[attr-defined]
        "return document.activeElement.closest('#vendor-test') === null") is True
    assert _csp_messages(browser) == []
