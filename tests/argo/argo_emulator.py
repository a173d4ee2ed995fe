"""Runs an Argo ``Workflow`` manifest on this machine the way Argo would, for
the parts of the format that microdag's manifests use.

- Tasks of the entry DAG start when every task their ``depends`` names has
  ended, and run when the expression holds (``A.Succeeded``, ``A.Failed``,
  ``A.Errored``, ``A.Skipped``, ``A.Omitted`` with ``&&``, ``||``, ``!`` and
  parentheses); otherwise they end ``Omitted``.  Ready tasks run at once, up
  to ``spec.parallelism`` (or 4) at a time.
- ``{{...}}`` tags are filled in as Argo does: ``workflow.name``,
  ``workflow.uid``, ``workflow.parameters.X`` (whose values are filled in
  first: a default ``{{workflow.name}}`` becomes the workflow's name), ``tasks.X.outputs.parameters.Y`` (and, for a task
  with ``withParam``, ``tasks.X.outputs.parameters``: the list of its pods'
  parameters), ``item``, ``inputs.parameters.X`` and ``retries``; an
  expression tag ``{{=...}}`` is evaluated (here: to ``<evaluated>``).  A tag
  that cannot be filled in is an error, not left as text (Argo would wait for
  it, or fail the task).
- ``withParam`` runs one pod per item of the JSON list (an empty list: the
  task ends ``Skipped``); the task succeeds when all of them do.
- A pod: the template's input artifacts are written (``raw.data``) at their
  paths, its container's ``command`` + ``args`` run as a process (``python`` is
  this interpreter) with ``activeDeadlineSeconds`` as a timeout (the process is
  killed: the pod fails), and each output parameter is read from its
  ``valueFrom.path`` (missing: the pod errors).  ``retryStrategy`` gives it
  ``limit`` more tries (policy ``Always``), waiting as ``backoff`` says
  (``duration * factor ** n``, at most ``cap``).
- File systems: a volume mount's path is a folder shared by every pod; an
  absolute path under ``/tmp/microdag/`` (where a pod without a volume keeps
  its run folder) is the pod's own (a fresh folder per pod), as in a
  container's ``/tmp``.  Other paths are this machine's (the image's files:
  the flow and its modules, wherever this checkout is, ``/tmp`` included).
"""

import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

_TAG = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
_RESULT = re.compile(r"([a-zA-Z0-9][-a-zA-Z0-9]*?)\.([A-Z][a-zA-Z]+)")
_PRIVATE = "/tmp/microdag/"


class Unresolved(Exception):
    """A ``{{tag}}`` that has no value at that point."""


def fill(value, scope, leave=()):
    """``value`` (str, list or dict) with its tags filled from ``scope``; tags
    whose name starts with one of ``leave`` are kept as they are."""
    if isinstance(value, str):
        def one(m):
            name = m.group(1)
            if name.startswith("="):
                return "<evaluated>"
            if name in scope:
                return scope[name]
            if name.startswith(tuple(leave)):
                return m.group(0)
            raise Unresolved(name)

        return _TAG.sub(one, value)
    if isinstance(value, list):
        return [fill(v, scope, leave) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, scope, leave) for k, v in value.items()}
    return value


def depends_on(expression):
    """The task names an Argo ``depends`` expression names."""
    return [m.group(1) for m in _RESULT.finditer(expression or "")]


def holds(expression, phases):
    """Whether ``depends`` ``expression`` holds, given the tasks' ``phases``."""
    results = {
        "Succeeded": ("Succeeded",), "Failed": ("Failed",), "Errored": ("Error",), "Skipped": ("Skipped",),
        "Omitted": ("Omitted",),
    }

    def value(m):
        task, result = m.group(1), m.group(2)
        if result not in results:
            raise ValueError(f"task result {result!r} of {task!r} is not one microdag uses")
        return " True " if phases[task] in results[result] else " False "

    text = _RESULT.sub(value, expression)
    text = text.replace("&&", " and ").replace("||", " or ").replace("!", " not ")
    if not re.fullmatch(r"(\s|\(|\)|True|False|and|or|not)*", text):
        raise ValueError(f"depends expression {expression!r} is not one microdag writes")
    return bool(eval(text, {"__builtins__": {}}, {}))


