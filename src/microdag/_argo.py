"""Argo Workflows: a flow as a ``Workflow`` manifest (``export argo``).

:func:`manifest` turns a flow into a ``Workflow``: one DAG template whose
tasks follow the steps' dependencies and triggers (``depends`` expressions),
and one container template per task, each running ``python -m microdag pod
--flow=FLOW --step=STEP --run-dir=DIR``, which is :func:`microdag._pod.run_task`
(the pod's side, and the run folder it keeps, are described there).  Both
sides name a step's file with :func:`microdag._pod.file_key`.

Where the outputs travel.  With ``--volume-claim`` every pod mounts one volume
at :data:`MOUNT` and ``DIR`` is ``/microdag/<workflow name>``: the folder is
shared.  Without, each pod has its own ``DIR`` (:data:`LOCAL_RUN`), and Argo
carries the envelopes between pods: a pod's envelope file is its output
parameter ``output``, and the tasks after it receive it as a raw input
artifact placed at the same path in their own folder.  Either way a pod only
reads and writes files of ``DIR/outputs``.

Skips.  A pod can only succeed or fail; a step that raises
:class:`microdag.Skip` ends ``Succeeded`` in Argo with a ``skipped``
envelope, and a step after it whose trigger is ``all_success`` sees that
envelope and skips itself the same way.  Failures are Argo's: a failed pod
fails its task, and the ``depends`` expressions (``A.Succeeded`` for
``all_success``; ``Omitted`` counted with ``none_failed`` and ``all_done``)
decide what runs after it.

Map steps fan out.  A map step ``M`` becomes three tasks: ``M-plan`` reads
the value mapped over and writes the list of unit indices (output parameter
``items``; ``[-1]`` when there is nothing to run, so that the fan-out is never
empty, which Argo would mark skipped), ``M-each`` runs one pod per unit
(``withParam`` over those indices), and ``M`` gathers the units' results into
the step's output list.  The steps after ``M`` depend on the gathering task,
so a map step reads like any other step to them.

Names and text.  Kubernetes' naming rules (:func:`name_problems`) and Argo's
task names (:func:`task_names`) live here.  Argo reads ``{{...}}`` anywhere in
a template as its own syntax (a tag to fill in, ``{{=...}}`` an expression to
evaluate), and has no way to escape it: text of the flow that would hold
``{{`` where Argo reads it (a step's name, an input's default, the flow's
name or path, the image) is refused, with the step or input named.  A pod is
given every value as one ``--option=VALUE`` argument, so no step name is read
as an option.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._flow import Flow
    from ._plan import _Plan
    from ._steps import _Step

from ._errors import FlowError
from ._plan import NO_DEFAULT
from ._pod import file_key
from ._steps import _RETRY_ON
from .stores._codec import not_json

__all__ = ["LOCAL_RUN", "MOUNT", "PARAMETER_LIMIT", "manifest", "name_problems"]

#: Where the ``--volume-claim`` volume is mounted in every pod.
MOUNT = "/microdag"
#: A pod's own run folder when there is no volume.
LOCAL_RUN = "/tmp/microdag/run"
#: The most bytes of JSON a step's output may take without a volume (Argo
#: keeps output parameters in the workflow object, whose size is limited).
PARAMETER_LIMIT = 256 * 1024
#: Seconds a pod's deadline adds to its step's timeout for the pod to start
#: (pulling the image, starting Python, loading the flow): the timeout bounds
#: the step's call, as in a local run, and the pod's own timer enforces it.
POD_START = 60
#: The name of the volume in the manifest.
VOLUME = "microdag"
#: Words Argo's ``depends`` expressions cannot take as task names.
_RESERVED = frozenset({"and", "or", "not", "in", "nil", "true", "false", "matches", "contains", "let", "if",
                       "else", "main"})
_NAME_LIMIT = 48
#: A DNS label, as Kubernetes names objects.
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_LABEL_WORDS = "lower case letters, digits and '-', starting and ending with a letter or digit"


# -- names -------------------------------------------------------------------------------


def name_problems(
    *,
    name: "str | None" = None,
    namespace: "str | None" = None,
    volume_claim: "str | None" = None,
    image: "str | None" = None,
    labels: "dict[str, str] | None" = None,
) -> "list[str]":
    """What is wrong with the names :func:`manifest` is given, one line each
    (empty: nothing); ``labels`` says how to call each argument (default: its
    name), as the command line calls them ``--name`` and so on."""
    import re  # (import time: re loads on first use)

    def label(argument: str) -> str:
        return (labels or {}).get(argument, argument)

    problems = []
    if name is not None and (len(name) > 63 or not re.fullmatch(_LABEL, name)):
        problems.append(f"{label('name')} {name!r} is not a workflow name: {_LABEL_WORDS}, at most 63 characters")
    if namespace is not None and (len(namespace) > 63 or not re.fullmatch(_LABEL, namespace)):
        problems.append(
            f"{label('namespace')} {namespace!r} is not a namespace: {_LABEL_WORDS}, at most 63 characters"
        )
    claim = volume_claim
    if claim is not None and (len(claim) > 253 or not re.fullmatch(rf"{_LABEL}(\.{_LABEL})*", claim)):
        problems.append(
            f"{label('volume_claim')} {claim!r} is not a claim name: {_LABEL_WORDS} (and '.'), at most 253 characters"
        )
    if image is not None and (not image.strip() or any(c.isspace() for c in image) or "{{" in image):
        problems.append(f"{label('image')} {image!r} is not an image name")
    return problems


def _templated(text: str, what: str, fix: str) -> "list[str]":
    """A problem when ``text`` holds ``{{``, which Argo would read as a template
    tag or expression (it has no way to escape it), else none."""
    if "{{" not in text:
        return []
    return [f"{what}: {text!r} holds '{{{{', which Argo reads as its own template syntax "
            f"({{{{...}}}} is filled in or evaluated): {fix} to export the flow"]


def _base_name(name: str) -> str:
    """Step ``name`` as the start of an Argo task name: lower case letters,
    digits and ``-``, starting with a letter."""
    out: list[str] = []
    for c in name.lower():
        ok = c.isascii() and c.isalnum()
        if ok:
            out.append(c)
        elif out and out[-1] != "-":
            out.append("-")
    text = "".join(out).strip("-")[:_NAME_LIMIT].strip("-") or "step"
    if not text[0].isalpha():
        text = "s-" + text
    if text in _RESERVED:
        text += "-step"
    return text


def _object_name(name: str) -> str:
    """Flow ``name`` as the start of a Kubernetes object's name: lower case
    letters, digits and ``-``, 40 characters at most (Argo adds to it)."""
    out: list[str] = []
    for c in name.lower():
        if c.isascii() and c.isalnum():
            out.append(c)
        elif out and out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-")[:40].strip("-") or "flow"


def task_names(plan: "_Plan") -> "dict[str, str]":
    """Step name -> its Argo task (and template) name, unique; a map step's
    ``NAME-plan`` and ``NAME-each`` are taken too."""
    used = {"main"}
    out: dict[str, str] = {}
    for step in plan.steps:
        base = _base_name(step.name)
        name, n = base, 2
        while name in used or (step.map is not None and ({name + "-plan", name + "-each"} & used)):
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        if step.map is not None:
            used.update((name + "-plan", name + "-each"))
        out[step.name] = name
    return out


# -- the manifest ------------------------------------------------------------------------


def manifest(
    flow: "Flow",
    *,
    image: str,
    flow_spec: str,
    name: "str | None" = None,
    namespace: "str | None" = None,
    volume_claim: "str | None" = None,
    workers: "int | None" = None,
) -> "dict[str, Any]":
    """The Argo ``Workflow`` that runs ``flow`` with ``image``, as a dict
    (``apiVersion``, ``kind``, ``metadata``, ``spec``).

    Args:
        flow: the flow (validated).
        image: the container image every pod runs; it holds Python, microdag,
            the flow and the modules its steps import.
        flow_spec: how the pods name the flow (a file path relative to the
            image's working directory, or ``module:attr``).
        name: the workflow's name (default: ``generateName`` from the flow's name).
        namespace: the workflow's namespace.
        volume_claim: a ``PersistentVolumeClaim`` every pod mounts at
            :data:`MOUNT` to share the run folder; without it outputs travel
            as Argo parameters (at most :data:`PARAMETER_LIMIT` bytes each).
        workers: ``spec.parallelism``, the most pods running at once.

    Raises:
        FlowError: what Argo cannot express, every problem listed (each names
            the step and the option).
    """
    problems = name_problems(name=name, namespace=namespace, volume_claim=volume_claim, image=image)
    problems += _templated(flow.name, "the flow's name", "rename the flow")
    problems += _templated(flow_spec, "the flow's path", "give the flow another path")
    plan = flow._compiled()
    problems += _refusals(plan, volume_claim is not None)
    parameters, more = _parameters(plan)
    problems.extend(more)
    if problems:
        raise FlowError(*problems)
    names = task_names(plan)
    builder = _Builder(plan, names, image, flow_spec, volume_claim)
    tasks: list[dict[str, Any]] = []
    templates: list[dict[str, Any]] = []
    for step in plan.steps:
        if step.map is None:
            builder.step(step, tasks, templates)
        else:
            builder.map_step(step, tasks, templates)
    metadata: dict[str, Any] = {}
    if name is not None:
        metadata["name"] = name
    else:
        metadata["generateName"] = _object_name(flow.name) + "-"
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["annotations"] = {"microdag/flow": flow.name}
    spec: dict[str, Any] = {"entrypoint": "main"}
    if parameters:
        spec["arguments"] = {"parameters": parameters}
    if workers is not None:
        spec["parallelism"] = workers
    if volume_claim is not None:
        spec["volumes"] = [{"name": VOLUME, "persistentVolumeClaim": {"claimName": volume_claim}}]
    spec["templates"] = [{"name": "main", "dag": {"tasks": tasks}}, *templates]
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": metadata, "spec": spec}


def _refusals(plan: "_Plan", volume: bool) -> "list[str]":
    """What the steps ask for that Argo cannot do, one line per step and option."""
    problems = []
    names = plan.graph.names
    for i, step in enumerate(plan.steps):
        where = f"step {step.name!r}"
        problems += _templated(step.name, where, "rename the step")
        if step.cache:
            problems.append(
                f"{where}: cache cannot be expressed in Argo (each pod starts afresh, with no "
                "cache to reuse): remove cache from the step to export it"
            )
        if step.key is not None:
            problems.append(
                f"{where}: key cannot be expressed in Argo (its pods take items by position, and a "
                "workflow resubmitted is not resumed by key): remove key from the step to export it"
            )
        if step.retry_on != _RETRY_ON:
            shown = ", ".join(t.__name__ for t in step.retry_on)
            problems.append(
                f"{where}: retry_on ({shown}) cannot be expressed in Argo, which retries a failed "
                "pod whatever the exception: remove retry_on to export the step"
            )
        if step.priority is not None:
            problems.append(
                f"{where}: priority {step.priority} cannot be expressed in Argo, which has no priority "
                "among the tasks of a workflow (every ready task starts, up to --workers): remove "
                "priority to export the step"
            )
        if step.retries > 1 and step.retry_delay > 0 and step.retry_backoff != int(step.retry_backoff) \
                and step.retry_max_delay != 0:
            problems.append(
                f"{where}: retry_backoff {step.retry_backoff:g} cannot be expressed in Argo, whose "
                "backoff factor is a whole number: use 1, 2, 3..."
            )
        if not volume and step.trigger != "all_success" and plan.argdeps[i]:
            used = ", ".join(repr(str(names[d])) for d in dict.fromkeys(plan.argdeps[i]))
            problems.append(
                f"{where}: trigger {step.trigger!r} needs --volume-claim: the step takes the output of "
                f"{used}, and without a volume outputs travel as Argo output parameters, which a step "
                "that failed or did not run does not have"
            )
    return problems


def _parameters(plan: "_Plan") -> "tuple[list[dict[str, Any]], list[str]]":
    """The workflow's ``arguments.parameters`` (one per flow input, with its
    default as ``--input`` would read it) and the problems found."""
    import re  # (import time: re loads on first use)

    problems: list[str] = []
    defaults: dict[str, list[tuple[str, Any]]] = {}
    required: dict[str, bool] = {}
    for step, ins in zip(plan.steps, plan.input_params):
        for _, input_name, default in ins:
            defaults.setdefault(input_name, [])
            required[input_name] = required.get(input_name, False) or default is NO_DEFAULT
            if default is not NO_DEFAULT:
                defaults[input_name].append((step.name, default))
    out = []
    for input_name, given in defaults.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", input_name):
            problems.append(
                f"input {input_name!r}: Argo parameter names are ASCII letters, digits, '_' and '-': "
                "rename the input to export the flow"
            )
            continue
        parameter: dict[str, Any] = {"name": input_name}
        if not required[input_name] and given:
            step_name, value = given[0]
            bad = not_json(value)
            if bad is not None:
                problems.append(
                    f"step {step_name!r}: the default of input {input_name!r} holds a {bad}, which an "
                    "Argo parameter cannot hold: give the input a JSON default"
                )
                continue
            texts = {_parameter_text(v) for _, v in given}
            templated = [problem for text in sorted(texts) for problem in _templated(
                text, f"step {step_name!r}: the default of input {input_name!r}", "give the input another default"
            )]
            if templated:
                problems += templated
                continue
            if len(texts) > 1:
                steps = ", ".join(repr(s) for s, _ in given)
                problems.append(
                    f"input {input_name!r} has different defaults in steps {steps}: an Argo parameter "
                    "has one default, so give the steps the same one"
                )
                continue
            parameter["value"] = texts.pop()
        parameter["description"] = (
            "a flow input: JSON when it reads as JSON, else text" + ("" if parameter.get("value") is not None
                                                                    else " (required)")
        )
        out.append(parameter)
    return out, problems


def _parameter_text(value: "Any") -> str:
    """``value`` as text that ``--input NAME=TEXT`` reads back as ``value``: a
    string that does not read as JSON is itself, anything else its JSON."""
    import json  # (import time: json loads on first use)

    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _duration(seconds: float) -> str:
    """Seconds as an Argo duration: ``"2"`` (whole seconds) or ``"250ms"``."""
    if seconds == int(seconds):
        return str(int(seconds))
    return f"{max(1, round(seconds * 1000))}ms"


class _Builder:
    """Builds the tasks and templates of one manifest (see :func:`manifest`)."""

    def __init__(
        self, plan: "_Plan", names: "dict[str, str]", image: str, flow_spec: str, volume_claim: "str | None"
    ) -> None:
        self.plan = plan
        self.names = names
        self.image = image
        self.flow_spec = flow_spec
        self.volume = volume_claim is not None
        self.run_dir = f"{MOUNT}/{{{{workflow.name}}}}" if self.volume else LOCAL_RUN
        self.ids = {str(s.name): i for i, s in enumerate(plan.steps)}

    # -- pieces

    def outputs_path(self, name: str, suffix: str = ".json") -> str:
        return f"{self.run_dir}/outputs/{file_key(name)}{suffix}"

    def depends(self, step: "_Step") -> "str | None":
        """The Argo ``depends`` expression of ``step``'s trigger over its dependencies."""
        deps = self.plan.graph.dependencies(step.name)
        if not deps:
            return None
        results = {
            "all_success": ("Succeeded",),
            "none_failed": ("Succeeded", "Skipped", "Omitted"),
            "all_done": ("Succeeded", "Failed", "Errored", "Skipped", "Omitted"),
        }[step.trigger]
        terms = []
        for dep in deps:
            task = self.names[str(dep)]
            alternatives = [f"{task}.{result}" for result in results]
            terms.append(alternatives[0] if len(alternatives) == 1 else "(" + " || ".join(alternatives) + ")")
        return " && ".join(terms)

    def args(self, step: "_Step", *extra: str, inputs: bool = True, retry: bool = False) -> "list[str]":
        i = self.ids[step.name]
        out = ["pod", f"--flow={self.flow_spec}", f"--step={step.name}", f"--run-dir={self.run_dir}",
               "--run-id={{workflow.name}}"]
        if inputs:
            for input_name in dict.fromkeys(n for _, n, _ in self.plan.input_params[i]):
                out.append(f"--input={input_name}={{{{workflow.parameters.{input_name}}}}}")
        if retry and step.retries:
            out.append("--retry={{retries}}")
        if not self.volume:
            out.append(f"--max-output={PARAMETER_LIMIT}")
        return out + list(extra)

    def container(self, args: "list[str]") -> "dict[str, Any]":
        out: dict[str, Any] = {"image": self.image, "command": ["python", "-m", "microdag"], "args": args}
        if self.volume:
            out["volumeMounts"] = [{"name": VOLUME, "mountPath": MOUNT}]
        return out

    def limits(self, step: "_Step", template: "dict[str, Any]") -> None:
        """The step's retries and timeout, on the template that runs its code."""
        if step.retries:
            strategy: dict[str, Any] = {"limit": step.retries, "retryPolicy": "Always"}
            if step.retry_delay > 0 and step.retry_max_delay != 0:  # (else every retry starts at once)
                backoff: dict[str, Any] = {"duration": _duration(step.retry_delay)}
                if step.retries > 1:  # (the first retry waits the duration: the factor applies from the second)
                    backoff["factor"] = int(step.retry_backoff)
                if step.retry_max_delay is not None:
                    backoff["cap"] = _duration(step.retry_max_delay)
                strategy["backoff"] = backoff
            template["retryStrategy"] = strategy
        if step.timeout is not None:
            import math  # (import time: math loads on first use)

            template["activeDeadlineSeconds"] = math.ceil(step.timeout) + POD_START

    def carried(self, step: "_Step") -> "tuple[list[dict[str, Any]], list[dict[str, Any]]]":
        """Without a volume: the task's artifact arguments and the template's
        input artifacts that bring the envelopes of ``step``'s dependencies."""
        if self.volume:
            return [], []
        given, wanted = [], []
        for n, dep in enumerate(self.plan.graph.dependencies(step.name)):
            dep = str(dep)
            data = f"{{{{tasks.{self.names[dep]}.outputs.parameters.output}}}}"
            given.append({"name": f"dep-{n}", "raw": {"data": data}})
            wanted.append({"name": f"dep-{n}", "path": self.outputs_path(dep)})
        return given, wanted

    def output(self, path: str, name: str = "output") -> "dict[str, Any]":
        return {"name": name, "valueFrom": {"path": path}}

    # -- steps

    def step(self, step: "_Step", tasks: "list[dict[str, Any]]", templates: "list[dict[str, Any]]") -> None:
        name = self.names[step.name]
        task: dict[str, Any] = {"name": name, "template": name}
        depends = self.depends(step)
        if depends:
            task["depends"] = depends
        given, wanted = self.carried(step)
        if given:
            task["arguments"] = {"artifacts": given}
        template: dict[str, Any] = {"name": name}
        if wanted:
            template["inputs"] = {"artifacts": wanted}
        if not self.volume:
            template["outputs"] = {"parameters": [self.output(self.outputs_path(step.name))]}
        self.limits(step, template)
        template["container"] = self.container(self.args(step, retry=True))
        tasks.append(task)
        templates.append(template)

    def map_step(self, step: "_Step", tasks: "list[dict[str, Any]]", templates: "list[dict[str, Any]]") -> None:
        name = self.names[step.name]
        plan_name, each_name = name + "-plan", name + "-each"
        given, wanted = self.carried(step)
        # plan: the units to run
        task: dict[str, Any] = {"name": plan_name, "template": plan_name}
        depends = self.depends(step)
        if depends:
            task["depends"] = depends
        if given:
            task["arguments"] = {"artifacts": given}
        template: dict[str, Any] = {"name": plan_name}
        if wanted:
            template["inputs"] = {"artifacts": wanted}
        template["outputs"] = {"parameters": [
            self.output(self.outputs_path(step.name, ".items.json"), "items"),
            self.output(self.outputs_path(step.name, ".plan.json"), "plan"),
        ]}
        template["container"] = self.container(self.args(step, "--plan"))
        tasks.append(task)
        templates.append(template)
        # each: one pod per unit
        task = {
            "name": each_name,
            "template": each_name,
            "depends": f"{plan_name}.Succeeded",
            "withParam": f"{{{{tasks.{plan_name}.outputs.parameters.items}}}}",
            "arguments": {"parameters": [{"name": "item", "value": "{{item}}"}]},
        }
        if given:
            task["arguments"]["artifacts"] = given
        template = {"name": each_name, "inputs": {"parameters": [{"name": "item"}]}}
        if wanted:
            template["inputs"]["artifacts"] = wanted
        if not self.volume:
            path = self.outputs_path(step.name, ".units/{{inputs.parameters.item}}.json")
            template["outputs"] = {"parameters": [self.output(path)]}
        self.limits(step, template)
        template["container"] = self.container(
            self.args(step, "--item={{inputs.parameters.item}}", retry=True)
        )
        tasks.append(task)
        templates.append(template)
        # gather: the step's output, the units' results in order
        task = {"name": name, "template": name, "depends": f"{plan_name}.Succeeded && {each_name}.Succeeded"}
        template = {"name": name}
        if not self.volume:
            task["arguments"] = {"artifacts": [
                {"name": "plan", "raw": {"data": f"{{{{tasks.{plan_name}.outputs.parameters.plan}}}}"}},
                {"name": "units", "raw": {"data": f"{{{{tasks.{each_name}.outputs.parameters}}}}"}},
            ]}
            template["inputs"] = {"artifacts": [
                {"name": "plan", "path": self.outputs_path(step.name, ".plan.json")},
                {"name": "units", "path": self.outputs_path(step.name, ".units.json")},
            ]}
            template["outputs"] = {"parameters": [self.output(self.outputs_path(step.name))]}
        template["container"] = self.container(self.args(step, "--gather", inputs=False))
        tasks.append(task)
        templates.append(template)
