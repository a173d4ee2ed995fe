"""A ``python -m microdag ui`` server in a child process, and a client for it.

The tests of the UI (API and browser) start the real command in a folder of
their own, read its first line for the URL and token, and stop it with
Ctrl-C (SIGINT) at the end, checking that it exits 0.
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

from support import child_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLOW = """\
# a flow for the UI tests
[flow]
name = "demo"

[inputs]
n = 3          # how many
word = "hello"

[steps.count]
command = ["echo", "{inputs.n}"]
output = "json"

[steps.shout]   # says the word
command = ["sh", "-c", "echo 'to stderr' >&2; echo \\"$0!\\"", "{inputs.word}"]
depends_on = ["count"]
"""

#: A Python flow with a map step whose third item fails when FAIL is set (run it from the shell).
MAPPED = """\
import os
import microdag

flow = microdag.Flow("mapped")
flow.add("a", lambda: [1, 2, 3])


def m(a):
    if a == 3 and os.environ.get("FAIL"):
        raise ValueError("three")
    return a


flow.add("m", m, map="a")
flow.add("b", lambda m: sum(m))
"""


class UI:
    """A running UI server."""

    def __init__(self, folder: str, *args: str, env: "dict[str, str] | None" = None) -> None:
        self.folder = folder
        environ = child_env(**(env or {}))
        environ.pop("DISPLAY", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "microdag", "ui", "--no-open", *args], cwd=folder, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=environ, start_new_session=True,
        )
        # its stderr read while it runs: a full pipe would stop the server at its next write
        self._errors: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        assert self.process.stdout is not None
        self.first_line = self.process.stdout.readline().decode()
        if not self.first_line.startswith("microdag ui: http://"):
            self.stop()
            raise AssertionError(f"unexpected first line {self.first_line!r}: {self.stderr}")
        url = self.first_line.split(": ", 1)[1].strip()
        parts = urllib.parse.urlsplit(url)
        self.url = url
        self.token = urllib.parse.parse_qs(parts.query)["token"][0]
        self.netloc = parts.netloc
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.base = f"http://{self.netloc}"
        self.stderr = ""

    def request(
        self, method: str, path: str, body: "object | None" = None, *, token: "bool | str" = True,
        headers: "dict[str, str] | None" = None, timeout: float = 30,
    ) -> "tuple[int, dict[str, str], bytes]":
        """One request: ``token`` True sends the bearer token, a string sends
        that as the cookie... see the tests; returns status, headers, body."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        sent = {"Host": self.netloc}
        if token is True:
            sent["Authorization"] = f"Bearer {self.token}"
        elif token == "cookie":
            sent["Cookie"] = f"microdag_token={self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for key, value in sent.items():
            conn.putheader(key, value)
        if data is not None:
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        response = conn.getresponse()
        out = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        conn.close()
        return out

    def get(self, path: str, **kw: "object") -> "object":
        status, _, body = self.request("GET", path, **kw)  # type: ignore[arg-type]
        assert status == 200, (status, body)
        return json.loads(body)

    def post(self, path: str, body: object = None, expect: int = 200) -> "object":
        status, _, data = self.request("POST", path, {} if body is None else body)
        assert status == expect, (status, data)
        return json.loads(data)

    def wait_run(self, run_id: str, timeout: float = 60) -> "dict[str, object]":
        """The run once it is no longer live."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.get(f"/api/runs/{run_id}")
            assert isinstance(doc, dict)
            if not doc["live"] and doc["run"]["status"] not in ("pending", "running"):
                return doc
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} still live after {timeout} s: {doc['run']}")
            time.sleep(0.1)

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._errors.append(line)

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            code = self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait()
        self._reader.join(10)
        self.stderr = b"".join(self._errors).decode(errors="replace")
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code


def quote(text: str) -> str:
    """A path segment as the page sends it (``encodeURIComponent``)."""
    return urllib.parse.quote(text, safe="")
