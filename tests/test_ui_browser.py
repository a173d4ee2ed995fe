"""The UI's page in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium; skipped, saying why, only when no
browser can be had).

What a user does: open the printed URL, start a run from the form and watch
its steps turn green without reloading, open a step's log, run one step
again; edit a flow file (add a step, connect it by dragging and by clicking,
save) and find the file changed and its comments kept.  And what an attacker
tries: step names, errors, logs and outputs full of HTML and script must
show as text, and nothing may run.

``MICRODAG_SCREENSHOTS=DIR`` keeps screenshots of the run view and of the
editor in DIR (docs/ holds the ones the README shows).
"""

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib

import pytest

from support import child_env
from uiserver import MAPPED, UI

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX only")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip("no Chromium and chromedriver on this machine (Debian: apt-get install chromium chromium-driver)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a test extra: pip install '.[test]'")
from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

#: Text that would run script if the page ever used it as HTML.
EVIL = '<img src=x onerror="window.__pwned=1">'
EVIL_STEP = '<script>window.__pwned=2</script>'

FLOW = f"""\
# the flow the browser test runs
[flow]
name = "browser"

[inputs]
greeting = "hi"   # what to say

[steps.fetch]
command = ["sh", "-c", {json.dumps(f"echo 'fetching {EVIL}' >&2; echo 41")}]
output = "json"

[steps.{json.dumps(EVIL_STEP)}]
command = ["sh", "-c", {json.dumps(f"echo '{EVIL}'")}]
depends_on = ["fetch"]

[steps.report]  # the last one
command = ["echo", "{{inputs.greeting}} {{steps.fetch}}"]
"""

EDIT = """\
# a flow edited in the browser
[flow]
name = "edited"

# the first step
[steps.first]
command = ["echo", "1"]
output = "json"   # a number

[steps.second]
command = ["echo", "2"]
"""


def _chain(n: int, name: str = "chain") -> str:
    """A flow file of ``n`` steps, each after the one before."""
    text = f'[flow]\nname = "{name}"\n'
    for k in range(n):
        text += f'\n[steps.s{k}]\ncommand = ["true"]\n' + (f'depends_on = ["s{k - 1}"]\n' if k else "")
    return text


#: a -> b -> c, and a -> c: the long edge must go around b.
SKIP = """\
[flow]
name = "skip"

[steps.a]
command = ["true"]

[steps.b]
command = ["true"]
depends_on = ["a"]

[steps.c]
command = ["true"]
depends_on = ["a", "b"]
"""



#: A module whose function a call step names: an edit in the browser must keep every other byte.
HELPERS = """\
# helpers, kept byte for byte: \u00e9
import math


def before():  # untouched
    return math.pi


def triple(x=2):
    return x * 3
\t
def after():
    return 'after'
"""

MOD = """\
[flow]
name = "mod"

[steps.triple]
call = "helpers:triple"
"""

#: A module step whose code the panel checks as it is typed.
CHECKED_MODULE = "import os\n\n\ndef shout(word):\n    return word.upper()\n"
CHECKED = '[flow]\nname = "checked"\n[inputs]\nword = "hi"\n[steps.shout]\ncall = "checkedmod:shout"\n'

#: 50 inline steps, each after the one before.
FIFTY = '[flow]\nname = "fifty"\n' + "".join(
    f"\n[steps.s{k}]\npython = \"\"\"\ndef s{k}({f's{k - 1}' if k else ''}):\n    return {f's{k - 1} + 1' if k else '0'}\n\"\"\"\n"
    for k in range(50)
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> "UI":
    folder = tmp_path_factory.mktemp("browser")
    (folder / "flow.toml").write_text(FLOW)
    (folder / "edit.toml").write_text(EDIT)
    (folder / "five.toml").write_text(_chain(5, "five"))
    (folder / "thirty.toml").write_text(_chain(30, "thirty"))
    (folder / "forty.toml").write_text(_chain(40, "forty"))
    (folder / "skip.toml").write_text(SKIP)
    (folder / "mapped.py").write_text(MAPPED)
    (folder / "helpers.py").write_bytes(HELPERS.encode())
    (folder / "mod.toml").write_text(MOD)
    (folder / "fifty.toml").write_text(FIFTY)
    (folder / "twelve.toml").write_text(_chain(12, "twelve"))
    (folder / "checkedmod.py").write_text(CHECKED_MODULE)
    (folder / "checked.toml").write_text(CHECKED)
    (folder / "guarded.toml").write_text(EDIT.replace('name = "edited"', 'name = "guarded"'))
    (folder / "slow.toml").write_text(
        '[flow]\nname = "slow"\n[steps.wait]\ncommand = ["sleep", "3"]\n[steps.after]\ncommand = ["true"]\n'
        'depends_on = ["wait"]\n')
    (folder / "outside.toml").write_text('[flow]\nname = "outside"\n[steps.dumps]\ncall = "json:dumps"\n')
    (folder / "broken.toml").write_text(
        f'[flow]\nname = "broken"\n[steps.bad]\ncommand = ["sh", "-c", {json.dumps(f"echo {EVIL!r} >&2; exit 3")}]\n'
    )
    server = UI(str(folder))
    for name in ("flow.toml", "broken.toml", "edit.toml"):
        assert server.get(f"/api/flows/{name}")["problems"] == [], name  # type: ignore[index]
    yield server
    assert server.stop() == 0, server.stderr


def _chromium(**capabilities: object) -> "webdriver.Chrome":
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})  # the page's errors, read by tests
    for name, value in capabilities.items():
        options.set_capability(name, value)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    except Exception as exc:  # a browser that cannot start here
        pytest.skip(f"Chromium does not start: {exc}")
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="module")
def browser() -> "webdriver.Chrome":
    driver = _chromium()
    yield driver
    driver.quit()


def _wait(driver: "webdriver.Chrome", condition: "object", timeout: float = 30, what: str = "") -> "object":
    try:
        return WebDriverWait(  # the page redraws as it learns more: an element read may be gone, so try again
            driver, timeout, poll_frequency=0.05,
            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
        ).until(condition)  # type: ignore[arg-type]
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}; errors on the page: {_page_errors(driver)}") from None


