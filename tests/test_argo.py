"""``python -m microdag export argo``: flows as Argo ``Workflow`` manifests, and
``python -m microdag step ... --run-dir`` as the pods' command.

- Every manifest written here is checked against Argo's schema through the
  ``hera`` package's models of the Argo API (a round trip: a field the schema
  does not know would be dropped, and the manifest would not come back equal)
  and against the rules Argo's own validation adds (names, references between
  tasks, inputs given), by :func:`check`.
- Manifests are run on this machine by ``tests/argo/argo_emulator.py`` as
  Argo would run them (``depends``, ``{{...}}`` tags, ``withParam``, retries and
  their backoff, deadlines, volumes, artifacts and output parameters), and what
  they leave must equal what ``flow.run()`` returns on the same flow and inputs.
- The YAML microdag writes is read back with PyYAML.
"""

import json
import os
import re
import subprocess
import sys

import pytest

import microdag
from microdag._argo import LOCAL_RUN, MOUNT, PARAMETER_LIMIT, manifest, task_names
from microdag._pod import file_key
from microdag.cli import main
from microdag._yaml import dump
from support import child_env, cli

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
ARGO = os.path.join(TESTS, "argo")
sys.path.insert(0, ARGO)

from argo_emulator import Emulator  # noqa: E402  (tests/argo is not a package)

EVERYTHING = os.path.join(ARGO, "everything.toml")
PARAMS = os.path.join(ARGO, "params.toml")
FAILING = os.path.join(ARGO, "failing.toml")
INLINE = os.path.join(ARGO, "inline.toml")
REFUSED = os.path.join(ARGO, "refused.py")
NAMES = os.path.join(ARGO, "names.py")
RELEASE = os.path.join(ROOT, "examples", "release", "flow.toml")
WEBSITE = os.path.join(ROOT, "examples", "website", "website.toml")


def export(path, *extra, capsys=None):
    """The manifest ``export argo`` writes for ``path`` (as JSON), checked."""
    code = main(["export", "argo", path, "--image", "registry.example/flows:1", "--format", "json", *extra])
    assert code == 0
    out, _ = capsys.readouterr()
    document = json.loads(out)
    check(document)
    return document


# -- the checks: Argo's schema (hera) and Argo's own validation rules ---------------------------

_NAME = re.compile(r"[a-zA-Z0-9][-a-zA-Z0-9]*")
_TAG = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
_RESULTS = {"Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "AnySucceeded", "AllFailed"}


try:
    from hera.workflows import models as HERA
except ImportError:  # (test extras) test_the_schema_check_has_hera says so
    HERA = None


def check(document):
    """``document`` is an Argo Workflow: valid for the API's schema (when hera
    is installed) and for the rules Argo adds when it validates a workflow."""
    if HERA is not None:
        model = HERA.Workflow.model_validate(document)
        assert model.model_dump(by_alias=True, exclude_none=True, mode="json") == document, (
            "the manifest holds fields (or values) Argo's schema does not know"
        )
    lint(document)


def test_the_schema_check_has_hera():
    if HERA is None:
        pytest.skip("the Argo schema check needs hera (test extras): only the structural checks ran")


def lint(document):
    """The rules Argo's validation adds to its schema, for what microdag writes."""
    assert document["apiVersion"] == "argoproj.io/v1alpha1" and document["kind"] == "Workflow"
    meta, spec = document["metadata"], document["spec"]
    name = meta.get("name") or meta["generateName"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9-])?", name) and len(name) <= 63
    parameters = {p["name"]: p for p in spec.get("arguments", {}).get("parameters", [])}
    assert all(re.fullmatch(r"[-a-zA-Z0-9_]+", p) for p in parameters)
    volumes = {v["name"] for v in spec.get("volumes", [])}
    templates = {t["name"]: t for t in spec["templates"]}
    assert len(templates) == len(spec["templates"]), "template names repeat"
    assert all(_NAME.fullmatch(t) and len(t) <= 128 for t in templates)
    dag = templates[spec["entrypoint"]]["dag"]
    tasks = {t["name"]: t for t in dag["tasks"]}
    assert len(tasks) == len(dag["tasks"]), "task names repeat"
    parents = {}
    for task in dag["tasks"]:
        assert _NAME.fullmatch(task["name"]) and not task["name"][0].isdigit()
        deps = []
        for m in re.finditer(r"([a-zA-Z0-9][-a-zA-Z0-9]*?)\.([A-Z][a-zA-Z]+)", task.get("depends", "")):
            assert m.group(1) in tasks and m.group(2) in _RESULTS, task["depends"]
            deps.append(m.group(1))
        parents[task["name"]] = deps

    def ancestors(name, seen=None):
        seen = set() if seen is None else seen
        for dep in parents[name]:
            if dep not in seen:
                seen.add(dep)
                ancestors(dep, seen)
        return seen

    for task in dag["tasks"]:
        template = templates[task["template"]]
        given = {p["name"] for p in task.get("arguments", {}).get("parameters", [])}
        for p in template.get("inputs", {}).get("parameters", []):
            assert p["name"] in given or "value" in p or "default" in p, (task["name"], p["name"])
        arts = {a["name"] for a in task.get("arguments", {}).get("artifacts", [])}
        for a in template.get("inputs", {}).get("artifacts", []):
            assert a["name"] in arts or "raw" in a, (task["name"], a["name"])
            assert a["path"].startswith("/")
        for tag in _TAG.findall(json.dumps([task.get("arguments", {}), task.get("withParam", "")])):
            if tag == "item":
                assert "withParam" in task
                continue
            if tag.startswith("workflow."):
                assert tag == "workflow.name" or tag.removeprefix("workflow.parameters.") in parameters
                continue
            m = re.fullmatch(r"tasks\.([-a-zA-Z0-9]+)\.outputs\.parameters(?:\.([-a-zA-Z0-9_]+))?", tag)
            assert m, tag
            source = m.group(1)
            assert source in ancestors(task["name"]), f"{task['name']} uses {source}, not an ancestor"
            if m.group(2) is None:
                assert "withParam" in tasks[source], tag
            else:
                outputs = templates[tasks[source]["template"]].get("outputs", {}).get("parameters", [])
                assert m.group(2) in {p["name"] for p in outputs}, tag
    for template in spec["templates"]:
        if "container" not in template:
            continue
        container = template["container"]
        assert container["image"] and container["command"][:3] == ["python", "-m", "microdag"]
        inputs = {p["name"] for p in template.get("inputs", {}).get("parameters", [])}
        for tag in _TAG.findall(json.dumps(template)):
            if tag == "retries":
                assert "retryStrategy" in template
            elif tag.startswith("inputs.parameters."):
                assert tag.removeprefix("inputs.parameters.") in inputs
            else:
                assert tag == "workflow.name" or tag.removeprefix("workflow.parameters.") in parameters, tag
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes
        strategy = template.get("retryStrategy")
        if strategy is not None:
            assert isinstance(strategy["limit"], int) and strategy["limit"] >= 1
            assert strategy["retryPolicy"] == "Always"
            backoff = strategy.get("backoff", {})
            for key in ("duration", "cap"):
                if key in backoff:
                    assert re.fullmatch(r"\d+|\d+ms", backoff[key]), backoff
            assert isinstance(backoff.get("factor", 1), int)
        deadline = template.get("activeDeadlineSeconds")
        assert deadline is None or (isinstance(deadline, int) and deadline >= 1)
        for p in template.get("outputs", {}).get("parameters", []):
            assert p["valueFrom"]["path"].startswith("/")


