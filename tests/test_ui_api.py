"""The UI's JSON API against a real ``python -m microdag ui`` server.

Gates first (token, Host, Origin, paths: nothing leaks without them), then
what a user does: run a flow and watch it live, read logs and outputs, run
one step on a past run, resume a failed run, cancel a live one, see a run
started from the shell, edit and save a flow file (untouched bytes kept,
invalid flows refused).
"""

import json
import os
import subprocess
import sys
import time
import urllib.parse

import pytest

from support import child_env, run_cli
from uiserver import FLOW, MAPPED, ROOT, UI, quote

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and process groups")

ROUTES = [
    ("GET", "/"), ("GET", "/static/app.js"), ("GET", "/api/runs"), ("GET", "/api/runs/x"),
    ("GET", "/api/runs/x/events"), ("GET", "/api/runs/x/logs/s"), ("GET", "/api/runs/x/output/s"),
    ("POST", "/api/runs"), ("POST", "/api/runs/x/resume"), ("POST", "/api/runs/x/cancel"),
    ("POST", "/api/runs/x/steps/s/run"), ("GET", "/api/flows"), ("GET", "/api/flows/flow.toml"),
    ("POST", "/api/flows/flow.toml/check"), ("PUT", "/api/flows/flow.toml"), ("GET", "/api/schema"),
    ("POST", "/api/flows"), ("GET", "/api/flows/flow.toml/steps/s/code"), ("PUT", "/api/flows/flow.toml/steps/s/code"),
    ("POST", "/api/flows/flow.toml/steps/s/run"), ("GET", "/api/runs/x/steps/s/output"),
    ("GET", "/api/runs/x/steps/s/logs"),
]


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> "UI":
    folder = tmp_path_factory.mktemp("served")
    (folder / "flow.toml").write_text(FLOW)
    (folder / "sub").mkdir()
    (folder / "sub" / "other.json").write_text(json.dumps(
        {"flow": {"name": "other"}, "steps": {"one": {"command": ["echo", "1"], "output": "json"}}}, indent=2
    ) + "\n")
    (folder / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # not a flow: not listed
    (folder / "flows.py").write_text(
        "import microdag\nflow = microdag.Flow('py')\n\n@flow.step\ndef hello():\n    return 'hi'\n"
    )
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.toml").write_text('[flow]\nname = "secret"\n[steps.a]\ncommand = ["true"]\n')
    os.symlink(outside / "secret.toml", folder / "link.toml")
    server = UI(str(folder), "flows.py:flow")
    yield server
    assert server.stop() == 0, server.stderr


# -- the gates --------------------------------------------------------------------------


def test_first_line_is_the_url_with_its_token(ui: UI) -> None:
    assert ui.first_line.startswith(f"microdag ui: http://127.0.0.1:{ui.port}/?token=")
    assert len(ui.token) >= 24


@pytest.mark.parametrize("method,path", ROUTES)
def test_every_route_needs_the_token(ui: UI, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": "microdag_token=wrong"}):
        status, _, body = ui.request(method, path, {} if method != "GET" else None, token=False, headers=headers)
        assert status == 401, (method, path, headers)
        assert json.loads(body) == {"error": "the token is missing or wrong: open the URL the server printed"}


@pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1.nip.io:{port}", "127.0.0.1:1", ""])
def test_a_foreign_host_header_is_refused(ui: UI, host: str) -> None:
    status, _, body = ui.request("GET", "/api/runs", headers={"Host": host.format(port=ui.port)})
    assert status == 403 and b"Host" in body and b"runs" not in body
    status, _, _ = ui.request("GET", f"/?token={ui.token}", token=False, headers={"Host": "evil.example"})
    assert status == 403


def test_localhost_is_the_same_server(ui: UI) -> None:
    status, _, _ = ui.request("GET", "/api/runs", headers={"Host": f"localhost:{ui.port}"})
    assert status == 200


def test_the_token_url_sets_a_strict_cookie_and_leaves_the_address_bar(ui: UI) -> None:
    status, headers, _ = ui.request("GET", f"/?token={ui.token}", token=False)
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"microdag_token={ui.token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert headers["referrer-policy"] == "no-referrer"
    status, _, _ = ui.request("GET", "/?token=nope", token=False)
    assert status == 401
    status, headers, body = ui.request("GET", "/", token="cookie")
    assert status == 200 and b"<script" in body
    assert "script-src 'self'" in headers["content-security-policy"]


def test_changes_need_intent_not_just_the_cookie(ui: UI) -> None:
    run = {"flow": "flow.toml"}
    # a cross-site form or fetch carries the cookie but cannot add the header
    status, _, _ = ui.request("POST", "/api/runs", run, token="cookie")
    assert status == 403
    evil = {"X-Microdag": "1", "Origin": "http://evil.example"}
    status, _, _ = ui.request("POST", "/api/runs", run, token="cookie", headers=evil)
    assert status == 403
    status, _, _ = ui.request("PUT", "/api/flows/flow.toml", {"doc": {}}, token="cookie")
    assert status == 403
    status, _, _ = ui.request("OPTIONS", "/api/runs", token=False, headers={"Origin": "http://evil.example"})
    assert status == 403
    ok = {"X-Microdag": "1", "Origin": f"http://127.0.0.1:{ui.port}"}
    status, _, body = ui.request("POST", "/api/runs", run, token="cookie", headers=ok)
    assert status == 201, body
    ui.wait_run(json.loads(body)["id"])


@pytest.mark.parametrize("path", [
    "..%2Fsecret.toml", "%2Fetc%2Fpasswd", "sub%2F..%2F..%2Fx.toml", "link.toml", "flows.py", "sub%2F.%2Fother.json",
    "nope%00.toml", "~%2Fx.toml", "sub%5Cother.json",
])
def test_paths_outside_the_folder_are_refused(ui: UI, path: str) -> None:
    status, _, body = ui.request("GET", f"/api/flows/{path}")
    assert status == 403, body
    assert b"secret" not in body or b"secret.toml" in body
    status, _, _ = ui.request("PUT", f"/api/flows/{path}", {"doc": {"flow": {"name": "x"}, "steps": {}}})
    assert status == 403
    status, _, _ = ui.request("POST", "/api/runs", {"flow": urllib.parse.unquote(path)})
    assert status == 403


def test_one_connection_serves_request_after_request(ui: UI) -> None:
    """Bodies the server does not need (a refused request, a route without
    one) are read all the same, so the next request on the connection is whole."""
    import http.client

    conn = http.client.HTTPConnection(ui.host, ui.port, timeout=30)
    auth = {"Host": ui.netloc, "Authorization": f"Bearer {ui.token}", "Content-Type": "application/json"}
    for method, path, headers, expected in (
        ("POST", "/api/runs/nope/cancel", auth, 404),
        ("POST", "/api/runs", {**auth, "Authorization": "Bearer wrong"}, 401),
        ("POST", "/api/runs", {**auth, "Host": "evil.example"}, 403),
        ("GET", "/api/flows", auth, 200),
    ):
        conn.request(method, path, body=b'{"flow": "flow.toml"}' if method == "POST" else None, headers=headers)
        response = conn.getresponse()
        response.read()
        assert response.status == expected, (method, path)
    conn.close()
    status, _, body = ui.request("POST", "/api/runs", headers={"Content-Length": str(10 << 20)})
    assert status == 413


def test_flows_lists_flow_files_and_named_flows_only(ui: UI) -> None:
    flows = ui.get("/api/flows")["flows"]  # type: ignore[index]
    paths = [f["path"] for f in flows]
    assert paths == ["flows.py:flow", "flow.toml", "sub/other.json"]
    by = {f["path"]: f for f in flows}
    assert by["flows.py:flow"]["editable"] is False and by["flow.toml"]["name"] == "demo"


# -- runs ---------------------------------------------------------------------------------


def _events(ui: UI, run_id: str) -> "list[tuple[str, dict[str, object]]]":
    status, headers, body = ui.request("GET", f"/api/runs/{run_id}/events", timeout=60)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    out = []
    for block in body.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_run_watch_and_read_it(ui: UI) -> None:
    run_id = ui.post("/api/runs", {"flow": "flow.toml", "inputs": {"n": 7, "word": "héllo <b>"}}, 201)["id"]
    events = _events(ui, run_id)
    assert events[-1][0] == "end" and [e for e, _ in events[:-1]] == ["update"] * (len(events) - 1)
    seen = {t["step"]: t for _, data in events for t in data["tasks"]}  # type: ignore[union-attr]
    assert {s: t["status"] for s, t in seen.items()} == {"count": "succeeded", "shout": "succeeded"}
    doc = ui.get(f"/api/runs/{run_id}")
    assert doc["run"]["status"] == "succeeded" and doc["run"]["inputs"] == {"n": 7, "word": "héllo <b>"}
    assert doc["flow_path"] == "flow.toml" and doc["live"] is False and doc["resumable"] is False
    assert [n["name"] for n in doc["graph"]["nodes"]] == ["count", "shout"]
    assert doc["graph"]["edges"] == [[0, 1]]
    tasks = {t["step"]: t for t in doc["tasks"]}
    assert tasks["count"]["output"] == "7" and tasks["shout"]["output"] == '"h\\u00e9llo <b>!"'.encode().decode(
        "unicode_escape")
    assert tasks["shout"]["has_log"] is True
    assert ui.get(f"/api/runs/{run_id}/logs/shout") == {"text": "to stderr\n"}
    assert ui.get(f"/api/runs/{run_id}/output/count") == {"output": 7, "json": True}
    runs = ui.get("/api/runs?flow=demo&status=succeeded")
    assert run_id in [r["id"] for r in runs["runs"]] and "demo" in runs["flows"]
    assert ui.get("/api/runs?flow=nope")["runs"] == []


def test_unknown_runs_and_steps_are_404(ui: UI) -> None:
    for path in ("/api/runs/nope", "/api/runs/nope/events", "/api/runs/nope/logs/x", "/api/runs/nope/output/x"):
        status, _, body = ui.request("GET", path)
        assert status == 404 and b"nope" in body, path
    status, _, _ = ui.request("POST", "/api/runs/nope/resume", {})
    assert status == 404


def test_a_run_that_cannot_start_says_why(ui: UI) -> None:
    run_id = ui.post("/api/runs", {"flow": "flow.toml", "inputs": {"unknown": 1}}, 201)["id"]
    doc = ui.wait_run(run_id)
    assert doc["run"]["status"] == "failed"
    assert "unknown" in doc["run"]["problem"] and "exit code 2" in doc["run"]["problem"]
    status, _, body = ui.request("POST", "/api/runs", {"flow": "flow.toml", "inputs": {"bad name": 1}})
    assert status == 400 and b"bad name" in body
    status, _, body = ui.request("POST", "/api/runs", {"flow": 3})
    assert status == 400
    status, _, body = ui.request("POST", "/api/runs", {"flow": "missing.toml"})
    assert status == 404 and b"missing.toml" in body


def test_run_one_step_on_a_past_run(ui: UI) -> None:
    run_id = ui.post("/api/runs", {"flow": "flow.toml", "inputs": {"word": "again"}}, 201)["id"]
    ui.wait_run(run_id)
    result = ui.post(f"/api/runs/{run_id}/steps/shout/run")
    assert result == {"status": "succeeded", "output": "again!", "error": None, "log": "to stderr\n"}
    result = ui.post(f"/api/runs/{run_id}/steps/{quote('no such')}/run")
    assert result["status"] == "failed" and "no such" in result["error"]


def test_resume_a_failed_run(ui: UI) -> None:
    folder = ui.folder
    with open(os.path.join(folder, "flaky.toml"), "w") as f:
        f.write('[flow]\nname = "flaky"\n[steps.first]\ncommand = ["echo", "1"]\n'
                '[steps.needs-file]\ncommand = ["cat", "input.txt"]\ndepends_on = ["first"]\n')
    run_id = ui.post("/api/runs", {"flow": "flaky.toml"}, 201)["id"]
    doc = ui.wait_run(run_id)
    assert doc["run"]["status"] == "failed" and doc["resumable"] is True
    failed = {t["step"]: t for t in doc["tasks"]}["needs-file"]
    assert failed["error"]["type"] == "CommandError"
    with open(os.path.join(folder, "input.txt"), "w") as f:
        f.write("there now\n")
    assert ui.post(f"/api/runs/{run_id}/resume", {}, 201) == {"id": run_id}
    doc = ui.wait_run(run_id)
    assert doc["run"]["status"] == "succeeded"
    tasks = {t["step"]: t for t in doc["tasks"]}
    assert tasks["needs-file"]["output"] == '"there now"' and tasks["first"]["attempts"] == 1
    status, _, body = ui.request("POST", f"/api/runs/{run_id}/resume", {})
    assert status == 409 and b"nothing to resume" in body


def test_cancel_a_live_run(ui: UI) -> None:
    with open(os.path.join(ui.folder, "slow.toml"), "w") as f:
        f.write('[flow]\nname = "slow"\n[steps.nap]\ncommand = ["sleep", "60"]\n'
                '[steps.after]\ncommand = ["echo", "no"]\ndepends_on = ["nap"]\n')
    run_id = ui.post("/api/runs", {"flow": "slow.toml"}, 201)["id"]
    deadline = time.monotonic() + 30
    while ui.get(f"/api/runs/{run_id}")["run"]["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    doc = ui.get(f"/api/runs/{run_id}")
    assert doc["live"] is True and doc["cancellable"] is True
    started = time.monotonic()
    assert ui.post(f"/api/runs/{run_id}/cancel", {}) == {"ok": True}
    events = _events(ui, run_id)
    assert events[-1][0] == "end" and time.monotonic() - started < 20
    doc = ui.wait_run(run_id)
    assert doc["run"]["status"] == "cancelled"
    assert {t["step"]: t["status"] for t in doc["tasks"]} == {"nap": "cancelled", "after": "cancelled"}
    status, _, body = ui.request("POST", f"/api/runs/{run_id}/cancel", {})
    assert status == 409 and b"not running" in body


def test_runs_started_from_the_shell_show_up_and_can_be_cancelled(ui: UI) -> None:
    with open(os.path.join(ui.folder, "shell.toml"), "w") as f:
        f.write('[flow]\nname = "shell"\n[steps.nap]\ncommand = ["sleep", "60"]\n')
    shell = subprocess.Popen(
        [sys.executable, "-m", "microdag", "run", "shell.toml", "--quiet"], cwd=ui.folder, env=child_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            runs = [r for r in ui.get("/api/runs?flow=shell")["runs"] if r["status"] == "running"]
            if runs:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        doc = ui.get(f"/api/runs/{runs[0]['id']}")
        assert doc["live"] is True and doc["cancellable"] is True
        ui.post(f"/api/runs/{runs[0]['id']}/cancel", {})
        assert shell.wait(20) == 130
        assert ui.wait_run(runs[0]["id"])["run"]["status"] == "cancelled"
    finally:
        shell.kill()
        shell.wait()


def test_a_huge_run_is_summarised_by_layers(ui: UI) -> None:
    steps = "".join(f'[steps.s{i}]\ncommand = ["true"]\n' + (f'depends_on = ["s{(i - 1) // 2}"]\n' if i else "")
                    for i in range(1500))
    with open(os.path.join(ui.folder, "big.toml"), "w") as f:
        f.write('[flow]\nname = "big"\n' + steps)
    graph = ui.get("/api/flows/big.toml")["graph"]
    assert graph["mode"] == "layers" and graph["total"] == 1500
    assert [row["count"] for row in graph["layers"]] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 477]
    assert all(len(row["sample"]) <= 20 for row in graph["layers"])


# -- flows ------------------------------------------------------------------------------


def test_save_keeps_every_untouched_byte(ui: UI) -> None:
    path = os.path.join(ui.folder, "edit.toml")
    with open(path, "w") as f:
        f.write(FLOW)
    doc = ui.get("/api/flows/edit.toml")
    assert doc["problems"] == [] and doc["editable"] is True
    new = json.loads(json.dumps(doc["doc"]))
    new["steps"]["shout"]["retries"] = 2
    new["steps"]["tail"] = {"command": ["echo", "{steps.shout}"]}
    status, _, body = ui.request("PUT", "/api/flows/edit.toml", {"doc": new})
    assert status == 200, body
    saved = json.loads(body)
    assert saved["saved"] is True and [s["name"] for s in saved["steps"]] == ["count", "shout", "tail"]
    text = open(path).read()
    assert text.startswith(FLOW.rstrip("\n").rsplit("\n", 1)[0])  # every line before the edit, as it was
    assert "# a flow for the UI tests" in text and "n = 3          # how many" in text
    import tomllib

    import microdag

    assert tomllib.loads(text) == new
    flow = microdag.load_flow(path)
    assert flow.steps == ("count", "shout", "tail")


def test_save_keeps_line_endings_and_a_byte_order_mark(ui: UI) -> None:
    path = os.path.join(ui.folder, "crlf.toml")
    original = "\ufeff" + FLOW.replace("\n", "\r\n")
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(original)
    os.chmod(path, 0o640)
    doc = ui.get("/api/flows/crlf.toml")["doc"]
    doc["steps"]["count"]["timeout"] = 5
    status, _, body = ui.request("PUT", "/api/flows/crlf.toml", {"doc": doc})
    assert status == 200, body
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    assert text.startswith("\ufeff# a flow for the UI tests\r\n") and "\n" not in text.replace("\r\n", "")
    assert text.replace("timeout = 5\r\n", "") == original
    assert os.stat(path).st_mode & 0o777 == 0o640  # its permissions kept


def test_an_invalid_flow_is_never_saved(ui: UI) -> None:
    path = os.path.join(ui.folder, "keep.toml")
    with open(path, "w") as f:
        f.write(FLOW)
    doc = ui.get("/api/flows/keep.toml")["doc"]
    doc["steps"]["shout"]["depends_on"] = ["count", "ghost"]
    doc["steps"]["count"]["retries"] = -1
    checked = ui.post("/api/flows/keep.toml/check", {"doc": doc})
    located = {(p["step"], p["key"]) for p in checked["problems"]}
    assert located == {("count", "retries"), ("shout", "depends_on")}
    assert all("keep.toml" in p["message"] for p in checked["problems"])
    status, _, body = ui.request("PUT", "/api/flows/keep.toml", {"doc": doc})
    assert status == 422
    refused = json.loads(body)
    assert refused["error"] == "not saved: the flow has 2 problems" and len(refused["problems"]) == 2
    assert open(path).read() == FLOW
    status, _, body = ui.request("PUT", "/api/flows/keep.toml", {"doc": "nope"})
    assert status == 400 and open(path).read() == FLOW


def test_the_run_form_gets_each_inputs_type(ui: UI) -> None:
    with open(os.path.join(ui.folder, "typed.toml"), "w") as f:
        f.write('[flow]\nname = "typed"\n[inputs]\nlimit = { type = "integer", default = 2, description = "how many" }\n'
                'mode = { type = "string", enum = ["a", "b"] }\n[steps.s]\ncommand = ["echo", "{inputs.limit}{inputs.mode}"]\n')
    inputs = {i["name"]: i for i in ui.get("/api/flows/typed.toml")["inputs"]}
    assert inputs["limit"] == {"name": "limit", "default": 2, "required": False, "type": "an integer",
                               "schema": {"type": "integer", "description": "how many"}}
    assert inputs["mode"]["required"] is True and inputs["mode"]["schema"]["enum"] == ["a", "b"]
    run_id = ui.post("/api/runs", {"flow": "typed.toml", "inputs": {"mode": "c"}}, 201)["id"]
    doc = ui.wait_run(run_id)
    assert doc["run"]["status"] == "failed" and "expected one of 'a', 'b', not 'c'" in doc["run"]["problem"]


def test_python_flows_are_read_only(ui: UI) -> None:
    doc = ui.get(f"/api/flows/{quote('flows.py:flow')}")
    assert doc["editable"] is False and doc["doc"] is None and doc["name"] == "py"
    assert [s["name"] for s in doc["steps"]] == ["hello"]
    status, _, _ = ui.request("PUT", f"/api/flows/{quote('flows.py:flow')}", {"doc": {}})
    assert status == 403


def test_schema_is_the_flow_file_schema(ui: UI) -> None:
    schema = ui.get("/api/schema")
    with open(os.path.join(ROOT, "src", "microdag", "flowfile.schema.json")) as f:
        assert schema == json.load(f)


def test_a_non_loopback_host_is_warned_about(tmp_path: "os.PathLike[str]") -> None:
    server = UI(str(tmp_path), "--host", "0.0.0.0")
    try:
        assert server.first_line.startswith("microdag ui: http://0.0.0.0:")
        # any address of the machine is its name; a DNS name that is not the machine's is not
        for host, expected in ((f"127.0.0.1:{server.port}", 200), (f"[::1]:{server.port}", 200),
                               (f"192.0.2.7:{server.port}", 200), (f"evil.example:{server.port}", 403),
                               ("127.0.0.1:1", 403)):
            status, _, _ = server.request("GET", "/api/runs", headers={"Host": host})
            assert status == expected, host
    finally:
        assert server.stop() == 0
    assert "anyone who can reach port" in server.stderr


def test_bad_command_lines_get_one_line(tmp_path: "os.PathLike[str]") -> None:
    for args, words in ((["missing.toml"], "no such flow file"), (["--store", "memory"], "other processes"),
                        (["--port", "70000"], "65535")):
        done = run_cli("ui", "--no-open", *args, cwd=tmp_path, timeout=30)
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr


# -- limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/api/runs/x/output/s?item=99999999999999999999999", "/api/runs/x/logs/s?item=99999999999999999999999",
    "/api/runs/x/output/s?item=%C2%B2", "/api/runs?limit=99999999999999999999999", "/api/runs?limit=%C2%B2",
])
def test_a_number_the_store_cannot_take_is_400(ui: UI, path: str) -> None:
    status, _, body = ui.request("GET", path)
    assert status == 400 and b"must be a whole number" in body, (status, body)


@pytest.fixture
def bare() -> "object":
    """A server in this process (no route is reached: every request here is refused
    or never finished), with a short read timeout and a cap of 8 connections."""
    import threading

    from microdag.ui._server import Server

    server = Server("127.0.0.1", 0, None, "t" * 32)  # type: ignore[arg-type]
    server.idle, server.max_connections = 0.5, 8
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


def _connect(server: "object", timeout: float = 10) -> "object":
    import socket

    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)  # type: ignore[attr-defined]