def _page_errors(driver: "webdriver.Chrome") -> str:
    """What the page shows: its error banner and the start of its text."""
    try:
        return (f"{driver.find_element(By.ID, 'error').text!r}; at {driver.current_url}: "
                f"{driver.find_element(By.TAG_NAME, 'main').text[:600]!r}")
    except Exception as exc:
        return f"(the page cannot be read: {exc})"


def _click(driver: "webdriver.Chrome", selector: str) -> None:
    """Click the element ``selector`` finds, again if the page redrew it in between."""
    _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, selector).click() or True, what=f"a click on {selector}")


def _css(driver: "webdriver.Chrome", selector: str) -> "list[object]":
    return driver.find_elements(By.CSS_SELECTOR, selector)


def _node(name: str, under: str = "svg.dag") -> str:
    return f'{under} g.node[data-step={json.dumps(name)}]'


def _shot(driver: "webdriver.Chrome", name: str) -> None:
    folder = os.environ.get("MICRODAG_SCREENSHOTS")
    if folder:
        driver.save_screenshot(os.path.join(folder, name))


def _no_script_ran(driver: "webdriver.Chrome") -> None:
    try:
        alert = driver.switch_to.alert
        raise AssertionError(f"an alert opened: {alert.text}")
    except NoAlertPresentException:
        pass
    assert driver.execute_script("return window.__pwned === undefined") is True


def test_open_run_watch_and_read_a_log(served: UI, browser: "webdriver.Chrome") -> None:
    browser.get(served.url)
    _wait(browser, lambda d: d.current_url.rstrip("/#").endswith(str(served.port)) or "#/" in d.current_url,
          what="the page")
    assert "token" not in browser.current_url  # the token left the address bar
    browser.get(served.base + "/#/flows/" + "flow.toml")
    _wait(browser, lambda d: _css(d, "button#run-flow"), what="the run button")
    _click(browser, "button#run-flow")
    field = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "form#run-form input[name=greeting]"),
                  what="the run form")
    assert field.get_attribute("value") == "hi"  # type: ignore[attr-defined]
    field.clear()  # type: ignore[attr-defined]
    field.send_keys("hello")  # type: ignore[attr-defined]
    _click(browser, "form#run-form button[type=submit]")
    _wait(browser, lambda d: "#/runs/" in d.current_url, what="the new run's page")
    _wait(browser, lambda d: d.find_element(By.ID, "run-status").text == "succeeded", what="the run to succeed")
    for name in ("fetch", EVIL_STEP, "report"):
        node = _wait(browser, lambda d, n=name: _css(d, _node(n) + '[data-status="succeeded"]'), what=name)
        assert node
    labels = _wait(browser, lambda d: [e.text for e in _css(d, "svg.dag g.node text")], what="the labels")
    assert "report" in labels and any(EVIL_STEP[:10] in label for label in labels)  # type: ignore[operator, union-attr]
    rows = _wait(browser, lambda d: {e.get_attribute("data-step"): e.get_attribute("data-status")
                                     for e in _css(d, "table#tasks tr.task")}, what="the table")
    assert rows == {"fetch": "succeeded", EVIL_STEP: "succeeded", "report": "succeeded"}
    _shot(browser, "ui-run.png")
    # the log of a step, as text
    _click(browser, _node("fetch"))
    log = _wait(browser, lambda d: [e.text for e in _css(d, "#step-panel pre.log") if "fetching" in e.text],
                what="the step's log")
    assert log[0].strip() == f"fetching {EVIL}"  # type: ignore[index]
    # the hostile step's output, as text
    _click(browser, _node(EVIL_STEP))
    out = _wait(browser, lambda d: [e.text for e in _css(d, "#step-panel pre.output") if "onerror" in e.text],
                what="the hostile output")
    assert json.loads(out[0]) == EVIL  # type: ignore[index]  (the output, as JSON)
    # run one step again on this run's outputs
    _click(browser, _node("report"))
    _wait(browser, lambda d: _css(d, "#step-panel h3") and d.find_element(By.CSS_SELECTOR, "#step-panel h3").text
          == "report", what="the report step's panel")
    _click(browser, "button#run-step")
    result = _wait(browser, lambda d: [e for e in _css(d, "#step-result pre.output") if "hello 41" in e.text],
                   what="the step's new output")
    assert result
    _no_script_ran(browser)


def test_hostile_errors_show_as_text(served: UI, browser: "webdriver.Chrome") -> None:
    run_id = served.post("/api/runs", {"flow": "broken.toml"}, 201)["id"]
    served.wait_run(run_id)
    browser.get(f"{served.base}/#/runs/{run_id}")
    _wait(browser, lambda d: d.find_element(By.ID, "run-status").text == "failed", what="the failed run")
    _click(browser, _node("bad"))
    shown = _wait(browser, lambda d: [e.text for e in _css(d, "#step-panel pre.error, #step-panel pre.log")
                                      if "onerror" in e.text], what="the error text")
    assert any(EVIL in text for text in shown)  # type: ignore[attr-defined]
    assert not _css(browser, "img[src=x]")
    _no_script_ran(browser)


def test_the_runs_list_shows_runs_and_filters(served: UI, browser: "webdriver.Chrome") -> None:
    browser.get(served.base + "/#/runs")
    _wait(browser, lambda d: len(_css(d, "table#runs tr.run")) >= 2, what="the runs")
    flows = _wait(browser, lambda d: {e.text for e in _css(d, "table#runs tr.run")}, what="the rows")
    assert any("browser" in text for text in flows) and any("broken" in text for text in flows)


