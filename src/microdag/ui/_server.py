"""The UI's HTTP server: the standard library's, with every request checked.

It can start programs, so it lets no one else in.  Each request passes three
gates before any route runs:

1. **Host**: the ``Host`` header must name the address the server listens on
   (``localhost`` too when that is a loopback address; any IP address and the
   machine's names when it listens on every address).  A page of another
   site that rebinds its DNS name to 127.0.0.1 sends its own name: 403.
2. **Token**: the secret printed on the first line (``?token=`` on the page's
   URL sets an HttpOnly, SameSite=Strict cookie and redirects to the bare
   URL; scripts send ``Authorization: Bearer TOKEN``).  Compared in constant
   time.  Without it: 401 and no data.
3. **Intent**, for every request that changes something (POST, PUT, DELETE):
   the bearer token in its header, or the cookie with an ``X-Microdag``
   header and, when the browser sends one, an ``Origin`` equal to the
   address asked (``http://`` + the Host).  A cross-site form or ``fetch`` cannot add that header without a
   CORS preflight, which this server never grants: no other site can start a
   run, even from a browser that holds the cookie.

Responses carry a strict Content-Security-Policy (the page's own script and
style only; the page itself also allows the ``<style>`` elements that carry the
nonce drawn for it, given to its scripts in ``<meta name="csp-nonce">``: the
code editor puts its styles there), ``nosniff``, ``no-referrer`` (the token must not leak), and
``no-store``.  Bodies are JSON, at most :data:`MAX_BODY` bytes; JSON is
written with ASCII escapes, so any text (lone surrogates included) travels.

The body of a request that changes something is read only once the gates
passed: a refused one is drained when small (the connection stays in step)
and the connection closed otherwise, so no one without the token makes the
server read megabytes.

One thread per connection (``ThreadingHTTPServer``), at most
:data:`MAX_CONNECTIONS` at once: one past the cap is answered 503 and closed
by the accepting thread, with no thread of its own.  A connection that sends
nothing for :data:`IDLE_SECONDS` is closed (the read timeout), so idle
clients cannot hold threads forever; an events stream writes, and holds its
thread until the run ends or the page goes away.
"""

import hmac
import ipaddress
import itertools
import json
import os
import re
import socket
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from ._api import ApiError
from ._code import CodeError
from ._drafts import DraftError
from ._flows import PathRefused

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._api import Api

#: Largest request body accepted.
MAX_BODY = 4 << 20
#: Largest body of a refused request read (and dropped) to keep its connection.
_DRAIN = 64 << 10
#: Connections served at once (a page uses a few; each events stream holds one).
MAX_CONNECTIONS = 64
#: Seconds a connection may wait without sending before it is closed.
IDLE_SECONDS = 30.0
#: What a connection past the cap gets.
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 51\r\n"
         b"Connection: close\r\n\r\n{\"error\": \"too many connections: try again shortly\"}")
#: The page's files by suffix (ES modules under static/ and its folders: views/, editor/, vendor/).
_STATIC = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
           ".txt": "text/plain; charset=utf-8"}
