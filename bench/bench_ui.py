"""The local UI: how soon it serves, how fast it answers, what watching costs.

- ``test_first_page``: from starting ``python -m microdag ui`` to the first
  page received (the first line read, then ``GET /`` with the token's
  cookie), whole processes as a shell starts them; beside ``python -c pass``
  of the same session (``extra_info["over_python_ms"]``).  Goal: 150 ms.
- ``test_run_document``: ``GET /api/runs/ID`` of a finished 10,000-step run
  in an ``SQLiteStore`` (a layered flow, outputs kept), over HTTP.  Goal:
  under 200 ms.
- ``test_page_draw``: the run page of that run in headless Chromium (where
  Chromium, chromedriver and selenium are installed), from asking for the
  page to its graph and its table drawn.  Goal: under 1 s.
- ``test_watched_run``: a 1,000-step run of tiny steps with an
  ``SQLiteStore``, alone and while a UI follows it (its events stream, in
  another process, as a browser would); ``extra_info["watched_over_alone"]``
  is the ratio of the medians.  Goal: under 1.05.

The smoke run (benchmarks disabled) uses 200 steps and one round each.
"""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

import microdag
from bench_cli import env
from bench_flow import add_up, disabled, layered_deps
from microdag.stores import SQLiteStore

FLOW = '[flow]\nname = "tiny"\n[steps.a]\ncommand = ["true"]\n'


class Served:
    """``python -m microdag ui`` in ``folder``, until :meth:`stop`."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "microdag", "ui", "--no-open", *args], cwd=folder, env=env(),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        url = self.process.stdout.readline().decode().split(": ", 1)[1].strip()
        parts = urllib.parse.urlsplit(url)
        self.netloc, self.port = parts.netloc, parts.port or 80
        self.token = urllib.parse.parse_qs(parts.query)["token"][0]

    def get(self, path: str) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("GET", path, headers={"Host": self.netloc, "Cookie": f"microdag_token={self.token}"})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        assert response.status == 200, (response.status, body[:200])
        return body

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.mark.benchmark(group="ui")
@pytest.mark.parametrize("what", ["python -c pass", "microdag ui: first page"])
def test_first_page(benchmark: Any, what: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    (tmp_path / "flow.toml").write_text(FLOW)
    rounds = 1 if disabled(request) else 15

    def once() -> None:
        if what == "python -c pass":
            subprocess.run([sys.executable, "-c", "pass"], env=env(), check=True)
            return
        served = Served(tmp_path)
        try:
            assert b"<script" in served.get("/")
        finally:
            served.stop()

    times = []

    def timed() -> None:
        started = time.perf_counter()
        once()
        times.append(time.perf_counter() - started)

    timed()  # bytecode caches written, as an installed package has them
    times.clear()
    benchmark.pedantic(timed, rounds=rounds, iterations=1)
    median = statistics.median(times) * 1e3
    benchmark.extra_info["median_ms"] = round(median, 1)
    if what == "python -c pass":
        _BASE["ms"] = median
    elif "ms" in _BASE:
        benchmark.extra_info["over_python_ms"] = round(median - _BASE["ms"], 1)


_BASE: dict[str, float] = {}


def _stored_run(folder: Path, n: int) -> str:
    flow = microdag.Flow("big")
    for name, ds in layered_deps(n).items():
        flow.add(name, add_up, depends_on=ds)
    store = SQLiteStore(str(folder / ".microdag" / "runs.db"))
    try:
        return flow.run(store=store).id
    finally:
        store.close()


@pytest.mark.benchmark(group="ui")
def test_run_document(benchmark: Any, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    n = 200 if disabled(request) else 10_000
    (tmp_path / ".microdag").mkdir()
    run_id = _stored_run(tmp_path, n)
    served = Served(tmp_path)
    try:
        body = benchmark.pedantic(lambda: served.get(f"/api/runs/{run_id}"), rounds=1 if disabled(request) else 20,
                                  warmup_rounds=0 if disabled(request) else 2)
    finally:
        served.stop()
    assert body.count(b'"status": "succeeded"') >= n
    benchmark.extra_info["steps"] = n
    benchmark.extra_info["bytes"] = len(body)


@pytest.mark.benchmark(group="ui")
def test_page_draw(benchmark: Any, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The run page of a 10,000-step run in headless Chromium: from asking for
    the page to its graph (by layers) and its table of steps drawn."""
    import shutil

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("no Chromium and chromedriver here")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    n = 200 if disabled(request) else 10_000
    (tmp_path / ".microdag").mkdir()
    run_id = _stored_run(tmp_path, n)
    served = Served(tmp_path)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    drawn = "svg.dag g.layer" if n > 1000 else "svg.dag g.node"

    def draw() -> None:
        browser.get(f"http://{served.netloc}/#/runs")
        WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "table#runs"))
        started = time.perf_counter()
        browser.get(f"http://{served.netloc}/#/runs/{run_id}")
        WebDriverWait(browser, 60, poll_frequency=0.01).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, drawn) and d.find_elements(By.CSS_SELECTOR, "table#tasks tr.task")
        )
        times.append(time.perf_counter() - started)

    times: list[float] = []
    try:
        browser.get(f"http://{served.netloc}/?token={served.token}")
        benchmark.pedantic(draw, rounds=1 if disabled(request) else 10, warmup_rounds=0 if disabled(request) else 1)
    finally:
        browser.quit()
        served.stop()
    benchmark.extra_info["steps"] = n
    benchmark.extra_info["median_ms"] = round(statistics.median(times) * 1e3, 1)