def test_edit_connect_and_save(served: UI, browser: "webdriver.Chrome") -> None:
    path = os.path.join(served.folder, "edit.toml")
    browser.get(served.base + "/#/flows/edit.toml")
    _wait(browser, lambda d: _css(d, _node("first", "svg.canvas")), what="the editor's canvas")
    _click(browser, "button#add-step")
    name = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "input#new-step-name"), what="the name field")
    name.send_keys("added")  # type: ignore[attr-defined]
    _click(browser, "button#add-step-ok")
    _wait(browser, lambda d: _css(d, _node("added", "svg.canvas")), what="the new step")
    # connect by clicking: first's port, then the new step
    browser.find_element(By.CSS_SELECTOR, _node("first", "svg.canvas") + " circle.port-out").click()
    browser.find_element(By.CSS_SELECTOR, _node("added", "svg.canvas") + " rect").click()
    _wait(browser, lambda d: _css(d, 'svg.canvas path.edge[data-from="first"][data-to="added"]'), what="the edge")
    # connect by dragging: second's port onto the new step
    port = browser.find_element(By.CSS_SELECTOR, _node("second", "svg.canvas") + " circle.port-out")
    target = browser.find_element(By.CSS_SELECTOR, _node("added", "svg.canvas") + " rect")
    ActionChains(browser).click_and_hold(port).move_to_element(target).pause(0.1).release(target).perform()
    _wait(browser, lambda d: _css(d, 'svg.canvas path.edge[data-from="second"][data-to="added"]'),
          what="the dragged edge")
    _shot(browser, "ui-editor.png")
    _click(browser, "button#save")
    _wait(browser, lambda d: d.find_element(By.ID, "save-status").text.lower() == "saved", what="the save")
    text = open(path).read()
    data = tomllib.loads(text)
    assert data["steps"]["added"]["depends_on"] == ["first", "second"]
    assert text.startswith(EDIT)  # every byte before the new step, comments included
    import microdag

    assert microdag.load_flow(path).steps == ("first", "second", "added")


def test_problems_show_live_and_block_the_save(served: UI, browser: "webdriver.Chrome") -> None:
    path = os.path.join(served.folder, "edit.toml")
    before = open(path).read()
    browser.get(served.base + "/#/flows/edit.toml")
    _wait(browser, lambda d: _css(d, _node("second", "svg.canvas")), what="the editor")
    browser.find_element(By.CSS_SELECTOR, _node("second", "svg.canvas") + " rect").click()
    field = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "form#step-form [name=retries]"),
                  what="the retries field")
    field.clear()  # type: ignore[attr-defined]
    field.send_keys("-4")  # type: ignore[attr-defined]
    _wait(browser, lambda d: any("retries" in e.text for e in _css(d, "ul#problems li")), what="the problem")
    assert _css(browser, _node("second", "svg.canvas") + ".problem")
    _click(browser, "button#save")
    _wait(browser, lambda d: d.find_element(By.ID, "save-status").text.lower().startswith("not saved"),
          what="the refusal")
    time.sleep(0.3)
    assert open(path).read() == before
    # leaving with changes not saved asks first: cancelled, the editor stays; accepted, the page goes
    browser.get(served.base + "/#/runs")
    _wait(browser, lambda d: d.switch_to.alert, what="the question about unsaved changes")
    assert "unsaved" in browser.switch_to.alert.text
    browser.switch_to.alert.dismiss()
    assert browser.current_url.endswith("#/flows/edit.toml") and _css(browser, "button#save")
    browser.get(served.base + "/#/runs")
    _wait(browser, lambda d: d.switch_to.alert, what="the question again").accept()  # type: ignore[attr-defined]
    _wait(browser, lambda d: _css(d, "table#runs"), what="the runs list")