def _reply(sock: "object") -> bytes:
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)  # type: ignore[attr-defined]
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    return data


def test_an_idle_connection_is_closed_after_the_read_timeout(bare: "object") -> None:
    sock = _connect(bare)
    started = time.monotonic()
    try:
        assert sock.recv(100) == b""  # type: ignore[attr-defined]  # closed, not held
    finally:
        sock.close()  # type: ignore[attr-defined]
    assert time.monotonic() - started < 5


def test_connections_past_the_cap_are_refused_without_a_thread(bare: "object") -> None:
    import threading

    bare.idle = 30.0  # type: ignore[attr-defined]  # the idle ones stay for this test
    before = threading.active_count()
    held = [_connect(bare) for _ in range(8)]
    try:
        deadline = time.monotonic() + 5
        while bare.active < 8 and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.01)
        extra = [_connect(bare) for _ in range(20)]
        for sock in extra:  # answered at once, before they send anything
            assert _reply(sock).startswith(b"HTTP/1.1 503"), "a connection past the cap"
            sock.close()  # type: ignore[attr-defined]
        assert threading.active_count() <= before + 8
    finally:
        for sock in held:
            sock.close()  # type: ignore[attr-defined]
    time.sleep(0.3)
    sock = _connect(bare)
    sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{bare.port}\r\n\r\n".encode())  # type: ignore[attr-defined]
    assert _reply(sock).startswith(b"HTTP/1.1 401")  # served again once they went
    sock.close()  # type: ignore[attr-defined]