def _events(served: Served, run_id: str, stop: threading.Event) -> None:
    """Follow the run's events stream as the page does (until it ends)."""
    while not stop.is_set():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
            conn.request("GET", f"/api/runs/{run_id}/events",
                         headers={"Host": served.netloc, "Cookie": f"microdag_token={served.token}"})
            response = conn.getresponse()
            if response.status == 200:
                response.read()
                return
            response.read()
        finally:
            conn.close()
        time.sleep(0.02)


@pytest.mark.benchmark(group="ui-watched")
@pytest.mark.parametrize("watched", [False, True], ids=["alone", "watched"])
def test_watched_run(benchmark: Any, watched: bool, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    n = 200 if disabled(request) else 1_000
    flow = microdag.Flow("watched")
    for name, ds in layered_deps(n).items():
        flow.add(name, _tiny, depends_on=ds)
    (tmp_path / ".microdag").mkdir()
    served = Served(tmp_path) if watched else None
    times = []

    def once() -> None:
        from microdag._result import new_run_id

        store = SQLiteStore(str(tmp_path / ".microdag" / "runs.db"))
        run_id = new_run_id()
        stop = threading.Event()
        follower = None
        if served is not None:
            follower = threading.Thread(target=_events, args=(served, run_id, stop))
            follower.start()
        started = time.perf_counter()
        flow.run(store=store, run_id=run_id)
        times.append(time.perf_counter() - started)
        store.close()
        stop.set()
        if follower is not None:
            follower.join(30)

    try:
        benchmark.pedantic(once, rounds=1 if disabled(request) else 15, warmup_rounds=0 if disabled(request) else 1)
    finally:
        if served is not None:
            served.stop()
    median = statistics.median(times[-15:])
    _WATCH["watched" if watched else "alone"] = median
    benchmark.extra_info["median_ms"] = round(median * 1e3, 2)
    if watched and "alone" in _WATCH:
        benchmark.extra_info["watched_over_alone"] = round(median / _WATCH["alone"], 3)


_WATCH: dict[str, float] = {}


def _tiny(**deps: Any) -> int:
    time.sleep(0.001)  # a step that does a little work, so the run lasts long enough to be watched
    return 1