def test_the_page_is_served_as_es_modules(served: UI) -> None:
    """Every module of the page, in its folder, as JavaScript the CSP lets run; nothing else."""
    import re

    status, headers, body = served.request("GET", "/")
    assert status == 200 and b'<script type="module" src="/static/main.js">' in body
    csp = {k.lower(): v for k, v in headers.items()}["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp
    seen, todo = set(), ["main.js"]
    while todo:  # main.js and every module it imports, and so on
        name = todo.pop()
        status, headers, body = served.request("GET", "/static/" + name)
        assert status == 200, name
        assert {k.lower(): v for k, v in headers.items()}["content-type"] == "text/javascript; charset=utf-8"
        seen.add(name)
        folder = os.path.dirname(name)
        for target in re.findall(rb"^import .* from '(\.[^']+)';", body, re.M):
            resolved = os.path.normpath(os.path.join(folder, target.decode()))
            if resolved not in seen:
                todo.append(resolved)
    assert {"views/run.js", "editor/editor.js", "draw.js", "present.js"} <= seen
    for bad in ("../_server.py", "views/../../_api.py", ".hidden.js", "views/", "nothere.js", "index.html"):
        assert served.request("GET", "/static/" + bad)[0] == 404, bad


def _run_page(served: UI, browser: "webdriver.Chrome", flow: str) -> str:
    browser.get(served.url)  # the token's cookie (when this test runs alone)
    run_id = served.post("/api/runs", {"flow": flow}, 201)["id"]  # type: ignore[index]
    served.wait_run(run_id)
    browser.get(f"{served.base}/#/runs/{run_id}")
    _wait(browser, lambda d: d.find_element(By.ID, "run-status").text == "succeeded", what=f"the run of {flow}")
    return str(run_id)


def _box(browser: "webdriver.Chrome") -> "dict[str, float]":
    return browser.execute_script(  # type: ignore[no-any-return]
        "const box = document.querySelector('.dag-scroll'), svg = box.querySelector('svg.dag');"
        "const r = svg.getBoundingClientRect(), b = box.getBoundingClientRect();"
        "return {scrollW: box.scrollWidth, clientW: box.clientWidth, scrollH: box.scrollHeight, clientH: box.clientHeight,"
        " svgW: r.width, svgH: r.height, boxW: b.width, viewBox: svg.getAttribute('viewBox'),"
        " pannable: svg.classList.contains('pannable'), tools: !!box.querySelector('.zoom-tools')}")


def test_the_graph_fits_its_box(served: UI, browser: "webdriver.Chrome") -> None:
    """A five-step chain needs no scrollbar at 1,400 px, nor does a 30-step one (drawn whole, smaller);
    a bigger one can be panned and zoomed."""
    browser.set_window_size(1400, 1000)
    for flow, steps in (("five.toml", 5), ("thirty.toml", 30)):
        _run_page(served, browser, flow)
        _wait(browser, lambda d, n=steps: len(_css(d, "svg.dag g.node")) == n, what=f"the {steps} nodes")
        box = _box(browser)
        assert box["scrollW"] <= box["clientW"] and box["scrollH"] <= box["clientH"] + 1, (flow, box)
        assert box["svgW"] <= box["boxW"] and not box["pannable"], (flow, box)
    _run_page(served, browser, "forty.toml")
    _wait(browser, lambda d: len(_css(d, "svg.dag g.node")) == 40, what="the 40 nodes")
    box = _box(browser)
    assert box["pannable"] and box["tools"] and box["scrollW"] <= box["clientW"], box
    before = box["viewBox"]
    _click(browser, ".zoom-tools button[title='Zoom in']")
    assert _box(browser)["viewBox"] != before
    svg = browser.find_element(By.CSS_SELECTOR, "svg.dag")
    zoomed = _box(browser)["viewBox"]
    ActionChains(browser).move_to_element_with_offset(svg, 0, 20).click_and_hold().move_by_offset(-200, 0)\
        .release().perform()
    panned = [float(v) for v in _box(browser)["viewBox"].split()]
    assert panned[0] > float(zoomed.split()[0]), (zoomed, panned)  # dragged left: the view moved right
    shown = browser.execute_script(  # a node in view after the pan still opens its panel
        "const box = document.querySelector('svg.dag').getBoundingClientRect();"
        "return [...document.querySelectorAll('svg.dag g.node')].map((g) => [g.getAttribute('data-step'),"
        " g.getBoundingClientRect()]).filter(([, r]) => r.left > box.left && r.right < box.right)[0][0]")
    _click(browser, _node(shown))
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#step-panel h3").text == shown, what="the panel")


def test_a_long_edge_goes_around_the_nodes_between(served: UI, browser: "webdriver.Chrome") -> None:
    _run_page(served, browser, "skip.toml")
    _wait(browser, lambda d: _css(d, 'svg.dag path.edge[data-from="a"][data-to="c"]'), what="the edge a -> c")
    hits = browser.execute_script(
        "const path = document.querySelector('svg.dag path.edge[data-from=\"a\"][data-to=\"c\"]');"
        "const hits = [];"
        "for (const g of document.querySelectorAll('svg.dag g.node')) {"
        "  const name = g.getAttribute('data-step'); if (name === 'a' || name === 'c') continue;"
        "  const m = g.transform.baseVal.consolidate().matrix, r = g.querySelector('rect');"
        "  const x0 = m.e, y0 = m.f, x1 = x0 + r.width.baseVal.value, y1 = y0 + r.height.baseVal.value;"
        "  const n = path.getTotalLength();"
        "  for (let k = 0; k <= 200; k++) { const p = path.getPointAtLength(n * k / 200);"
        "    if (p.x > x0 && p.x < x1 && p.y > y0 && p.y < y1) { hits.push(name); break; } } }"
        "return hits;")
    assert hits == [], f"the edge a -> c passes through {hits}"


def test_at_820_px_a_clicked_step_s_panel_is_in_view(served: UI, browser: "webdriver.Chrome") -> None:
    browser.set_window_size(820, 900)
    try:
        _run_page(served, browser, "five.toml")
        _click(browser, _node("s4"))
        _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#step-panel h3").text == "s4", what="the panel")
        seen = browser.execute_script(
            "const r = document.getElementById('step-panel').getBoundingClientRect();"
            "return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, h: innerHeight, w: innerWidth}")
        assert 0 <= seen["top"] < seen["h"] - 100 and seen["left"] >= 0 and seen["right"] <= seen["w"], seen
    finally:
        browser.set_window_size(1400, 1000)


def _cli(served: UI, *argv: str, fail: bool = False) -> None:
    env = child_env(**({"FAIL": "1"} if fail else {}))
    done = subprocess.run([sys.executable, "-m", "microdag", *argv, "--quiet"], cwd=served.folder, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == (1 if fail else 0), done.stderr


def test_a_failed_run_that_cannot_be_resumed_says_why_and_resumed_items_stay_in_order(
    served: UI, browser: "webdriver.Chrome"
) -> None:
    _cli(served, "run", "mapped.py:flow", fail=True)
    (run_id,) = [r["id"] for r in served.get("/api/runs?flow=mapped")["runs"]]  # type: ignore[index]
    browser.get(served.url)  # the token's cookie (when this test runs alone)
    browser.get(f"{served.base}/#/runs/{run_id}")
    why = _wait(browser, lambda d: d.find_element(By.ID, "resume-why").text, what="why there is no Resume button")
    assert not _css(browser, "button#resume")
    assert "python -m microdag ui" in why and f"python -m microdag resume {run_id}" in why  # type: ignore[operator]
    _cli(served, "resume", run_id)
    browser.refresh()
    _wait(browser, lambda d: d.find_element(By.ID, "run-status").text == "succeeded", what="the resumed run")
    rows = [(e.get_attribute("data-step"), e.get_attribute("data-item")) for e in _css(browser, "table#tasks tr.task")]
    assert rows == [("a", ""), ("m", "0"), ("m", "1"), ("m", "2"), ("m", ""), ("b", "")]
    assert not _css(browser, "#resume-why")


def _type_code(browser: "webdriver.Chrome", *lines: str) -> None:
    """Types lines into the code editor with real key events, as a user would: the editor indents
    after a colon and closes brackets and quotes (typing the closing one steps over it)."""
    content = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#code-panel .code-host[data-ready] .cm-content"),
                    what="the code editor")
    content.click()  # type: ignore[attr-defined]
    keys = ActionChains(browser).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL).send_keys(Keys.DELETE)
    for k, line in enumerate(lines):
        keys = keys.send_keys(line.lstrip(" "))
        if k < len(lines) - 1:
            keys = keys.send_keys(Keys.ENTER)
    keys.perform()


def _add_python_step(browser: "webdriver.Chrome", name: str) -> None:
    _click(browser, "button#add-step")
    field = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "input#new-step-name"), what="the name field")
    field.send_keys(name)  # type: ignore[attr-defined]
    _click(browser, "button#add-step-ok")
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#code-panel h3").text == f"Code of {name}",
          what=f"the code panel of {name}")
    _click(browser, "button#make-inline")
    _wait(browser, lambda d: f"def {name}():" in d.find_element(By.CSS_SELECTOR, "#code-panel .cm-content").text,
          what="the starter function")


def _text(browser: "webdriver.Chrome", selector: str) -> str:
    return " | ".join(e.text for e in _css(browser, selector))  # type: ignore[attr-defined]


def _saved(browser: "webdriver.Chrome", what: str) -> None:
    _click(browser, "button#save")
    _wait(browser, lambda d: d.find_element(By.ID, "save-status").text.lower() == "saved", what=what)