def test_the_checks_refuse_what_argo_would_refuse(capsys):
    if HERA is None:
        pytest.skip("the Argo schema check needs hera (test extras)")
    import pydantic

    good = export(WEBSITE, capsys=capsys)
    broken = json.loads(json.dumps(good))
    broken["spec"]["templates"][1]["container"]["imagePullPolicy_"] = "Always"  # a field Argo does not have
    with pytest.raises(AssertionError, match="fields"):
        check(broken)
    broken = json.loads(json.dumps(good))
    broken["spec"]["templates"][0]["dag"]["tasks"][1]["depends"] = ["fetch"]  # a list, not an expression
    with pytest.raises(pydantic.ValidationError):
        check(broken)
    broken = json.loads(json.dumps(good))
    broken["spec"]["templates"][0]["dag"]["tasks"][1].pop("depends")  # uses fetch's output without needing it
    with pytest.raises(AssertionError, match="not an ancestor"):
        check(broken)
    broken = json.loads(json.dumps(good))
    broken["spec"]["templates"][0]["dag"]["tasks"][1]["depends"] = "fetch.Done"
    with pytest.raises(AssertionError):
        check(broken)


# -- the YAML writer ------------------------------------------------------------------------------

TRICKY = [
    "plain", "a: b", "key:value", "# not a comment", "a #b", "-", "- x", "--run-dir", "-1", "yes", "No", "ON",
    "off", "y", "n", "~", "null", "Null", "true", "False", "", " ", " leading", "trailing ", "12", "1.5", "1e3",
    "0x1F", "0o17", "1_000", ".inf", "-.inf", ".NaN", "+1", "2026-11-22", "12:30:00", "1:20", "multi\nline",
    "ends with newline\n", "\n", "tab\tin", "carriage\rreturn", "üñíçødé", "日本語", "emoji 😀", "nel\x85",
    "ls\u2028ps\u2029", "bom\ufeff", "del\x7f", "c1\x9f", "bell\x07", "{{workflow.name}}", "{a: 1}", "[1, 2]",
    '"quoted"', "'single'", "back\\slash", "@at", "`tick", "%pct", "!tag", "&anchor", "*alias", "|", ">", "?",
    "a,b", "=", "<<", "a.b-c_d", "/microdag/{{workflow.name}}", "python={{workflow.parameters.python}}",
]


def test_yaml_reads_back_as_the_same_values_with_pyyaml():
    yaml = pytest.importorskip("yaml", reason="the YAML round trip needs PyYAML (test extras)")
    document = {
        "strings": TRICKY,
        "keys": {text: text for text in TRICKY},
        "numbers": [0, -7, 2**63, 1.5, -0.25, 1e-05, 3e20, 0.1],
        "others": [True, False, None, {}, [], [[1, [2, []]], {"a": [{"b": {}}]}]],
        "nested": {"a": {"b": {"c": [1, {"d": "e"}]}}},
    }
    text = dump(document, comment="a comment\nover two lines")
    assert text.startswith("# a comment\n# over two lines\n")
    assert yaml.safe_load(text) == document
    for value in TRICKY:
        assert yaml.safe_load(dump(value)) == value
        assert yaml.safe_load(dump([value])) == [value]


def test_yaml_writes_json_values_only():
    with pytest.raises(TypeError):
        dump({"a": {1, 2}})
    with pytest.raises(TypeError):
        dump({1: "a"})
    with pytest.raises(ValueError):
        dump([float("nan")])


@pytest.mark.parametrize("path", [RELEASE, WEBSITE, EVERYTHING, PARAMS])
def test_the_yaml_export_reads_back_as_the_json_export(capsys, path):
    yaml = pytest.importorskip("yaml", reason="the YAML round trip needs PyYAML (test extras)")
    claim = [] if path == PARAMS else ["--volume-claim", "runs"]
    assert main(["export", "argo", path, "--image", "img:1", *claim]) == 0
    text, _ = capsys.readouterr()
    assert text.startswith("# Argo Workflow of flow ")
    assert main(["export", "argo", path, "--image", "img:1", "--format", "json", *claim]) == 0
    assert yaml.safe_load(text) == json.loads(capsys.readouterr()[0])