def test_the_token_is_checked_before_the_body_is_read(bare: "object") -> None:
    sock = _connect(bare)
    head = (f"POST /api/runs HTTP/1.1\r\nHost: 127.0.0.1:{bare.port}\r\nAuthorization: Bearer wrong\r\n"  # type: ignore[attr-defined]
            f"Content-Type: application/json\r\nContent-Length: {4 << 20}\r\n\r\n")
    sock.sendall(head.encode())  # type: ignore[attr-defined]
    assert _reply(sock).startswith(b"HTTP/1.1 401")  # at once: the 4 MiB never came
    sock.close()  # type: ignore[attr-defined]


# -- what a new user found ----------------------------------------------------------------


def test_a_live_run_started_from_the_ui_has_its_graph(ui: UI) -> None:
    with open(os.path.join(ui.folder, "drawn.toml"), "w") as f:
        f.write('[flow]\nname = "drawn"\n[steps.nap]\ncommand = ["sleep", "60"]\n'
                '[steps.after]\ncommand = ["echo", "no"]\ndepends_on = ["nap"]\n')
    run_id = ui.post("/api/runs", {"flow": "drawn.toml"}, 201)["id"]
    try:
        deadline = time.monotonic() + 30
        while (doc := ui.get(f"/api/runs/{run_id}"))["run"]["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert doc["live"] is True
        assert doc["graph"] is not None, doc
        assert [n["name"] for n in doc["graph"]["nodes"]] == ["nap", "after"]
        assert doc["graph"]["nodes"][1]["status"] == "pending"
    finally:
        ui.post(f"/api/runs/{run_id}/cancel", {})
    # a page opened before the run began (no graph yet) gets it from the events
    events = _events(ui, run_id)
    assert any("graph" in data for _, data in events)
    graph = next(data["graph"] for _, data in events if "graph" in data)
    assert [n["name"] for n in graph["nodes"]] == ["nap", "after"]  # type: ignore[index]


BROKEN = {
    "broken/unparsable.toml": '[flow]\nname = "oops"\n[steps.a\ncommand = ["true"]\n',
    "broken/seven.toml": '[flow]\nname = "seven"\n' + "".join(
        f'[steps.s{i}]\ncommand = ["true"]\ndepends_on = ["ghost{i}"]\n' for i in range(7)),
    "broken/bad.json": '{"flow": {"name": "j"}, "steps": {"a": {"command": ["true"]},}}',
}


def test_the_flows_list_shows_broken_flow_files_with_their_problems(ui: UI) -> None:
    os.makedirs(os.path.join(ui.folder, "broken"), exist_ok=True)
    for rel, text in BROKEN.items():
        with open(os.path.join(ui.folder, rel), "w") as f:
            f.write(text)
    with open(os.path.join(ui.folder, "broken", "settings.toml"), "w") as f:
        f.write("[tool.x]\nnot = 'a flow'\n")  # a TOML file that is no flow: still not listed
    listed = {f["path"]: f for f in ui.get("/api/flows")["flows"]}
    for rel in BROKEN:
        assert rel in listed, f"{rel} is not listed"
        detail = ui.get(f"/api/flows/{quote(rel)}")
        assert listed[rel]["problems"] == [p["message"] for p in detail["problems"]], rel
        assert listed[rel]["problems"], rel
    assert len(listed["broken/seven.toml"]["problems"]) == 7
    assert listed["broken/seven.toml"]["name"] == "seven"
    assert "broken/settings.toml" not in listed
    assert listed["flow.toml"]["problems"] == []




def _python_run(ui: UI, *argv: str, fail: bool = False) -> str:
    """``python -m microdag ARGV`` in the served folder: a Python flow the UI was not started with."""
    with open(os.path.join(ui.folder, "mapped.py"), "w") as f:
        f.write(MAPPED)
    env = child_env(**({"FAIL": "1"} if fail else {}))
    done = subprocess.run([sys.executable, "-m", "microdag", *argv, "--quiet"], cwd=ui.folder, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == (1 if fail else 0), done.stderr
    return done.stderr


def test_a_run_that_cannot_be_resumed_here_says_why_and_resumed_items_stay_in_order(ui: UI) -> None:
    _python_run(ui, "run", "mapped.py:flow", fail=True)
    (run_id,) = [r["id"] for r in ui.get("/api/runs?flow=mapped")["runs"]]
    doc = ui.get(f"/api/runs/{run_id}")
    assert doc["run"]["status"] == "failed" and doc["resumable"] is False
    why = doc["resume_why"]
    assert why and "python -m microdag ui" in why and f"python -m microdag resume {run_id}" in why
    _python_run(ui, "resume", run_id)
    doc = ui.get(f"/api/runs/{run_id}")
    assert doc["run"]["status"] == "succeeded" and doc["resume_why"] is None
    order = [(t["step"], t["item"]) for t in doc["tasks"]]
    assert order == [("a", None), ("m", 0), ("m", 1), ("m", 2), ("m", None), ("b", None)]