def test_the_whole_loop_in_the_browser(served: UI, browser: "webdriver.Chrome") -> None:
    """A new flow, two steps written in the code editor, a syntax error marked and the save refused,
    fixed and saved, one step run with its output under the editor, the flow run to its end; a module
    step's function edited with every other byte of its module kept."""
    browser.set_window_size(1400, 1000)
    path = os.path.join(served.folder, "made.toml")
    browser.get(served.url)  # the token's cookie (when this test runs alone)
    browser.get(served.base + "/#/flows")
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "button#new-flow"), what="New flow").click()  # type: ignore[attr-defined]
    name = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "input#new-flow-name"), what="the name field")
    name.send_keys("made", Keys.ENTER)  # type: ignore[attr-defined]
    _wait(browser, lambda d: d.current_url.endswith("#/flows/made.toml") and _css(d, "svg.canvas"), what="the editor")
    assert os.path.exists(path)
    _add_python_step(browser, "load")
    _type_code(browser, "def load():", "return 20")
    _add_python_step(browser, "double")
    _type_code(browser, "def double(load):", "print('doubling', load)", "return load * 2 +")
    # connect them: load's port, then double
    browser.find_element(By.CSS_SELECTOR, _node("load", "svg.canvas") + " circle.port-out").click()
    browser.find_element(By.CSS_SELECTOR, _node("double", "svg.canvas") + " rect").click()
    _wait(browser, lambda d: _css(d, 'svg.canvas path.edge[data-from="load"][data-to="double"]'), what="the edge")
    # the syntax error: in the problems list with its line, and marked in the editor at that line
    _wait(browser, lambda d: _css(d, 'ul#problems li[data-step="double"][data-line="3"]'), what="the syntax error")
    _wait(browser, lambda d: _css(d, "#code-panel .cm-lint-marker-error"), what="the mark in the editor")
    marked = browser.execute_script(  # the gutter row of the mark is the row of line 3
        "const m = document.querySelector('#code-panel .cm-lint-marker-error').getBoundingClientRect();"
        "const lines = document.querySelectorAll('#code-panel .cm-content .cm-line');"
        "return [...lines].findIndex((l) => { const r = l.getBoundingClientRect();"
        " return m.top + m.height / 2 >= r.top && m.top + m.height / 2 <= r.bottom; }) + 1")
    assert marked == 3
    _click(browser, "button#save")
    _wait(browser, lambda d: d.find_element(By.ID, "save-status").text.lower().startswith("not saved"),
          what="the refusal")
    assert "double" not in open(path).read()
    # fixed: the problem goes, the save writes the file
    content = browser.find_element(By.CSS_SELECTOR, "#code-panel .cm-content")
    content.send_keys(Keys.CONTROL, Keys.END)  # type: ignore[attr-defined]
    content.send_keys(Keys.BACKSPACE, Keys.BACKSPACE)  # type: ignore[attr-defined]
    _wait(browser, lambda d: not _css(d, "ul#problems li"), what="the problem to go")
    _saved(browser, "the save")
    data = tomllib.loads(open(path).read())
    assert "return 20" in data["steps"]["load"]["python"]
    assert data["steps"]["double"]["python"].strip() == "def double(load):\n    print('doubling', load)\n    return load * 2"
    assert data["steps"]["double"]["depends_on"] == ["load"]
    import microdag

    assert microdag.load_flow(path).run().outputs["double"] == 40  # type: ignore[attr-defined]
    # run up to here (no run yet to take load's output from), then this step alone on that run's output
    _click(browser, "button#run-up-to-here")
    _wait(browser, lambda d: "40" in _text(d, "#step-run-result pre.output"), what="the output of run up to here")
    _wait(browser, lambda d: "doubling 20" in _text(d, "#step-run-result pre.log"), what="what the step printed")
    timings = []
    for _ in range(3):
        browser.execute_script("document.getElementById('step-run-result').textContent = ''")
        start = time.perf_counter()
        _click(browser, "button#run-this-step")
        _wait(browser, lambda d: "40" in _text(d, "#step-run-result pre.output"), what="the step's output")
        timings.append(time.perf_counter() - start)
    own = browser.execute_script("return document.getElementById('step-run-result').getAttribute('data-ms')")
    print(f"\nrun this step, click to output shown: {', '.join(f'{t * 1000:.0f} ms' for t in timings)}"
          f" (the page's own count for the last: {own} ms)")
    assert min(timings) < 5.0  # the goal (0.5 s over the step's own time) is reported in docs/performance.md
    # a step that raises: its traceback under the editor
    _type_code(browser, "def double(load):", "raise ValueError('no ' + str(load))")
    ActionChains(browser).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()  # run it
    tb = _wait(browser, lambda d: _text(d, "#step-run-result pre.traceback"), what="the traceback")
    assert "ValueError: no 20" in tb  # type: ignore[operator]
    _type_code(browser, "def double(load):", "return load * 2")
    _wait(browser, lambda d: not _css(d, "ul#problems li"), what="no problem")
    _saved(browser, "the second save")
    # the flow, run to its end
    _click(browser, "button#run-flow")
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "form#run-form button[type=submit]"),
          what="the run form").click()  # type: ignore[attr-defined]
    _wait(browser, lambda d: "#/runs/" in d.current_url, what="the run's page")
    _wait(browser, lambda d: d.find_element(By.ID, "run-status").text == "succeeded", what="the run to succeed")
    assert {e.get_attribute("data-status") for e in _css(browser, "svg.dag g.node")} == {"succeeded"}
    # a module step: its function edited in the browser, the rest of its module kept byte for byte
    module = os.path.join(served.folder, "helpers.py")
    old = open(module, "rb").read()
    browser.get(served.base + "/#/flows/mod.toml")
    _wait(browser, lambda d: _css(d, _node("triple", "svg.canvas")), what="the module flow's editor")
    browser.find_element(By.CSS_SELECTOR, _node("triple", "svg.canvas") + " rect").click()
    _wait(browser, lambda d: "line" in d.find_element(By.CSS_SELECTOR, "#code-panel .code-where").text,
          what="the function's file and line")
    assert browser.find_element(By.CSS_SELECTOR, "#code-panel .code-where").text == "helpers.py, line 9"
    _type_code(browser, "def triple(x=2):", "return x * 3 + 1")
    _saved(browser, "the module's save")
    new = open(module, "rb").read()
    start, end = old.index(b"def triple"), old.index(b"\t\ndef after")
    assert new == old[:start] + b"def triple(x=2):\n    return x * 3 + 1\n" + old[end:]
    browser.get(served.base + "/#/runs")  # nothing left unsaved: no question
    _wait(browser, lambda d: _css(d, "table#runs"), what="the runs list")