def duration(text):
    text = str(text)
    if text.isdigit():
        return float(text)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    assert m, f"duration {text!r}"
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


class Emulator:
    """One workflow run (see the module docs): ``Emulator(manifest, folder).run()``."""

    def __init__(self, manifest, folder, parameters=None, env=None, cwd=None, suffix="abcde"):
        assert manifest["apiVersion"] == "argoproj.io/v1alpha1" and manifest["kind"] == "Workflow"
        self.manifest = manifest
        self.spec = manifest["spec"]
        meta = manifest["metadata"]
        self.name = meta.get("name") or meta["generateName"] + suffix
        self.folder = str(folder)
        self.env = env
        self.cwd = cwd
        given = {p["name"]: p.get("value") for p in self.spec.get("arguments", {}).get("parameters", [])}
        for key, value in (parameters or {}).items():
            assert key in given, f"the workflow has no parameter {key!r}"
            given[key] = value
        missing = [k for k, v in given.items() if v is None]
        assert not missing, f"parameters without a value: {missing}"
        self.uid = "0b5e1c7a-" + suffix
        self.parameters = {k: fill(v, {"workflow.name": self.name, "workflow.uid": self.uid}) for k, v in given.items()}
        self.templates = {t["name"]: t for t in self.spec["templates"]}
        self.volumes = {}
        for volume in self.spec.get("volumes", []):
            path = os.path.join(self.folder, "volumes", volume["name"])
            os.makedirs(path, exist_ok=True)
            self.volumes[volume["name"]] = path
        self.nodes = {}  # task name -> {"phase", "outputs", "pods"}
        self.pods = []  # every pod run: {"task", "retry", "argv", "code", "stdout", "stderr", "seconds"}
        self.waits = []  # (task, seconds) of each backoff
        self.lock = threading.Lock()
        self.count = 0

    # -- the DAG

    def run(self):
        tasks = self.templates[self.spec["entrypoint"]]["dag"]["tasks"]
        pending = {t["name"]: t for t in tasks}
        running = {}
        workers = self.spec.get("parallelism") or 4
        with ThreadPoolExecutor(workers) as pool:
            while pending or running:
                for name, task in list(pending.items()):
                    deps = depends_on(task.get("depends"))
                    if any(d not in self.nodes for d in deps):
                        continue
                    del pending[name]
                    phases = {d: self.nodes[d]["phase"] for d in deps}
                    if task.get("depends") and not holds(task["depends"], phases):
                        self.nodes[name] = {"phase": "Omitted", "outputs": {}, "pods": []}
                        continue
                    running[pool.submit(self.task, task)] = name
                if not running:
                    assert not pending, f"tasks that can never start: {sorted(pending)}"
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    self.nodes[running.pop(future)] = future.result()
        return self

    def scope(self):
        out = {"workflow.name": self.name, "workflow.uid": self.uid}
        out.update({f"workflow.parameters.{k}": v for k, v in self.parameters.items()})
        for name, node in list(self.nodes.items()):
            for key, value in node["outputs"].items():
                out[f"tasks.{name}.outputs.parameters.{key}"] = value
            if node.get("group") is not None:
                out[f"tasks.{name}.outputs.parameters"] = json.dumps(node["group"])
        return out

    def task(self, task):
        scope = self.scope()
        arguments = fill(task.get("arguments", {}), scope, leave=("item",))
        if "withParam" not in task:
            return self.pod(task, arguments)
        items = json.loads(fill(task["withParam"], scope))
        assert isinstance(items, list), f"withParam of {task['name']!r} is not a list"
        if not items:
            return {"phase": "Skipped", "outputs": {}, "pods": [], "group": []}
        with ThreadPoolExecutor(min(4, len(items))) as pool:
            children = list(pool.map(
                lambda item: self.pod(task, fill(arguments, {"item": _item_text(item)})), items
            ))
        phase = "Succeeded" if all(c["phase"] == "Succeeded" for c in children) else "Failed"
        group = [c["outputs"] for c in children if c["phase"] == "Succeeded" and c["outputs"]]
        return {"phase": phase, "outputs": {}, "pods": children, "group": group}

    # -- a pod and its retries

    def pod(self, task, arguments):
        template = self.templates[task["template"]]
        given = {p["name"]: p["value"] for p in arguments.get("parameters", [])}
        artifacts = {a["name"]: a for a in arguments.get("artifacts", [])}
        inputs = template.get("inputs", {})
        scope = {"workflow.name": self.name, "workflow.uid": self.uid}
        scope.update({f"workflow.parameters.{k}": v for k, v in self.parameters.items()})
        for p in inputs.get("parameters", []):
            assert p["name"] in given, f"task {task['name']!r} does not give input {p['name']!r}"
            scope[f"inputs.parameters.{p['name']}"] = given[p["name"]]
        strategy = template.get("retryStrategy")
        limit = int(strategy["limit"]) if strategy else 0
        if strategy:
            assert strategy.get("retryPolicy", "OnFailure") in ("Always", "OnFailure", "OnError")
        result = None
        for retry in range(limit + 1):
            if strategy:
                scope["retries"] = str(retry)
            result = self.attempt(task, fill(template, scope), artifacts, retry)
            if result["phase"] == "Succeeded":
                break
            if retry < limit and strategy.get("backoff"):
                backoff = strategy["backoff"]
                wait_for = duration(backoff["duration"]) * int(backoff.get("factor", 1)) ** retry
                if "cap" in backoff:
                    wait_for = min(wait_for, duration(backoff["cap"]))
                with self.lock:
                    self.waits.append((task["name"], wait_for))
                time.sleep(wait_for)
        result["retries"] = retry
        return result

    def attempt(self, task, template, artifacts, retry):
        with self.lock:
            self.count += 1
            own = os.path.join(self.folder, "pods", f"{self.count}-{task['name']}")
        os.makedirs(own)
        container = template["container"]
        mounts = {m["mountPath"]: self.volumes[m["name"]] for m in container.get("volumeMounts", [])}

        def path(p):
            for mount, host in mounts.items():
                if p == mount or p.startswith(mount + "/"):
                    return host + p[len(mount):]
            if p.startswith(_PRIVATE):
                return own + p
            return p

        for artifact in template.get("inputs", {}).get("artifacts", []):
            source = artifacts.get(artifact["name"]) or artifact
            assert "raw" in source, f"artifact {artifact['name']!r} of {task['name']!r} has no raw data"
            target = path(artifact["path"])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as f:
                f.write(source["raw"]["data"])
        argv = [sys.executable if c == "python" else c for c in container["command"]]
        argv += [_mapped(a, path) for a in container.get("args", [])]
        leftover = [a for a in argv if _TAG.search(a)]
        assert not leftover, f"unfilled tags in the pod of {task['name']!r}: {leftover}"
        deadline = template.get("activeDeadlineSeconds")
        started = time.monotonic()
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=self.env, cwd=self.cwd,
                                  timeout=None if deadline is None else float(deadline))
            code, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            code = None
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            err = (exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or "")
            err += "\nPod was active on the node longer than the specified deadline"
        record = {"task": task["name"], "retry": retry, "argv": argv, "code": code, "stdout": out,
                  "stderr": err, "seconds": time.monotonic() - started}
        with self.lock:
            self.pods.append(record)
        outputs, phase = {}, "Succeeded" if code == 0 else "Failed"
        for parameter in template.get("outputs", {}).get("parameters", []):
            try:
                with open(path(parameter["valueFrom"]["path"]), encoding="utf-8") as f:
                    outputs[parameter["name"]] = f.read()
            except FileNotFoundError:
                if phase == "Succeeded":
                    phase = "Error"
        return {"phase": phase, "outputs": outputs if phase == "Succeeded" else {}, "pods": [record]}

    # -- what came out

    def phase(self, task):
        return self.nodes[task]["phase"]

    def logs(self, task):
        return "".join(p["stdout"] + p["stderr"] for p in self.pods if p["task"] == task)


def _mapped(arg, path):
    """A pod's argument with the path it holds mapped (``/path`` or ``--option=/path``)."""
    if arg.startswith("/"):
        return path(arg)
    option, sep, value = arg.partition("=")
    if sep and option.startswith("--") and value.startswith("/"):
        return f"{option}={path(value)}"
    return arg


def _item_text(item):
    """An item of ``withParam`` as Argo writes it into ``{{item}}``."""
    if isinstance(item, str):
        return item
    return json.dumps(item, separators=(",", ":"))