# -- the manifests -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [RELEASE, WEBSITE, EVERYTHING, PARAMS, FAILING])
@pytest.mark.parametrize("claim", [[], ["--volume-claim", "microdag-runs"]])
def test_every_manifest_validates_against_argos_schema(capsys, path, claim):
    if not claim and path in (EVERYTHING, FAILING):  # their triggers need a volume (tested below)
        return
    document = export(path, *claim, capsys=capsys)
    spec = document["spec"]
    flow = microdag.load_flow(path)
    tasks = {t["name"] for t in spec["templates"][0]["dag"]["tasks"]}
    for step, task in task_names(flow._compiled()).items():
        assert task in tasks
        if flow._compiled().steps[flow.graph.id(step)].map is not None:
            assert {task + "-plan", task + "-each"} <= tasks
    assert ("volumes" in spec) == bool(claim)


def test_the_release_example_maps_every_option_to_its_argo_field(capsys):
    document = export(RELEASE, "--volume-claim", "runs", "--workers", "3", "--name", "release-1",
                      "--namespace", "ci", "--flow-path", "flows/release.toml", capsys=capsys)
    assert document["metadata"] == {"name": "release-1", "namespace": "ci", "annotations": {"microdag/flow": "release"}}
    spec = document["spec"]
    assert spec["entrypoint"] == "main" and spec["parallelism"] == 3
    assert spec["volumes"] == [{"name": "microdag", "persistentVolumeClaim": {"claimName": "runs"}}]
    assert [(p["name"], p["value"]) for p in spec["arguments"]["parameters"]] == [
        ("python", "python3"), ("version", "1.4.0"),
    ]
    templates = {t["name"]: t for t in spec["templates"]}
    tasks = {t["name"]: t for t in templates["main"]["dag"]["tasks"]}
    assert "depends" not in tasks["changes"]
    assert tasks["publish"]["depends"] == "notes.Succeeded && checksum.Succeeded && size.Succeeded && lint.Succeeded"
    lint_ = templates["lint"]
    backoff = {"duration": "100ms", "factor": 2}
    assert lint_["retryStrategy"] == {"limit": 2, "retryPolicy": "Always", "backoff": backoff}
    assert lint_["activeDeadlineSeconds"] == 10
    assert templates["publish"]["retryStrategy"] == {"limit": 1, "retryPolicy": "Always"}
    assert "retryStrategy" not in templates["notes"] and "activeDeadlineSeconds" not in templates["notes"]
    container = templates["checksum"]["container"]
    assert container["image"] == "registry.example/flows:1"
    assert container["command"] == ["python", "-m", "microdag"]
    assert container["args"] == [
        "pod", "--flow=flows/release.toml", "--step=checksum", "--run-dir=/microdag/{{workflow.name}}",
        "--run-id={{workflow.name}}", "--input=python={{workflow.parameters.python}}",
    ]
    assert container["volumeMounts"] == [{"name": "microdag", "mountPath": MOUNT}]
    assert "--retry={{retries}}" in templates["lint"]["container"]["args"]  # its attempt number


def test_without_a_volume_outputs_travel_as_parameters_and_raw_artifacts(capsys):
    document = export(WEBSITE, capsys=capsys)
    templates = {t["name"]: t for t in document["spec"]["templates"]}
    tasks = {t["name"]: t for t in templates["main"]["dag"]["tasks"]}
    assert templates["fetch"]["outputs"] == {
        "parameters": [{"name": "output", "valueFrom": {"path": f"{LOCAL_RUN}/outputs/fetch.json"}}]
    }
    assert tasks["top-words"]["arguments"] == {
        "artifacts": [{"name": "dep-0", "raw": {"data": "{{tasks.fetch.outputs.parameters.output}}"}}]
    }
    assert templates["top-words"]["inputs"] == {
        "artifacts": [{"name": "dep-0", "path": f"{LOCAL_RUN}/outputs/fetch.json"}]
    }
    args = templates["top-words"]["container"]["args"]
    assert f"--max-output={PARAMETER_LIMIT}" in args and PARAMETER_LIMIT == 262144
    assert "volumes" not in document["spec"] and "volumeMounts" not in templates["fetch"]["container"]