def test_the_editor_of_a_50_step_flow_is_interactive_within_a_second(served: UI, browser: "webdriver.Chrome") -> None:
    """From the address entered to the 50 steps drawn, and to one's code in the editor (the figures
    are in docs/performance.md)."""
    figures = []
    browser.get(served.url)  # the token's cookie (when this test runs alone)
    for _ in range(3):
        browser.get("about:blank")
        browser.get(served.base + "/#/flows/fifty.toml")  # a new page: its scripts loaded afresh
        _wait(browser, lambda d: len(_css(d, "svg.canvas g.node")) == 50, what="the 50 steps")
        drawn = browser.execute_script("return performance.now()")
        browser.find_element(By.CSS_SELECTOR, 'ul#steps li[data-step="s49"]').click()  # (out of the canvas' view)
        _wait(browser, lambda d: _css(d, "#code-panel .code-host[data-ready] .cm-content"), what="the code editor")
        editor = browser.execute_script("return performance.now()")
        figures.append((drawn, editor))
    browser.find_element(By.CSS_SELECTOR, _node("s49", "svg.canvas") + " rect").click()  # panned into view
    _wait(browser, lambda d: _css(d, _node("s49", "svg.canvas") + ".selected"), what="the step clicked on the canvas")
    print("\neditor of 50 steps: drawn at " + ", ".join(f"{d:.0f} ms" for d, _ in figures)
          + "; a step's code in the editor at " + ", ".join(f"{e:.0f} ms" for _, e in figures) + " after navigation")
    assert min(d for d, _ in figures) < 1000


def test_the_page_shows_statuses_and_durations_as_the_command_line_does(served: UI, browser: "webdriver.Chrome") -> None:
    """static/present.js and microdag._present: the same cases, the same answers."""
    from microdag import _present

    seconds = [0, 0.0000463, 0.0003, 0.5, 0.9994, 1, 1.236, 59.99, 119.994, 120, 123.4, 3599, 3600, 3725, 86400]
    statuses = [[], ["succeeded"], ["succeeded", "skipped"], ["skipped", "cancelled"], ["pending", "failed"],
                ["succeeded", "running", "skipped"], ["succeeded", "damaged"], ["zeta", "alpha", "succeeded"]]
    browser.get(served.url)
    _wait(browser, lambda d: "token" not in d.current_url and _css(d, "main h1"), what="the page")
    page = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('/static/present.js').then((p) => done({"
        " durations: arguments[0].map((s) => p.durationText(s)), none: p.durationText(null),"
        " worst: arguments[1].map((l) => p.worst(l)),"
        " items: arguments[1].map((l) => p.stepStatus(l.map((status, item) => ({status, item})))),"
        " own: p.stepStatus([{status: 'succeeded', item: null}, {status: 'failed', item: 0}]),"
        " order: p.WORST_FIRST}), (e) => done(String(e)));", seconds, statuses)
    assert page["durations"] == [_present.duration_text(s) for s in seconds]  # type: ignore[index]
    assert page["none"] == _present.duration_text(None)  # type: ignore[index]
    assert page["worst"] == [_present.worst(s) for s in statuses]  # type: ignore[index]
    assert page["items"] == [_present.step_status(None, s) for s in statuses]  # type: ignore[index]
    assert page["own"] == _present.step_status("succeeded", ["failed"])  # type: ignore[index]
    assert page["order"] == list(_present.WORST_FIRST)  # type: ignore[index]


def test_a_live_run_started_here_shows_its_graph(served: UI, browser: "webdriver.Chrome") -> None:
    browser.get(served.url)  # the token's cookie (when this test runs alone)
    run_id = served.post("/api/runs", {"flow": "slow.toml"}, 201)["id"]  # type: ignore[index]
    browser.get(f"{served.base}/#/runs/{run_id}")  # at once: the run may not have begun
    _wait(browser, lambda d: _css(d, _node("wait")) and _css(d, _node("after")), what="the live run's graph")
    assert browser.find_element(By.ID, "run-status").text in ("pending", "running")
    _wait(browser, lambda d: d.find_element(By.ID, "run-status").text == "succeeded", what="the end")
    _wait(browser, lambda d: _css(d, _node("after") + '[data-status="succeeded"]'), what="the last step")


def test_a_function_outside_the_folder_is_shown_read_only_with_its_path(served: UI, browser: "webdriver.Chrome") -> None:
    browser.get(served.url)  # the token's cookie (when this test runs alone)
    browser.get(served.base + "/#/flows/outside.toml")
    _wait(browser, lambda d: _css(d, _node("dumps", "svg.canvas")), what="the editor")
    browser.find_element(By.CSS_SELECTOR, _node("dumps", "svg.canvas") + " rect").click()
    where = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#code-panel .code-where.read-only").text,
                  what="the read-only note")
    assert "json" in where and "__init__.py, line" in where and "read-only" in where  # type: ignore[operator]
    content = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#code-panel .code-host[data-ready] .cm-content"),
                    what="the code")
    before = content.text  # type: ignore[attr-defined]
    assert "def dumps(" in before
    content.click()  # type: ignore[attr-defined]
    ActionChains(browser).send_keys("typed", Keys.ENTER).perform()
    time.sleep(0.2)
    assert content.text == before and "unsaved" not in browser.find_element(By.ID, "save-status").text  # type: ignore[attr-defined]


def test_every_view_opens_without_an_error(served: UI, browser: "webdriver.Chrome") -> None:
    """Each view, its step panel and the code panel: no error in the banner, none in the console."""
    browser.get(served.url)
    _wait(browser, lambda d: "token" not in d.current_url and _css(d, "table#runs"), what="the runs")
    browser.get_log("browser")  # what came before this test is not this test's
    run_id = _run_page(served, browser, "skip.toml")
    _click(browser, _node("b"))
    _wait(browser, lambda d: _css(d, "#step-panel h3"), what="the step panel")
    _wait(browser, lambda d: _css(d, "svg.timeline rect.bar"), what="the timeline")
    browser.get(served.base + "/#/flows")
    _wait(browser, lambda d: _css(d, "ul#flows a.flow"), what="the flows")
    browser.get(served.base + "/#/flows/fifty.toml")
    _wait(browser, lambda d: _css(d, _node("s3", "svg.canvas")), what="the editor")
    browser.find_element(By.CSS_SELECTOR, _node("s3", "svg.canvas") + " rect").click()
    _wait(browser, lambda d: _css(d, "#code-panel .code-host[data-ready]"), what="the code panel")
    time.sleep(0.3)
    assert browser.find_element(By.ID, "error").is_displayed() is False, _page_errors(browser)
    errors = [e["message"] for e in browser.get_log("browser") if "favicon" not in e["message"]]
    assert errors == [], (run_id, errors)