#: A file of the page: folders and names of letters, digits, "-", "_" and ".", never "..".
_STATIC_NAME = re.compile(r"(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_COOKIE = "microdag_token"


class Server(ThreadingHTTPServer):
    """The HTTP server of one UI: its API, its token and the names it answers to."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, api: "Api", token: str) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)
        self.api = api
        self.token = token
        self.port = self.server_address[1]
        self.host = host
        shown = f"[{host}]" if ":" in host else host
        names = {shown}
        if host in ("127.0.0.1", "::1", "localhost"):
            names |= {"localhost", "127.0.0.1", "[::1]"}
        if host in ("0.0.0.0", "::", ""):  # every address of this machine: its names, and any IP literal
            names |= {"localhost", socket.gethostname(), socket.getfqdn()}
        self.wildcard = host in ("0.0.0.0", "::", "")
        self.hosts = {f"{name}:{self.port}" for name in names}
        self.url = f"http://{shown}:{self.port}/"
        self._static: dict[str, bytes] = {}
        self.idle = IDLE_SECONDS
        self.max_connections = MAX_CONNECTIONS
        self.active = 0  # connections being served
        self._count = threading.Lock()

    def process_request(self, request: "Any", client_address: "Any") -> None:
        """Serve the connection on a thread of its own, or refuse it past the cap."""
        with self._count:
            full = self.active >= self.max_connections
            if not full:
                self.active += 1
        if not full:
            super().process_request(request, client_address)
            return
        try:
            request.settimeout(1.0)
            request.sendall(_BUSY)
        except OSError:
            pass
        self.shutdown_request(request)

    def process_request_thread(self, request: "Any", client_address: "Any") -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._count:
                self.active -= 1

    def answers_to(self, host: str) -> bool:
        """Whether ``host`` (a Host header) names this server: one of its names
        and its port; listening on every address, also any IP address (a
        DNS-rebinding page sends a name, never an address)."""
        if host in self.hosts:
            return True
        if not self.wildcard:
            return False
        name, sep, port = host.rpartition(":")
        if not sep or port != str(self.port):
            return False
        try:
            ipaddress.ip_address(name[1:-1] if name.startswith("[") and name.endswith("]") else name)
        except ValueError:
            return False
        return True

    def static(self, name: str) -> bytes:
        """A file of the page, read once."""
        data = self._static.get(name)
        if data is None:
            with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", name), "rb") as f:
                data = self._static[name] = f.read()
        return data

    def static_file(self, name: str) -> "tuple[bytes, str] | None":
        """A file under static/ (``views/run.js``) and its type, or None when there is none such."""
        kind = _STATIC.get(os.path.splitext(name)[1])
        if kind is None or _STATIC_NAME.fullmatch(name) is None or ".." in name.split("/"):
            return None
        try:
            return self.static(name), kind
        except OSError:  # no such file (or a folder)
            return None


class Handler(BaseHTTPRequestHandler):
    """One request: the gates, then the route."""

    server: Server
    _raw = b""  # the body of a POST or PUT
    server_version = "microdag"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: "Any") -> None:  # noqa: A002 - the base class's name
        """Quiet: the terminal shows the URL and errors, not every request."""

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.idle)  # the read timeout (see the module docs)

    # -- the gates

    def _authorised(self) -> "bool | None":
        """The token, from the header (True) or the cookie (None: a browser); False without it."""
        token = self.server.token
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip().encode(), token.encode()):
            return True
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == _COOKIE and hmac.compare_digest(value.encode(), token.encode()):
                return None
        return False

    def _host(self) -> bool:
        """Whether the Host header names this server; when not, the refusal (403) is sent."""
        if self.server.answers_to(self.headers.get("Host", "")):
            return True
        self._json(403, {"error": "this server answers only to its own address (the Host header)"})
        return False

    def _gates(self, changes: bool) -> bool:
        """Whether the request may go on; when not, the refusal is sent."""
        if not self._host():
            return False
        how = self._authorised()
        if how is False:
            self._json(401, {"error": "the token is missing or wrong: open the URL the server printed"})
            return False
        if changes and how is None:
            origin = self.headers.get("Origin")  # when sent, the page's own: this Host's
            same = origin is None or origin == f"http://{self.headers.get('Host', '')}"
            if self.headers.get("X-Microdag") != "1" or not same:
                self._json(403, {"error": "a request that changes something needs the X-Microdag header "
                                          "from this server's own page, or the token in an Authorization header"})
                return False
        return True

    # -- methods

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path == "/" and "token" in query:
            self._login(query["token"][0])
            return
        if not self._gates(changes=False):
            return
        if parts.path in ("/", "/index.html"):
            nonce = os.urandom(16).hex()  # a new one for each page
            page = self.server.static("index.html").replace(
                b"<head>", b'<head>\n<meta name="csp-nonce" content="%s">' % nonce.encode(), 1)
            self._send(200, page, "text/html; charset=utf-8", nonce)
        elif parts.path.startswith("/static/") and (found := self.server.static_file(parts.path[8:])):
            self._send(200, found[0], found[1])
        elif parts.path.startswith("/api/"):
            self._api("GET", parts.path, query)
        else:
            self._json(404, {"error": f"no such page: {parts.path}"})

    def do_POST(self) -> None:  # noqa: N802
        self._changing("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._changing("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._changing("DELETE")

    def do_OPTIONS(self) -> None:  # noqa: N802 - no CORS preflight is ever granted
        self.close_connection = True
        self._json(403, {"error": "cross-origin requests are not allowed"})

    def _changing(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not self._gates(changes=True):  # before the body is read (see the module docs)
            if 0 < length <= _DRAIN:
                self.rfile.read(length)
            elif length:
                self.close_connection = True
            return
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._json(413 if length > 0 else 400, {"error": f"the body must have a length of at most {MAX_BODY} bytes"})
            return
        self._raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        if not parts.path.startswith("/api/"):
            self._json(405, {"error": f"{method} {parts.path} is not allowed"})
            return
        self._api(method, parts.path, parse_qs(parts.query))

    def _login(self, given: str) -> None:
        """``/?token=``: set the cookie and go to the bare URL (the token leaves the address bar)."""
        if not self._host():
            return
        if not hmac.compare_digest(given.encode(), self.server.token.encode()):
            self._json(401, {"error": "wrong token: open the URL the server printed"})
            return
        self.send_response(303)
        self.send_header("Location", "/")
        self.send_header("Set-Cookie", f"{_COOKIE}={self.server.token}; HttpOnly; SameSite=Strict; Path=/")
        self.send_header("Content-Length", "0")
        self._common_headers()
        self.end_headers()

    # -- routes

    def _body(self) -> "dict[str, Any]":
        try:
            body = json.loads(self._raw or b"{}")
        except (ValueError, RecursionError) as exc:
            raise ApiError(400, f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    def _api(self, method: str, path: str, query: "dict[str, list[str]]") -> None:
        api = self.server.api
        seg = [unquote(s, errors="surrogateescape") for s in path[5:].split("/")]
        route = (method, seg[0] if seg else "", len(seg))

        def one(name: str) -> "str | None":
            values = query.get(name)
            return values[0] if values else None

        def whole(name: str, low: int) -> "int | None":
            """A number in the query that a store can take (SQLite's 64 bits), or 400."""
            raw = one(name)
            if raw is None or raw == "":
                return None
            if raw.isascii() and raw.lstrip("-").isdigit() and len(raw) <= 20 and low <= int(raw) < 2**63:
                return int(raw)
            raise ApiError(400, f"{name} must be a whole number from {low} to {2**63 - 1}, not {raw!r}")

        def item() -> "int | None":
            return whole("item", -1)

        try:
            status, doc = 200, None
            if route == ("GET", "runs", 1):
                limit = whole("limit", 0)
                doc = api.runs(one("flow") or None, one("status") or None, 200 if limit is None else limit)
            elif route == ("GET", "runs", 2):
                doc = api.run(seg[1])
            elif route == ("GET", "runs", 3) and seg[2] == "events":
                self._events(seg[1])
                return
            elif route == ("GET", "runs", 4) and seg[2] == "logs":
                doc = api.logs(seg[1], seg[3], item())
            elif route == ("GET", "runs", 4) and seg[2] == "output":
                doc = api.output(seg[1], seg[3], item())
            elif route == ("GET", "runs", 5) and seg[2] == "steps" and seg[4] in ("output", "logs"):
                doc = (api.output if seg[4] == "output" else api.logs)(seg[1], seg[3], item())
            elif route == ("POST", "runs", 1):
                status, doc = 201, api.start(self._body())
            elif route == ("POST", "runs", 3) and seg[2] == "resume":
                status, doc = 201, api.resume(seg[1])
            elif route == ("POST", "runs", 3) and seg[2] == "cancel":
                doc = api.cancel(seg[1])
            elif route == ("POST", "runs", 5) and seg[2] == "steps" and seg[4] == "run":
                doc = api.run_step(seg[1], seg[3])
            elif route == ("GET", "flows", 1):
                doc = api.flows()
            elif route == ("POST", "flows", 1):
                status, doc = api.create(self._body())
            elif route == ("GET", "flows", 2):
                doc = api.flow(seg[1])
            elif route == ("POST", "flows", 3) and seg[2] == "check":
                doc = api.check(seg[1], self._body())
            elif route == ("PUT", "flows", 2):
                status, doc = api.save(seg[1], self._body())
            elif route == ("GET", "flows", 5) and seg[2] == "steps" and seg[4] == "code":
                doc = api.step_code(seg[1], seg[3])
            elif route == ("PUT", "flows", 5) and seg[2] == "steps" and seg[4] == "code":
                doc = api.save_step_code(seg[1], seg[3], self._body())
            elif route == ("POST", "flows", 6) and seg[2] == "steps" and seg[4:] == ["code", "check"]:
                doc = api.check_step_code(seg[1], seg[3], self._body())
            elif route == ("POST", "flows", 5) and seg[2] == "steps" and seg[4] == "run":
                status, doc = 202, api.run_flow_step(seg[1], seg[3], self._body())
            elif route == ("GET", "schema", 1):
                doc = api.schema()
            else:
                raise ApiError(404, f"no such API route: {method} {path}")
        except ApiError as exc:
            status, doc = exc.status, {"error": exc.message}
        except (CodeError, DraftError) as exc:
            status, doc = exc.status, {"error": exc.message, "problems": exc.problems}
        except PathRefused as exc:
            status, doc = 403, {"error": str(exc)}
        except ValueError as exc:  # a document the edit cannot write
            status, doc = 400, {"error": str(exc)}
        except Exception as exc:  # a bug: say so, keep serving
            traceback.print_exc()
            status, doc = 500, {"error": f"internal error: {type(exc).__name__}: {exc}"}
        self._json(status, doc)

    def _events(self, run_id: str) -> None:
        """Server-Sent Events of a run until it ends (or the page goes away)."""
        events = self.server.api.events(run_id)
        first = next(events)  # an unknown run is refused (404) before the stream begins
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Connection", "close")
        self._common_headers()
        self.end_headers()
        self.close_connection = True
        try:
            for event, data in itertools.chain([first], events):
                if event == "ping":
                    self.wfile.write(b": ping\n\n")
                else:
                    text = json.dumps(_finite(data), ensure_ascii=True, default=repr)
                    self.wfile.write(f"event: {event}\ndata: {text}\n\n".encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        finally:
            events.close()

    # -- responses

    def _common_headers(self, nonce: str = "") -> None:
        csp = _CSP.replace("style-src 'self'", f"style-src 'self' 'nonce-{nonce}'") if nonce else _CSP
        self.send_header("Content-Security-Policy", csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Frame-Options", "DENY")

    def _send(self, status: int, body: bytes, content_type: str, nonce: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self._common_headers(nonce)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: "Any") -> None:
        try:
            body = json.dumps(doc, ensure_ascii=True, allow_nan=False, default=repr).encode()
        except ValueError:  # NaN or infinity in an output: as text
            body = json.dumps(_finite(doc), ensure_ascii=True, default=repr).encode()
        self._send(status, body, "application/json")


def _finite(value: "Any") -> "Any":
    """``value`` with every NaN or infinity written as text (JSON has neither)."""
    if isinstance(value, float) and (value != value or abs(value) == float("inf")):
        return repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