def test_triggers_become_depends_expressions_and_maps_fan_out(capsys):
    document = export(EVERYTHING, "--volume-claim", "runs", capsys=capsys)
    spec = document["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    tasks = {t["name"]: t for t in templates["main"]["dag"]["tasks"]}
    assert tasks["after"]["depends"] == "maybe.Succeeded"
    assert tasks["tolerant"]["depends"] == (
        "(after.Succeeded || after.Skipped || after.Omitted) && (flaky.Succeeded || flaky.Skipped || flaky.Omitted)"
    )
    assert tasks["done"]["depends"] == " && ".join(
        f"({t}.Succeeded || {t}.Failed || {t}.Errored || {t}.Skipped || {t}.Omitted)"
        for t in ("maybe", "after", "square")
    )
    # a map step: plan, each (withParam over the planned units), gather
    assert tasks["square-plan"]["depends"] == "numbers.Succeeded"
    assert tasks["square-each"]["withParam"] == "{{tasks.square-plan.outputs.parameters.items}}"
    assert tasks["square-each"]["arguments"] == {"parameters": [{"name": "item", "value": "{{item}}"}]}
    assert tasks["square"]["depends"] == "square-plan.Succeeded && square-each.Succeeded"
    assert tasks["total"]["depends"] == "square.Succeeded"  # its consumers read the gathered list
    assert "--item={{inputs.parameters.item}}" in templates["square-each"]["container"]["args"]
    assert "--plan" in templates["square-plan"]["container"]["args"]
    assert "--gather" in templates["square"]["container"]["args"]
    # the step's code runs in the units: they carry its retries and timeout, the others do not
    flaky = templates["flaky"]["retryStrategy"]
    assert flaky == {"limit": 2, "retryPolicy": "Always", "backoff": {"duration": "50ms", "factor": 3, "cap": "100ms"}}
    assert templates["slow"]["activeDeadlineSeconds"] == 1  # 0.5 s, in whole seconds
    assert templates["total"]["retryStrategy"] == {"limit": 1, "retryPolicy": "Always"}
    # a map over a flow input
    assert tasks["shout-plan"].get("depends") is None
    assert "--input=words={{workflow.parameters.words}}" in templates["shout-each"]["container"]["args"]
    words = next(p for p in spec["arguments"]["parameters"] if p["name"] == "words")
    assert words["value"] == '["alpha","beta","gamma"]'


def test_task_names_are_argo_names_and_never_collide():
    flow = microdag.Flow("names")
    names = ["Top Words", "top_words", "top-words", "1st", "not", "main", "x" * 90, "émoji 😀", "a-plan", "a", "--"]
    for name in names:
        flow.add(name, lambda: 1)
    flow.add("m", lambda xs=(1, 2): xs, map="xs")
    flow.add("m-each", lambda: 1)
    got = task_names(flow._compiled())
    used = list(got.values()) + [got["m"] + "-plan", got["m"] + "-each"]
    assert len(set(used)) == len(used)
    for task in used:
        assert re.fullmatch(r"[a-z][-a-z0-9]*", task) and len(task) <= 63, task
        assert task not in ("not", "main")
    assert got["Top Words"] == "top-words" and got["1st"] == "s-1st" and got["not"] == "not-step"
    assert got["m-each"] == "m-each-2"


def test_file_keys_are_distinct_and_stay_in_their_folder():
    names = ["fetch", "top-words", "a b", "a/b", "a%2Fb", "..", ".", "a.b", "日本", "x_y"]
    keys = [file_key(n) for n in names]
    assert len(set(keys)) == len(keys)
    assert all("/" not in k and not k.startswith(".") for k in keys)
    assert file_key("top-words") == "top-words" and file_key("x_y") == "x_y"


def test_file_keys_of_long_or_non_ascii_names_are_short_digests():
    import names

    for name in (names.LONG, names.CJK, "é" * 40, "a" * 101):
        key = file_key(name)
        assert len(key) <= 70 and key.isascii() and "/" not in key and "=" in key, key
        assert file_key(name) == key and file_key(name + "!") != key
    assert file_key("a" * 100) == "a" * 100 and file_key("日本") == "%E6%97%A5%E6%9C%AC"  # short ones: as before
    # the longest file a step makes (a unit of a map step) fits in a file name
    assert len((file_key(names.LONG) + ".units/999999.json").encode()) < 255


def test_text_argo_would_read_as_its_template_syntax_is_refused_naming_each_place():
    import names

    with pytest.raises(microdag.FlowError) as caught:
        manifest(names.templated, image="img", flow_spec="names.py:templated")
    problems = caught.value.problems
    assert len(problems) == 3, problems
    assert problems[0].startswith("step '{{workflow.uid}}': '{{workflow.uid}}' holds '{{', which Argo reads as "
                                  "its own template syntax")
    assert problems[0].endswith("rename the step to export the flow")
    assert problems[1].startswith("step \"a{{=sprig.trim('x')}}\": ")
    assert problems[2].startswith("step 'b': the default of input 'where': '{{workflow.name}}' holds '{{'")
    flow = microdag.Flow("plain")
    flow.add("a", lambda: 1)
    for given, where in [({"flow_spec": "f{{workflow.name}}.py"}, "the flow's path"),
                         ({"image": "img:{{workflow.uid}}"}, "image")]:
        with pytest.raises(microdag.FlowError, match=re.escape(where)):
            manifest(flow, **{"image": "img", "flow_spec": "f.py", **given})
    named = microdag.Flow("{{workflow.name}}")
    named.add("a", lambda: 1)
    with pytest.raises(microdag.FlowError, match="the flow's name"):
        manifest(named, image="img", flow_spec="f.py")


@pytest.mark.parametrize("claim", [True, False])
def test_odd_step_names_run_in_the_emulator_as_flow_run_runs_them(tmp_path, claim):
    """Steps named like options (``-h``, ``--plan``, ``-``), too long for a file
    name once encoded (300 ASCII, 30 CJK characters), and braces Argo leaves
    alone: the emulated workflow, Argo's substitution applied, equals flow.run()."""
    import names

    emulator, run, statuses, outputs = emulate(f"{NAMES}:odd", tmp_path, claim=claim, inputs={"n": 3})
    same(run, statuses, outputs)
    assert run.status == "succeeded" and all(status == "succeeded" for status in statuses.values())
    assert outputs["-h"] == [1, 2, 3] and outputs["--plan"] == 6 and outputs[names.LONG] == [1, 4, 9]
    assert outputs[names.CJK] == 14 and outputs["a{b}"] == [14, "{x} }}"] and outputs["}}x"] == 6
    assert outputs["-"] == [6, [14, "{x} }}"]]
    assert all("usage:" not in p["stderr"] for p in emulator.pods)


def test_a_step_named_like_an_option_runs_from_the_command_line(capsys, tmp_path):
    code, _, _ = cli(capsys, "pod", f"--flow={NAMES}:odd", "--step=-h", f"--run-dir={tmp_path}", "--input=n=2")
    assert code == 0 and envelope(tmp_path, "-h")["output"] == [1, 2]
    code, _, _ = cli(capsys, "pod", f"--flow={NAMES}:odd", "--step=--plan", f"--run-dir={tmp_path}")
    assert code == 0 and envelope(tmp_path, "--plan")["output"] == 3
    store = f"json:{tmp_path / 'runs'}"
    code, _, err = cli(capsys, "run", f"{NAMES}:odd", "-i", "n=2", "--store", store, "--run-id", "r1", "-q")
    assert code == 0, err
    code, out, err = cli(capsys, "step", f"{NAMES}:odd", "--from-run", "r1", "--store", store, "--", "-h")
    assert code == 0 and json.loads(out) == [1, 2], err
    code, out, err = cli(capsys, "step", f"{NAMES}:odd", "--from-run", "r1", "--store", store, "--", "--plan")
    assert code == 0 and json.loads(out) == 3, err


def test_flow_inputs_become_parameters_with_their_defaults_as_input_reads_them():
    flow = microdag.Flow("inputs")

    def step(text="hello", number_text="5", n=3, data=None):
        return 1

    def needs(needed, n=3):
        return needed

    flow.add("a", step)
    flow.add("b", needs)
    parameters = manifest(flow, image="i", flow_spec="f.py")["spec"]["arguments"]["parameters"]
    assert {p["name"]: p.get("value") for p in parameters} == {
        "text": "hello", "number_text": '"5"', "n": "3", "data": "null", "needed": None,  # needed: argo submit -p
    }
    assert all(p["description"].startswith("a flow input: JSON when it reads as JSON, else text") for p in parameters)

    odd = microdag.Flow("tuple-default")
    odd.add("a", lambda items=("a",): items)
    with pytest.raises(microdag.FlowError, match=r"step 'a': the default of input 'items' holds a tuple"):
        manifest(odd, image="i", flow_spec="f.py")


def test_what_argo_cannot_express_is_refused_naming_the_step_and_option():
    flow = microdag.Flow("refused")
    flow.add("numbers", lambda: [1], cache=True, priority=2)
    flow.add("square", lambda numbers: numbers, retry_on=KeyError, retries=2, retry_delay=1, retry_backoff=1.5)
    flow.add("all", lambda numbers: numbers, trigger="all_done")
    flow.add("order", lambda: 1, depends_on=["numbers"], trigger="none_failed")  # no data: fine
    with pytest.raises(microdag.FlowError) as caught:
        manifest(flow, image="i", flow_spec="f.py")
    problems = caught.value.problems
    assert len(problems) == 5, problems
    assert problems[0].startswith("step 'numbers': cache cannot be expressed in Argo")
    assert problems[1].startswith("step 'numbers': priority 2 cannot be expressed in Argo")
    assert problems[2].startswith("step 'square': retry_on (KeyError) cannot be expressed in Argo")
    assert problems[3].startswith("step 'square': retry_backoff 1.5 cannot be expressed in Argo")
    assert problems[4].startswith("step 'all': trigger 'all_done' needs --volume-claim")
    # with a volume, the trigger is fine; the rest is still refused
    with pytest.raises(microdag.FlowError) as caught:
        manifest(flow, image="i", flow_spec="f.py", volume_claim="runs")
    assert len(caught.value.problems) == 4

    two = microdag.Flow("two-defaults")
    two.add("a", lambda limit=1: limit)
    two.add("b", lambda limit=2: limit)
    with pytest.raises(microdag.FlowError, match=r"input 'limit' has different defaults in steps 'a', 'b'"):
        manifest(two, image="i", flow_spec="f.py")
    odd = microdag.Flow("odd-name")
    odd.add("a", lambda größe=1: größe)
    with pytest.raises(microdag.FlowError, match=r"input 'größe': Argo parameter names are ASCII"):
        manifest(odd, image="i", flow_spec="f.py")


# -- the command line ----------------------------------------------------------------------------


def test_export_is_a_command_with_help(capsys):
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "export" in out
    code, out, _ = cli(capsys, "export", "--help")
    assert code == 0 and out.startswith("usage: python -m microdag export")
    for option in ("--image", "--name", "--namespace", "--volume-claim", "--workers", "--format", "--output",
                   "--flow-path"):
        assert option in out


def test_export_writes_yaml_to_stdout_or_a_file(capsys, tmp_path):
    code, out, err = cli(capsys, "export", "argo", WEBSITE, "--image", "img:1")
    assert code == 0 and err == ""
    assert "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\n" in out
    target = tmp_path / "website.yaml"
    code, out, _ = cli(capsys, "export", "argo", WEBSITE, "--image", "img:1", "-o", target)
    assert code == 0 and out.strip() == str(target)
    assert target.read_text(encoding="utf-8").startswith("# Argo Workflow of flow 'website'")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "argo", WEBSITE], "the following arguments are required: --image"),
        (["export", "airflow", WEBSITE, "--image", "i"], "invalid choice: 'airflow'"),
        (["export", "argo", WEBSITE, "--image", "i", "--format", "xml"], "invalid choice: 'xml'"),
        (["export", "argo", WEBSITE, "--image", "i", "--workers", "0"], "expected a number >= 1"),
    ],
)
def test_export_usage_errors_exit_2(capsys, argv, message):
    code, _, err = cli(capsys, *argv)
    assert code == 2 and message in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--name", "Release_1"], "--name 'Release_1' is not a workflow name"),
        (["--name", "x" * 64], "at most 63 characters"),
        (["--namespace", "CI_jobs"], "--namespace 'CI_jobs' is not a namespace"),
        (["--volume-claim", "Runs!"], "--volume-claim 'Runs!' is not a claim name"),
        (["--image", "has space"], "--image 'has space' is not an image name"),
        (["-o", "/no/such/folder/x.yaml"], "cannot write /no/such/folder/x.yaml"),
    ],
)
def test_export_bad_values_exit_2_naming_the_option(capsys, extra, message):
    code, out, err = cli(capsys, "export", "argo", WEBSITE, "--image", "img", *extra)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_an_unknown_flow_exits_2_with_one_line(capsys):
    code, out, err = cli(capsys, "export", "argo", "no/such/flow.toml", "--image", "img")
    assert code == 2 and out == ""
    assert err == "error: no/such/flow.toml: no such flow file\n"