def test_a_module_step_s_code_is_checked_as_it_is_typed(served: UI, browser: "webdriver.Chrome") -> None:
    """Problems of a module function's code: at their line in the editor and in the problems list,
    and the save refused while there are any (a syntax error, a parameter that binds to nothing)."""
    browser.set_window_size(1400, 1000)
    module = os.path.join(served.folder, "checkedmod.py")
    browser.get(served.url)  # the token's cookie (when this test runs alone)
    browser.get(served.base + "/#/flows/checked.toml")
    _wait(browser, lambda d: _css(d, _node("shout", "svg.canvas")), what="the editor")
    browser.find_element(By.CSS_SELECTOR, _node("shout", "svg.canvas") + " rect").click()
    _type_code(browser, "def shout(word):", "return word +")
    _wait(browser, lambda d: _css(d, 'ul#problems li[data-step="shout"][data-line="2"]'), what="the syntax error")
    _wait(browser, lambda d: _css(d, "#code-panel .cm-lint-marker-error"), what="the mark in the editor")
    assert "syntax error" in _text(browser, "ul#problems li")
    _click(browser, "button#save")
    _wait(browser, lambda d: d.find_element(By.ID, "save-status").text.lower().startswith("not saved"),
          what="the refusal")
    assert open(module).read() == CHECKED_MODULE
    _type_code(browser, "def shout(wrod):", "return wrod.upper()")
    _wait(browser, lambda d: "did you mean 'word'?" in _text(d, 'ul#problems li[data-step="shout"][data-line="1"]'),
          what="the parameter that binds to nothing")
    _click(browser, "button#save")
    _wait(browser, lambda d: d.find_element(By.ID, "save-status").text.lower().startswith("not saved"),
          what="the second refusal")
    time.sleep(0.3)
    assert open(module).read() == CHECKED_MODULE
    _type_code(browser, "def shout(word):", "return word.upper() + '!'")
    _wait(browser, lambda d: not _css(d, "ul#problems li"), what="the problems to go")
    assert not _css(browser, "#code-panel .cm-lint-marker-error")
    _saved(browser, "the save")
    assert open(module).read() == CHECKED_MODULE.replace("word.upper()", "word.upper() + '!'")


def test_the_editor_s_canvas_fits_its_box_and_steps_can_still_be_dragged(
    served: UI, browser: "webdriver.Chrome"
) -> None:
    browser.set_window_size(1400, 1000)
    browser.get(served.url)  # the token's cookie (when this test runs alone)
    browser.get(served.base + "/#/flows/twelve.toml")
    _wait(browser, lambda d: len(_css(d, "svg.canvas g.node")) == 12, what="the 12 steps")
    box = browser.execute_script(
        "const box = document.querySelector('.canvas-scroll'), svg = box.querySelector('svg.canvas');"
        "const last = svg.querySelector('g.node[data-step=\"s11\"]').getBoundingClientRect();"
        "const b = box.getBoundingClientRect();"
        "return {scrollW: box.scrollWidth, clientW: box.clientWidth, right: last.right, boxRight: b.right,"
        " viewBox: svg.getAttribute('viewBox')}")
    assert box["scrollW"] <= box["clientW"] and box["right"] <= box["boxRight"], box
    assert box["viewBox"], box
    # a step dragged by hand follows the pointer, wherever the drawing is scaled
    node = browser.find_element(By.CSS_SELECTOR, _node("s5", "svg.canvas") + " rect")
    before = node.rect  # type: ignore[attr-defined]
    ActionChains(browser).click_and_hold(node).move_by_offset(30, 80).pause(0.1).release().perform()
    after = browser.find_element(By.CSS_SELECTOR, _node("s5", "svg.canvas") + " rect").rect
    assert abs(after["x"] - before["x"] - 30) < 3 and abs(after["y"] - before["y"] - 80) < 3, (before, after)
    assert "unsaved" not in browser.find_element(By.ID, "save-status").text  # a place is not an edit
    # and it is still a step: a click selects it
    browser.find_element(By.CSS_SELECTOR, _node("s7", "svg.canvas") + " rect").click()
    _wait(browser, lambda d: _css(d, _node("s7", "svg.canvas") + ".selected"), what="the selected step")


def _alert(driver: "webdriver.Chrome") -> "object":
    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return False


@pytest.fixture()
def asking() -> "webdriver.Chrome":
    """A browser that leaves a page's question before it unloads open for the test to answer (WebDriver
    answers it by itself otherwise): a session with BiDi, whose prompt handler can leave it open."""
    driver = _chromium(webSocketUrl=True, unhandledPromptBehavior={"beforeUnload": "ignore"})
    yield driver
    driver.quit()


def test_leaving_the_page_with_unsaved_changes_asks_first(served: UI, asking: "webdriver.Chrome") -> None:
    """The page's own unload (another address, a reload): the browser's question, dismissed (the editor
    stays, the change with it) or accepted (the page goes)."""
    browser = asking
    browser.get(served.url)  # the token's cookie (when this test runs alone)
    browser.get(served.base + "/#/flows/guarded.toml")
    _wait(browser, lambda d: _css(d, _node("second", "svg.canvas")), what="the editor")
    browser.get("about:blank")  # nothing changed: no question
    assert browser.current_url == "about:blank"
    browser.get(served.base + "/#/flows/guarded.toml")
    _wait(browser, lambda d: _css(d, _node("second", "svg.canvas")), what="the editor again")
    browser.find_element(By.CSS_SELECTOR, _node("second", "svg.canvas") + " rect").click()
    field = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "form#step-form [name=retries]"),
                  what="the retries field")
    field.send_keys("2")  # type: ignore[attr-defined]
    _wait(browser, lambda d: "unsaved" in d.find_element(By.ID, "save-status").text, what="the unsaved change")
    browser.execute_script("setTimeout(() => { location.href = 'about:blank'; }, 0)")
    alert = _wait(browser, _alert, what="the browser's question")
    alert.dismiss()  # type: ignore[attr-defined]
    time.sleep(0.3)
    assert browser.current_url.endswith("#/flows/guarded.toml") and _css(browser, "button#save")
    assert "unsaved" in browser.find_element(By.ID, "save-status").text
    browser.execute_script("setTimeout(() => { location.reload(); }, 0)")
    _wait(browser, _alert, what="the question on a reload").accept()  # type: ignore[attr-defined]
    _wait(browser, lambda d: _css(d, _node("second", "svg.canvas")) and
          "unsaved" not in d.find_element(By.ID, "save-status").text, what="the page loaded afresh")
    assert "retries" not in open(os.path.join(served.folder, "guarded.toml")).read()


