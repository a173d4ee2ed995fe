"""The JSON API of the UI: one method per route, data in, data out.

:class:`Api` knows the served :class:`~._flows.Folder`, the store spec and the
:class:`~._launch.Launcher`; it knows nothing of HTTP (the server parses
requests, checks the token and writes responses).  Each method returns
``(status, document)``; :class:`ApiError` carries a status and a message for
what the caller got wrong (404 no such run, 400 bad body, 403 refused path).

The store is opened read-only for each request and closed after it, so that
the UI never holds a lock a run needs, and sees what any process wrote.
"""

import json
import os
import shlex
import signal
import time

from ..stores import StoreError, open_store, spec_parts
from .._result import new_run_id
from ._code import StepCode
from ._drafts import DraftError, is_draft
from ._drafts import alone as draft_alone
from ._drafts import path_of as draft_path
from ._drafts import text_of as draft_text
from ._drafts import values as draft_values
from ._drafts import write as write_draft
from ._flows import PathRefused
from ._runs import changes, list_runs, output, run_detail

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Generator
    from typing import Any

    from .._records import RunInfo
    from ..stores import Store
    from ._flows import Folder
    from ._launch import Launcher

class ApiError(Exception):
    """A request the API refuses: ``status`` and a message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


class Api:
    """The routes of ``/api/``."""

    def __init__(self, folder: "Folder", store_spec: str, launcher: "Launcher") -> None:
        self.folder = folder
        self.store_spec = store_spec
        self.launcher = launcher

    # -- the store

    def store(self) -> "Store | None":
        """The store, opened for reading, or ``None`` when it does not exist yet."""
        path = spec_parts(self.store_spec)[1]
        if path and not os.path.exists(path):
            return None
        return open_store(self.store_spec, readonly=True)

    def _reading(self) -> "_Reading":
        return _Reading(self)

    # -- runs

    def runs(self, flow: "str | None", status: "str | None", limit: int) -> "dict[str, Any]":
        with self._reading() as store:
            if store is None:
                return {"runs": [], "flows": [], "statuses": []}
            return list_runs(store, flow, status, limit)

    def run(self, run_id: str) -> "dict[str, Any]":
        with self._reading() as store:
            try:
                if store is None:
                    raise StoreError("no store yet")
                out = run_detail(store, run_id)
            except StoreError as exc:
                return self._starting(run_id, exc)
            live = self.launcher.live(store, run_id)
            out.update(self._actions(out["run"], live))
            return out

    def _starting(self, run_id: str, exc: Exception) -> "dict[str, Any]":
        """A run the UI started whose record is not written yet (or never will be)."""
        child = self.launcher.starting(run_id)
        if child is None:
            raise ApiError(404, str(exc))
        error = child.error()
        live = child.process.poll() is None
        run: dict[str, Any] = {"id": run_id, "flow": "", "status": "pending" if live or error is None else "failed",
               "started": None, "finished": None, "duration_text": "-", "source": None, "inputs": {},
               "problem": error}
        return {"run": run, "tasks": [], "attempts": [], "graph": None, "live": live, "cancellable": live,
                "resumable": False, "resume_why": None, "flow_path": None}

    def _actions(self, run: "dict[str, Any]", live: bool) -> "dict[str, Any]":
        source = run["source"]
        flow_path = self.folder.key_of(source) if source and not is_draft(source) else None
        resumable = not live and flow_path is not None and run["status"] not in ("succeeded", "damaged")
        return {
            "live": live,
            "cancellable": live,
            "resumable": resumable,
            "resume_why": None if resumable or live or run["status"] == "succeeded" else _why_not(run),
            "flow_path": flow_path,
        }

    def events(
        self, run_id: str, interval: float = 0.5
    ) -> "Generator[tuple[str, dict[str, Any]], None, None]":
        """``GET /api/runs/ID/events``: ``("update", data)`` whenever the run
        changes, then ``("end", data)`` once it is not live; ``("ping", {})``
        while nothing changes (the server sends it as a comment)."""
        seen: dict[tuple[str, int], tuple[Any, ...]] = {}
        drawn = False  # whether the run's graph was sent (a page opened before the run began has none)
        last: dict[str, Any] | None = None
        quiet = 0.0
        store = None
        try:
            while True:
                child = self.launcher.starting(run_id)
                try:
                    if store is None:
                        store = self.store()
                    if store is None:
                        raise StoreError("no store yet")
                    run, tasks, graph = changes(store, run_id, seen, graph=not drawn)
                except StoreError as exc:  # not begun yet: its child may still be starting
                    if child is None or child.process.poll() is not None:
                        doc = self._starting(run_id, exc)
                        yield "end", {"run": doc["run"], "tasks": [], "live": False}
                        return
                    time.sleep(interval)
                    continue
                live = self.launcher.live(store, run_id)
                starting = child is not None and child.process.poll() is None
                data = {"run": run, "tasks": tasks, "live": live or starting}
                if graph is not None:
                    data["graph"], drawn = graph, True
                if not data["live"]:
                    data.update(self._actions(run, False))
                    yield "end", data
                    return
                if tasks or run != last or graph is not None:
                    last = run
                    quiet = 0.0
                    yield "update", data
                else:
                    quiet += interval
                    if quiet >= 15:
                        quiet = 0.0
                        yield "ping", {}
                time.sleep(interval)
        finally:
            if store is not None:
                store.close()

    def logs(self, run_id: str, step: str, item: "int | None") -> "dict[str, Any]":
        with self._reading() as store:
            try:
                if store is None:
                    raise StoreError(f"no run {run_id!r}")
                return {"text": store.logs(run_id, step, item)}
            except StoreError as exc:
                raise ApiError(404, str(exc)) from None

    def output(self, run_id: str, step: str, item: "int | None") -> "dict[str, Any]":
        with self._reading() as store:
            try:
                if store is None:
                    raise StoreError(f"no run {run_id!r}")
                return output(store, run_id, step, -1 if item is None else item)
            except (StoreError, KeyError) as exc:
                raise ApiError(404, str(exc.args[0]) if isinstance(exc, KeyError) else str(exc)) from None

    # -- actions

    def start(self, body: "dict[str, Any]") -> "dict[str, Any]":
        flow, inputs = body.get("flow"), body.get("inputs", {})
        if not isinstance(flow, str):
            raise ApiError(400, "flow must be the path of a flow file (a string)")
        if not isinstance(inputs, dict):
            raise ApiError(400, "inputs must be an object of input names to values")
        try:
            path = self.folder.spec_of(flow)
        except PathRefused as exc:
            raise ApiError(403, str(exc)) from None
        if flow not in self.folder.named and not os.path.isfile(path):
            raise ApiError(404, f"{flow!r}: no such flow file")
        for key in inputs:
            if not key.isidentifier():
                raise ApiError(400, f"input {key!r} is not a valid input name")
        return {"id": self.launcher.run(path, inputs)}

    def resume(self, run_id: str) -> "dict[str, Any]":
        with self._reading() as store:
            info = _known(store, run_id)
            if store is not None and self.launcher.live(store, run_id):
                raise ApiError(409, f"run {run_id} is running: it cannot be resumed until it stops")
        if info.status == "succeeded":
            raise ApiError(409, f"run {run_id} succeeded: there is nothing to resume")
        if info.source is None or self.folder.key_of(info.source) is None:
            raise ApiError(403, f"run {run_id} was not started from a flow this UI serves")
        return {"id": self.launcher.resume(info.id)}

    def cancel(self, run_id: str) -> "dict[str, Any]":
        child = self.launcher.starting(run_id)
        with self._reading() as store:
            if child is None:
                _known(store, run_id)
            if store is not None and self.launcher.cancel(store, run_id):
                return {"ok": True}
        if child is not None and child.process.poll() is None:  # started, its record not written yet
            child.process.send_signal(signal.SIGINT)
            return {"ok": True}
        raise ApiError(409, f"run {run_id} is not running on this machine")

    def run_step(self, run_id: str, step: str) -> "dict[str, Any]":
        with self._reading() as store:
            info = _known(store, run_id)
        rel = self.folder.key_of(info.source) if info.source else None
        if rel is None:
            raise ApiError(403, f"run {run_id} was not started from a flow this UI serves")
        return self.launcher.run_step(self.folder.spec_of(rel), step, run_id)

    # -- flows

    def flows(self) -> "dict[str, Any]":
        return {"flows": self.folder.flows()}

    def flow(self, rel: str) -> "dict[str, Any]":
        return self.folder.detail(rel)

    def create(self, body: "dict[str, Any]") -> "tuple[int, dict[str, Any]]":
        """``POST /api/flows``: ``{"path", "doc"}``, a new flow file (201)."""
        rel, doc = body.get("path"), body.get("doc")
        if not isinstance(rel, str):
            raise ApiError(400, "path must be the new flow file's path in the folder (a string)")
        if doc is not None and not isinstance(doc, dict):
            raise ApiError(400, "doc must be the flow file's data (an object), or null for an empty flow")
        try:
            made, described = self.folder.create(rel, doc)
        except PathRefused as exc:
            raise ApiError(400, str(exc)) from None
        except FileExistsError as exc:
            raise ApiError(409, str(exc)) from None
        if made:
            return 201, described
        count = len(described["problems"])
        described["error"] = f"not created: the flow has {count} problem{'s' if count != 1 else ''}"
        return 422, described

    def check(self, rel: str, body: "dict[str, Any]") -> "dict[str, Any]":
        return self.folder.check(rel, _doc(body))

    def save(self, rel: str, body: "dict[str, Any]") -> "tuple[int, dict[str, Any]]":
        saved, described = self.folder.save(rel, _doc(body))
        if saved:
            return 200, described
        count = len(described["problems"])
        described["error"] = f"not saved: the flow has {count} problem{'s' if count != 1 else ''}"
        return 422, described

    # -- a step's code

    def step_code(self, rel: str, step: str) -> "dict[str, Any]":
        """``GET /api/flows/PATH/steps/STEP/code``."""
        path, doc = self.folder.document(rel)
        return StepCode(self.folder.root, path, rel, step, doc).read()

    def save_step_code(self, rel: str, step: str, body: "dict[str, Any]") -> "dict[str, Any]":
        """``PUT /api/flows/PATH/steps/STEP/code``: ``{"code", "digest", "doc"?}``
        (``doc``: the editor's document, which the code's parameters bind to)."""
        code, given = body.get("code"), body.get("digest")
        if not isinstance(code, str) or not isinstance(given, str):
            raise ApiError(400, 'the body must be {"code": the function\'s new source, "digest": the digest read}')
        path, doc = self.folder.document(rel)
        return StepCode(self.folder.root, path, rel, step, doc).save(code, given, _editors(body))

    def check_step_code(self, rel: str, step: str, body: "dict[str, Any]") -> "dict[str, Any]":
        """``POST /api/flows/PATH/steps/STEP/code/check``: ``{"code", "doc"?}`` ->
        ``{"problems"}``, the problems a save of that code would be refused for."""
        code = body.get("code")
        if not isinstance(code, str):
            raise ApiError(400, 'the body must be {"code": the function\'s source, "doc": the editor\'s document or null}')
        path, doc = self.folder.document(rel)
        return {"problems": StepCode(self.folder.root, path, rel, step, doc).check(code, _editors(body))}

    def run_flow_step(self, rel: str, step: str, body: "dict[str, Any]") -> "dict[str, Any]":
        """``POST /api/flows/PATH/steps/STEP/run``: run the step (with its
        ancestors when ``upstream``) of the document given, or of the file;
        ``{"run_id"}`` of the run started (``_drafts`` says how)."""
        doc, typed, from_run, upstream = body.get("doc"), body.get("inputs"), body.get("from_run"), body.get("upstream")
        if doc is not None and not isinstance(doc, dict):
            raise ApiError(400, "doc must be the flow file's data (an object), or null for the file on disk")
        if typed is not None and not isinstance(typed, dict):
            raise ApiError(400, f"inputs must be an object of step {step!r}'s argument values, or null")
        if from_run is not None and not isinstance(from_run, str):
            raise ApiError(400, "from_run must be a run id, or null for the flow's latest run")
        path, disk = self.folder.document(rel)
        doc = disk if doc is None else doc
        steps = doc.get("steps") if isinstance(doc, dict) else None
        if not isinstance(doc, dict) or not isinstance(steps, dict):
            raise ApiError(422, f"step {step!r}: flow {rel!r} does not parse: fix it first")
        if step not in steps:
            raise ApiError(404, f"flow {rel!r} has no step named {step!r}")
        run_id = new_run_id()
        draft = draft_path(path, run_id)
        text = draft_text(doc if upstream else draft_alone(doc, step), draft.endswith(".json"))
        flow, problems = self.folder.checked(rel, draft, text)
        if flow is None:
            count = len(problems)
            raise DraftError(422, f"step {step!r} cannot run: the flow has {count} problem{'s' if count != 1 else ''}",
                             problems)
        with self._reading() as store:
            given, _ = draft_values(store, flow.name, step, flow.inputs, set(steps), typed, from_run)
        write_draft(draft, text)
        return {"run_id": self.launcher.run(draft, given, run_id, step if upstream else None, draft)}

    @staticmethod
    def schema() -> "dict[str, Any]":
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(here, "flowfile.schema.json"), encoding="utf-8") as f:
            schema: dict[str, Any] = json.load(f)
        return schema


def _why_not(run: "dict[str, Any]") -> str:
    """Why a run that did not succeed cannot be resumed from this UI, and how to make it resumable."""
    shell = f"python -m microdag resume {run['id']}"
    if run["status"] == "damaged":
        return "the run's record is damaged: it cannot be resumed (run the flow again)"
    source = run["source"]
    if source and is_draft(source):
        return "the run was of a step run from the editor (a draft of its flow, gone once it ran): run the step again"
    if not source:
        return ("the run did not record where its flow came from (a flow run from Python code): resume it "
                f"from that code with flow.run(store=..., run_id={run['id']!r}, resume=True)")
    return (f"its flow, {source}, is not one this UI serves: start the UI with it named "
            f"(python -m microdag ui {shlex.quote(source)}) to resume the run here, or resume it from a "
            f"shell in the folder it ran in ({shell})")


def _known(store: "Store | None", run_id: str) -> "RunInfo":
    """The record of run ``run_id``; 404 when the store has none."""
    try:
        if store is None:
            raise StoreError(f"no run {run_id!r} (the store is empty)")
        return store.run_info(run_id)
    except StoreError as exc:
        raise ApiError(404, str(exc)) from None


def _editors(body: "dict[str, Any]") -> "dict[str, Any] | None":
    """The editor's document a step's code is checked against (``None``: the flow file's)."""
    doc = body.get("doc")
    if doc is not None and not isinstance(doc, dict):
        raise ApiError(400, "doc must be the flow file's data (an object), or null for the file on disk")
    return doc


def _doc(body: "dict[str, Any]") -> "dict[str, Any]":
    doc = body.get("doc")
    if not isinstance(doc, dict):
        raise ApiError(400, "the body must be {\"doc\": the flow file's data}")
    return doc


class _Reading:
    """``with api._reading() as store``: the store for one request, closed after."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.store: Store | None = None

    def __enter__(self) -> "Store | None":
        try:
            self.store = self.api.store()
        except (StoreError, ValueError) as exc:
            raise ApiError(500, f"the store {self.api.store_spec} cannot be read: {exc}") from None
        return self.store

    def __exit__(self, *exc: object) -> None:
        if self.store is not None:
            self.store.close()