def test_a_refused_flow_exits_2_naming_each_step_and_option(capsys):
    code, out, err = cli(capsys, "export", "argo", f"{REFUSED}:several", "--image", "img")
    assert code == 2 and out == ""
    assert err.startswith("error: 3 problems:\n")
    assert "step 'numbers': priority 3 cannot be expressed in Argo" in err
    assert "step 'numbers': retry_on (ValueError) cannot be expressed in Argo" in err
    assert "step 'square': retry_backoff 1.5 cannot be expressed in Argo" in err
    code, _, err = cli(capsys, "export", "argo", f"{REFUSED}:cached", "--image", "img")
    assert code == 2 and err.startswith("error: step 'numbers': cache cannot be expressed in Argo")
    code, _, err = cli(capsys, "export", "argo", FAILING.replace("failing", "everything"), "--image", "img")
    assert code == 2 and "step 'done': trigger 'all_done' needs --volume-claim" in err


# -- the emulated runs: what Argo would do equals flow.run() --------------------------------------


def emulate(path, folder, claim=True, inputs=None, **run_options):
    """Export ``path``, run the manifest in the emulator and the flow with
    ``flow.run()``; return (emulator, run, statuses, outputs) where statuses and
    outputs are what the workflow left, by step name."""
    flow = microdag.load_flow(path)
    document = manifest(flow, image="img", flow_spec=path, volume_claim="runs" if claim else None)
    check(document)
    given = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (inputs or {}).items()}
    emulator = Emulator(document, folder, parameters=given, env=child_env(), cwd=ROOT).run()
    run = flow.run(inputs, run_id=emulator.name, keep_outputs=True, raise_on_failure=False, **run_options)
    names = task_names(flow._compiled())
    statuses, outputs = {}, {}
    for step, task in names.items():
        if claim:
            path_ = os.path.join(emulator.volumes["microdag"], emulator.name, "outputs", file_key(step) + ".json")
            envelope = json.load(open(path_, encoding="utf-8")) if os.path.exists(path_) else None
        else:
            text = emulator.nodes[task]["outputs"].get("output")
            envelope = None if text is None else json.loads(text)
        if envelope is None or emulator.phase(task) != "Succeeded":
            statuses[step] = "failed" if emulator.phase(task) in ("Failed", "Error") else "skipped"
        else:
            statuses[step] = envelope["status"]
            if envelope["status"] == "succeeded":
                outputs[step] = envelope["output"]
    return emulator, run, statuses, outputs