def test_the_starter_code_of_a_step_is_valid_whatever_its_name(served: UI, browser: "webdriver.Chrome") -> None:
    """A step named like a Python keyword, a JS property, with quotes, markup, unicode or at length: the
    page's starter code compiles, and its function is the one the problems name."""
    from microdag import _inline

    names = ["class", "None", "__proto__", "constructor", "</script>", "q\"u'o`te", "\u00e9t\u00e9 \u2603", "2x",
             "x" * 300, "'''"]
    browser.get(served.url)
    _wait(browser, lambda d: "token" not in d.current_url and _css(d, "main h1"), what="the page")
    page = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('/static/editor/code.js').then((m) => done(arguments[0].map((n) => [m.starter(n), m.functionName(n)])),"
        " (e) => done(String(e)));", names)
    for name, (code, function) in zip(names, page):  # type: ignore[arg-type]
        assert _inline.problems(code, name, ()) == [], (name, code)
        [missing] = _inline.problems("x = 1\n", name, ())
        assert f"write def {function}(...)" in missing.message, (name, missing)


def test_a_run_on_workers_is_watched_and_cancelled_from_the_page(served: UI, browser: "webdriver.Chrome") -> None:
    from test_ui_workers import SLOW, running_on_two_workers
    from test_workers import facts, stop, wait_end

    with open(os.path.join(served.folder, "shared.py"), "w") as f:
        f.write(SLOW.replace('"slow"', '"shared"'))
    store = os.path.join(served.folder, ".microdag", "runs.db")  # (the server's store)
    os.makedirs(os.path.dirname(store), exist_ok=True)  # (when this test runs alone: no run made it yet)
    run_id, workers, _ = running_on_two_workers(served.folder, store, "shared.py")
    try:
        browser.get(served.url)  # the token's cookie (when this test runs alone)
        browser.get(f"{served.base}/#/runs/{run_id}")
        _wait(browser, lambda d: d.find_element(By.ID, "run-status").text == "running"
              and _css(d, "span.live") and _css(d, "button#cancel"), what="the live run and its Cancel")
        _wait(browser, lambda d: _css(d, _node("left")) and _css(d, _node("right")), what="the run's graph")
        _click(browser, "button#cancel")
        _wait(browser, lambda d: d.find_element(By.ID, "run-status").text == "cancelled", timeout=10,
              what="the run cancelled")
        _wait(browser, lambda d: not _css(d, "button#cancel") and not _css(d, "span.live"), what="no longer live")
        assert wait_end(store, run_id, 5) == "cancelled"
        assert facts(store, run_id)[0] == {"left": ("cancelled", 1), "right": ("cancelled", 1),
                                           "after": ("cancelled", 0)}  # each worker stopped its step
        assert all(w.poll() is None for w in workers)
    finally:
        stop(workers)


def test_steps_that_steps_added_are_marked_on_the_run_page(served: UI, browser: "webdriver.Chrome") -> None:
    import addsteps

    from microdag.stores import SQLiteStore

    store_path = os.path.join(served.folder, ".microdag", "runs.db")  # (the server's store)
    os.makedirs(os.path.dirname(store_path), exist_ok=True)
    store = SQLiteStore(store_path)
    run = addsteps.plain_flow().run(store=store)
    store.close()
    browser.get(served.url)  # the token's cookie (when this test runs alone)
    browser.get(f"{served.base}/#/runs/{run.id}")
    node = _wait(browser, lambda d: _css(d, _node("sum") + '.added[data-added-by="plan"]'), what="the added step")
    assert node and not _css(browser, _node("plan") + ".added")
    rows = _wait(browser, lambda d: {e.get_attribute("data-step"): e.text for e in _css(d, "table#tasks tr.task")},
                 what="the table")
    assert "added by plan" in rows["part0"] and "added by" not in rows["load"]  # type: ignore[index]
    _click(browser, _node("sum"))
    _wait(browser, lambda d: "Added by" in d.find_element(By.ID, "step-panel").text, what="the panel's note")


def test_the_run_page_shows_pools_uses_and_waits(served: UI, browser: "webdriver.Chrome") -> None:
    from microdag import Flow
    from microdag.stores import SQLiteStore

    store_path = os.path.join(served.folder, ".microdag", "runs.db")  # (the server's store)
    os.makedirs(os.path.dirname(store_path), exist_ok=True)
    store = SQLiteStore(store_path)
    flow = Flow("pooled").add("one", lambda: time.sleep(0.03), uses="db").add("two", lambda: time.sleep(0.03), uses="db")
    flow.add("free", lambda: 5)
    run = flow.run(executor="threads", max_workers=3, pools={"db": 1}, store=store)
    store.close()
    waiter = max(("one", "two"), key=lambda s: run.tasks[s].waited or 0.0)
    browser.get(served.url)  # the token's cookie (when this test runs alone)
    browser.get(f"{served.base}/#/runs/{run.id}")
    _wait(browser, lambda d: "pools db=1" in d.find_element(By.ID, "run-limits").text, what="the run's pools")
    rows = _wait(browser, lambda d: {e.get_attribute("data-step"): e.text for e in _css(d, "table#tasks tr.task")},
                 what="the table")
    assert "uses db=1" in rows["one"] and "uses db=1" in rows["two"] and "uses" not in rows["free"]  # type: ignore[index]
    assert "waited" in rows[waiter] and "waited" not in rows["free"]  # type: ignore[index]
    _click(browser, f'table#tasks tr.task[data-step="{waiter}"]')
    _wait(browser, lambda d: d.find_element(By.ID, "step-uses").text == "db=1", what="the panel's uses")
    assert browser.find_element(By.ID, "step-waited").text.endswith("ms")