def same(run, statuses, outputs):
    assert statuses == {name: task.status for name, task in run.tasks.items()}
    assert outputs == dict(run.outputs)


def test_an_emulated_run_with_a_volume_equals_flow_run(tmp_path):
    inputs = {"python": sys.executable}
    emulator, run, statuses, outputs = emulate(EVERYTHING, tmp_path, inputs=inputs)
    same(run, statuses, outputs)
    assert run.status == "succeeded"
    # a failed-then-retried step: its first pod failed, the second succeeded, after the backoff
    flaky = [p for p in emulator.pods if p["task"] == "flaky"]
    assert [p["code"] for p in flaky] == [1, 0] and outputs["flaky"]["attempt"] == 2 == run.tasks["flaky"].attempts
    assert emulator.waits == [("flaky", 0.05)]
    assert "ConnectionError: the service did not answer (attempt 1)" in flaky[0]["stderr"]
    # a timeout: the first attempt hung and was stopped, the retry answered
    slow = [p for p in emulator.pods if p["task"] == "slow"]
    assert [p["code"] for p in slow] == [1, 0] and slow[0]["seconds"] < 5
    assert "TimeoutError: step 'slow' timed out after 0.5 s (the call was abandoned)" in slow[0]["stderr"]
    # a skipped branch: Succeeded pods whose envelopes say skipped; all_done and none_failed ran with None
    assert statuses["maybe"] == statuses["after"] == "skipped"
    assert outputs["done"] == {"maybe": None, "after": None, "square": [1, 4, 9, 16]}
    assert outputs["tolerant"] == {"after": None, "flaky": 4}
    # maps: one pod per unit (a batch of 3 items is one unit), and an empty map ran one idle pod
    units = lambda task: sorted(int(next(a for a in p["argv"] if a.startswith("--item=")).partition("=")[2])  # noqa: E731
                                for p in emulator.pods if p["task"] == task)
    assert units("square-each") == [0, 1, 2, 3] and units("pairs-each") == [0, 1]
    assert units("none-squared-each") == [-1] and outputs["none-squared"] == []
    assert units("shout-each") == [0, 1, 2] and outputs["shout"] == ["ALPHA", "BETA", "GAMMA"]
    # files through the run folder on the volume, and the run's id is the workflow's name
    assert outputs["where"] == {"run_id": emulator.name, "step": "where"}
    assert outputs["reads"] == ["1", "2", "3", "4"]
    # a step name that is neither a file name nor an Argo name
    assert outputs["Total²/v2.0"] == 900 and emulator.phase("total-v2-0") == "Succeeded"
    assert os.path.exists(os.path.join(emulator.volumes["microdag"], emulator.name, "outputs",
                                       "Total%C2%B2%2Fv2%2E0.json"))


def test_an_emulated_run_without_a_volume_equals_flow_run(tmp_path):
    inputs = {"python": sys.executable, "n": 5, "words": ["a", "b", "c"]}
    emulator, run, statuses, outputs = emulate(PARAMS, tmp_path, claim=False, inputs=inputs)
    same(run, statuses, outputs)
    assert outputs["square"] == [1, 4, 9, 16, 25] and outputs["total"] == 55
    assert outputs["pairs"] == [[1, 2], [2, 3], [3, 4], [4, 5], [5, 6]]
    assert statuses["after"] == "skipped" and outputs["last"] == "last"
    assert emulator.volumes == {}


def test_inline_steps_emulated_equal_flow_run_and_their_tracebacks_name_the_flow_file(tmp_path, capsys):
    export(INLINE, capsys=capsys)  # schema-valid, Argo's rules kept
    emulator, run, statuses, outputs = emulate(INLINE, tmp_path, inputs={"n": 3})
    same(run, statuses, outputs)
    assert outputs == {"numbers": [1, 2, 3], "square": [1, 4, 9], "total": 14}
    assert statuses["boom"] == "failed"
    [pod] = [p for p in emulator.pods if p["task"] == "boom"]
    with open(INLINE, encoding="utf-8") as f:
        line = next(n for n, text in enumerate(f, 1) if "raise ValueError" in text)
    assert f'inline.toml", line {line}, in boom' in pod["stderr"]
    assert 'raise ValueError(f"boom after {total}")' in pod["stderr"]


def test_the_release_example_emulated_equals_flow_run(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    emulator, run, statuses, outputs = emulate(RELEASE, tmp_path, inputs={"version": "2.0.0"})
    # `notes` returns the path of the file it wrote in its working folder: the run folder on the
    # volume there (/microdag/<workflow>/work/notes), a temporary folder here
    volume = os.path.join(emulator.volumes["microdag"], emulator.name, "work", "notes")
    assert os.path.dirname(outputs["notes"]) == volume
    assert os.path.basename(outputs["notes"]) == os.path.basename(run.outputs["notes"]) == "NOTES-2.0.0.md"
    outputs["notes"] = run.outputs["notes"]
    same(run, statuses, outputs)
    assert outputs["publish"]["file"] == "NOTES-2.0.0.md"
    assert [p["code"] for p in emulator.pods if p["task"] == "lint"] == [1, 0]  # flaky: retried
    assert "lint: 5 lines, 0 problems" in emulator.logs("lint")  # what the step printed: its pod's log


def test_the_website_example_emulated_without_a_volume_equals_flow_run(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    _, run, statuses, outputs = emulate(WEBSITE, tmp_path, claim=False, inputs={"limit": 3})
    same(run, statuses, outputs)
    assert outputs["top-words"] == ["harbor", "bread", "lane"]


def test_a_step_that_fails_for_good_fails_its_task_and_argo_goes_on_as_continue_does(tmp_path):
    emulator, run, statuses, outputs = emulate(FAILING, tmp_path, on_failure="continue")
    same(run, statuses, outputs)
    assert emulator.phase("boom") == "Failed" and emulator.phase("after-boom") == "Omitted"
    assert [p["code"] for p in emulator.pods if p["task"] == "boom"] == [1, 1]  # retried once
    assert outputs["report"] == {"maybe": None, "after": None, "square": [1, 2]}


# -- the pod's command: step FLOW STEP --run-dir DIR ----------------------------------------------


def envelope(folder, step, suffix=".json"):
    with open(os.path.join(folder, "outputs", file_key(step) + suffix), encoding="utf-8") as f:
        return json.load(f)


def test_step_in_a_run_folder_reads_its_dependencies_and_writes_its_output(capsys, tmp_path):
    folder = tmp_path / "wf-1"
    code, out, err = cli(capsys, "step", EVERYTHING, "numbers", "--run-dir", folder, "-i", "n=3")
    assert code == 0 and out == ""
    assert err == (
        "microdag: step 'numbers' of flow 'argo-everything', run wf-1\n"
        "microdag: step 'numbers' succeeded in " + err.split(" succeeded in ")[1]
    )
    assert envelope(folder, "numbers") == {"status": "succeeded", "output": [1, 2, 3]}
    code, _, err = cli(capsys, "step", EVERYTHING, "flaky", "--run-dir", folder, "--retry", "1")
    assert code == 0 and "attempt 2" in err
    assert envelope(folder, "flaky") == {"status": "succeeded", "output": {"count": 3, "attempt": 2}}
    code, _, _ = cli(capsys, "step", EVERYTHING, "where", "--run-dir", folder, "--run-id", "given-id")
    assert envelope(folder, "where")["output"] == {"run_id": "given-id", "step": "where"}
    assert (folder / "work" / "where" / "numbers.txt").read_text() == "1 2 3"


def test_step_in_a_run_folder_exits_1_with_its_error_and_log(tmp_path):
    folder = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "microdag", "step", FAILING, "numbers", "--run-dir", folder],
                          capture_output=True, text=True, env=child_env())
    assert done.returncode == 0
    done = subprocess.run([sys.executable, "-m", "microdag", "step", FAILING, "boom", "--run-dir", folder],
                          capture_output=True, text=True, env=child_env())
    assert done.returncode == 1 and done.stdout == ""
    assert "Traceback (most recent call last):" in done.stderr and "_pod.py" not in done.stderr
    assert 'in boom\n    raise ValueError(f"boom on {len(numbers)} numbers")' in done.stderr
    assert done.stderr.rstrip().endswith("failed in " + done.stderr.rsplit("failed in ", 1)[1].rstrip())
    assert "microdag: step 'boom' failed in" in done.stderr and ": ValueError: boom on 2 numbers" in done.stderr
    assert envelope(folder, "boom") == {"status": "failed", "error": "ValueError: boom on 2 numbers"}


def test_a_skip_is_an_exit_0_and_the_steps_after_it_follow_their_triggers(capsys, tmp_path):
    folder = tmp_path / "run"
    code, _, err = cli(capsys, "step", EVERYTHING, "maybe", "--run-dir", folder)
    assert code == 0 and "microdag: step 'maybe' skipped in" in err and err.rstrip().endswith(": skip_it is set")
    assert envelope(folder, "maybe") == {"status": "skipped", "reason": "skip_it is set"}
    code, _, _ = cli(capsys, "step", EVERYTHING, "after", "--run-dir", folder)
    assert code == 0
    assert envelope(folder, "after") == {"status": "skipped", "reason": "its dependency 'maybe' was skipped"}
    code, _, err = cli(capsys, "step", EVERYTHING, "done", "--run-dir", folder)
    assert code == 0 and envelope(folder, "done")["output"] == {"maybe": None, "after": None, "square": None}


def test_a_dependency_the_folder_lacks_fails_the_step_saying_so(capsys, tmp_path):
    code, _, err = cli(capsys, "step", EVERYTHING, "after", "--run-dir", tmp_path)
    assert code == 1
    assert "holds no output of step 'maybe', which step 'after' needs" in err and "volume" in err


def test_an_output_too_big_for_a_parameter_or_not_json_fails_naming_the_step(capsys, tmp_path):
    flow = os.path.join(ARGO, "outputs.py")
    code, _, err = cli(capsys, "step", f"{flow}:flow", "big", "--run-dir", tmp_path, "-i", "n=300000",
                       "--max-output", str(PARAMETER_LIMIT))
    assert code == 1
    assert "the output of step 'big' takes 293.0 KiB of JSON, more than the 256 KiB an Argo parameter" in err
    assert "--volume-claim" in err
    assert envelope(tmp_path, "big")["status"] == "failed"
    code, _, err = cli(capsys, "step", f"{flow}:flow", "big", "--run-dir", tmp_path, "-i", "n=3",
                       "--max-output", str(PARAMETER_LIMIT))
    assert code == 0 and envelope(tmp_path, "big") == {"status": "succeeded", "output": "xxx"}
    assert cli(capsys, "step", f"{flow}:flow", "numbers", "--run-dir", tmp_path, "-i", "n=3")[0] == 0
    code, _, err = cli(capsys, "step", f"{flow}:flow", "a-set", "--run-dir", tmp_path)
    assert code == 1 and "the output of step 'a-set' holds a set: on Argo, steps pass their outputs as JSON" in err


def test_a_map_step_plans_runs_its_units_and_gathers(capsys, tmp_path):
    folder = tmp_path
    assert cli(capsys, "step", EVERYTHING, "numbers", "--run-dir", folder, "-i", "n=5")[0] == 0
    assert cli(capsys, "step", EVERYTHING, "pairs", "--run-dir", folder, "--plan")[0] == 0
    assert envelope(folder, "pairs", ".plan.json") == {"status": "planned", "items": 5, "units": 2}
    assert envelope(folder, "pairs", ".items.json") == [0, 1]
    for unit in (1, 0):
        code, _, err = cli(capsys, "step", EVERYTHING, "pairs", "--run-dir", folder, "--item", unit)
        assert code == 0 and f"step 'pairs' item {unit} succeeded" in err
    assert envelope(folder, "pairs", ".units/1.json") == {"status": "succeeded", "output": [[4, 5], [5, 6]], "item": 1}
    assert cli(capsys, "step", EVERYTHING, "pairs", "--run-dir", folder, "--gather")[0] == 0
    assert envelope(folder, "pairs")["output"] == [[1, 2], [2, 3], [3, 4], [4, 5], [5, 6]]
    code, _, err = cli(capsys, "step", EVERYTHING, "pairs", "--run-dir", folder, "--item", "7")
    assert code == 1 and "step 'pairs' has 2 units to run, no unit 7" in err
    # the plan of a map over something that is not a list fails as microdag says
    code, _, err = cli(capsys, "step", EVERYTHING, "shout", "--run-dir", folder, "--plan", "-i", "words=3")
    assert code == 1
    assert "TypeError: step 'shout' maps over parameter 'words', but its value is not iterable (int)" in err
    assert envelope(folder, "shout", ".items.json") == [-1]


def test_a_batch_that_returns_the_wrong_number_of_results_fails(capsys, tmp_path):
    flow = os.path.join(ARGO, "outputs.py") + ":flow"
    assert cli(capsys, "step", flow, "numbers", "--run-dir", tmp_path, "-i", "n=4")[0] == 0
    assert cli(capsys, "step", flow, "bad", "--run-dir", tmp_path, "--plan")[0] == 0
    code, _, err = cli(capsys, "step", flow, "bad", "--run-dir", tmp_path, "--item", "0")
    assert code == 1
    assert "step 'bad': the batch of items 0 to 2 returned 2 results for its 3 items" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "step needs --from-run RUN_ID (a stored run) or --run-dir DIR (a run folder)"),
        (["--from-run", "r1", "--run-dir", "d"], "step needs --from-run RUN_ID"),
        (["--from-run", "r1", "--item", "0"], "--item goes with --run-dir"),
        (["--from-run", "r1", "--plan", "--retry", "2"], "--retry, --plan go with --run-dir"),
        (["--run-dir", "d", "--store", "memory"], "--store and --codec go with --from-run"),
        (["--run-dir", "d", "--plan", "--gather"], "argument --gather: not allowed with argument --plan"),
        (["--run-dir", "d", "--item", "-2"], "expected a unit index >= 0 (or -1: none)"),
        (["--run-dir", "d", "--retry", "-1"], "expected a number >= 0"),
    ],
)
def test_step_usage_errors_exit_2(capsys, extra, message):
    code, _, err = cli(capsys, "step", EVERYTHING, "square", *extra)
    assert code == 2 and message in err


def test_an_input_not_given_exits_2_and_a_folder_that_cannot_be_written_exits_1(capsys, tmp_path):
    module = tmp_path / "needs.py"
    module.write_text("import microdag\nflow = microdag.Flow('needs')\nflow.add('a', lambda needed: needed)\n")
    code, _, err = cli(capsys, "step", module, "a", "--run-dir", tmp_path / "run")
    assert code == 2 and "step 'a' needs input 'needed', which was not given (--input NAME=VALUE)" in err
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = cli(capsys, "step", module, "a", "--run-dir", blocker / "run", "-i", "needed=1")
    assert code == 1 and f"the run folder {blocker / 'run'} cannot be written" in err


def test_a_role_that_does_not_fit_the_step_exits_2(capsys, tmp_path):
    code, _, err = cli(capsys, "step", EVERYTHING, "square", "--run-dir", tmp_path)
    assert code == 2 and "step 'square' is a map step: run it with --plan, --item N or --gather" in err
    code, _, err = cli(capsys, "step", EVERYTHING, "numbers", "--run-dir", tmp_path, "--gather")
    assert code == 2 and "step 'numbers' is not a map step" in err
    code, _, err = cli(capsys, "step", EVERYTHING, "nope", "--run-dir", tmp_path)
    assert code == 2 and "has no step named 'nope'" in err


def test_the_pods_command_is_hidden_and_argparse_checks_its_roles(capsys, tmp_path):
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and not re.search(r"^ +pod ", out, re.M) and "    step " in out
    code, _, err = cli(capsys, "nope")
    assert code == 2 and "'pod'" not in err and "'step'" in err
    code, out, _ = cli(capsys, "pod", "--help")
    assert code == 0 and "--flow SPEC" in out and "[--item N | --plan | --gather]" in out
    code, _, err = cli(capsys, "pod", f"--flow={EVERYTHING}", "--step=square", f"--run-dir={tmp_path}", "--plan",
                       "--item=0")
    assert code == 2 and "argument --item: not allowed with argument --plan" in err
    code, _, err = cli(capsys, "pod", f"--flow={EVERYTHING}", f"--run-dir={tmp_path}")
    assert code == 2 and "the following arguments are required: --step" in err
    code, _, err = cli(capsys, "pod", f"--flow={EVERYTHING}", "--step=nope", f"--run-dir={tmp_path}")
    assert code == 2 and "error: flow 'argo-everything' has no step named 'nope'" in err
