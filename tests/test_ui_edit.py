"""The UI's flow-file editor (microdag.ui._edit): a save changes only what the
edit changed, and whatever it returns parses to exactly the new data.

Examples on the project's own flow files and on hostile ones (odd step names,
strings holding comment and quote characters, multi-line values, CRLF, no
final newline, shapes only a full rewrite can handle), then properties: random
flow files, written with random quoting, comments and multi-line values, and
random edits of them.
"""

import copy
import datetime
import difflib
import json
import math
import pathlib
import re
import tomllib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from microdag.ui._edit import dump_toml, dump_toml_value, edit_text

ROOT = pathlib.Path(__file__).resolve().parent.parent
WEBSITE = (ROOT / "examples/website/website.toml").read_text(encoding="utf-8")
RELEASE = (ROOT / "examples/release/flow.toml").read_text(encoding="utf-8")
EXAMPLES = sorted(ROOT.glob("examples/**/*.toml")) + sorted(ROOT.glob("tests/argo/*.toml"))

ODD_NAMES = ["with space", 'quo"te', "ünïcødé ✓", "a]b", "a#b", "a=b", "a.b", "", "tab\there",
             "back\\slash", "it's", "[x]", "new\nline", '"""', "#", "=", "steps.x", "\x7f\x00"]


def same(a, b):
    """Equal as data, types included (1 is not 1.0 nor True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return a == b


def save(text, new, kind="toml"):
    out, rewritten = edit_text(text, kind, new)
    assert same(tomllib.loads(out) if kind == "toml" else json.loads(out), new)
    return out, rewritten


def edited(text, change):
    """Save `text` after `change(data)`; the file is never rewritten whole."""
    new = copy.deepcopy(tomllib.loads(text))
    change(new)
    out, rewritten = save(text, new)
    assert not rewritten
    return out


def lines(text):
    """The lines of `text`, each with its line break (only \\n ends a line in TOML)."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def hunks(a, b):
    """The (removed lines, added lines) of each change from a to b."""
    al, bl = lines(a), lines(b)
    ops = difflib.SequenceMatcher(None, al, bl, autojunk=False).get_opcodes()
    return [(al[i1:i2], bl[j1:j2]) for tag, i1, i2, j1, j2 in ops if tag != "equal"]


# ---------------------------------------------------------------- the docs' example


def test_docs_example_is_the_website_file():
    docs = (ROOT / "docs/flow-file.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", docs, re.S).group(1)
    assert block == WEBSITE


def test_change_one_option_is_one_line():
    out = edited(WEBSITE, lambda d: d["steps"]["count"].update(retries=3))
    assert hunks(WEBSITE, out) == [(["retries = 2\n"], ["retries = 3\n"])]


def test_changed_value_keeps_its_key_spelling_and_comment():
    out = edited(WEBSITE, lambda d: d["steps"]["top-words"].update(call="websteps:other"))
    assert hunks(WEBSITE, out) == [(
        ['call = "websteps:top_words"              # top_words(text, limit)\n'],
        ['call = "websteps:other"              # top_words(text, limit)\n'])]
    out = edited(WEBSITE, lambda d: d["steps"]["top-words"]["inputs"].update(text="count"))
    assert hunks(WEBSITE, out) == [(
        ['inputs = { text = "fetch" }              # parameter `text` gets the output of `fetch`\n'],
        ['inputs = { text = "count" }              # parameter `text` gets the output of `fetch`\n'])]
    out = edited(WEBSITE, lambda d: d["flow"].update(name="site"))
    assert hunks(WEBSITE, out) == [(['name = "website"                         # required\n'],
                                     ['name = "site"                         # required\n'])]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_key_of_the_examples_changes_alone(path):
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    tables = [("flow",), ("inputs",)] + [("steps", name) for name in data["steps"]]
    for table in tables:
        for key in list(_get(data, table)):
            new = copy.deepcopy(data)
            _get(new, table)[key] = "changed # not a comment \"\"\" '"
            out, rewritten = save(text, new)
            assert not rewritten
            [(removed, added)] = hunks(text, out)
            assert len(added) == 1 and re.match(r"\s*" + re.escape(key) + r"\s*=", removed[0])
            assert added[0].startswith(removed[0].split("=")[0] + "= ")
            # the comment after the value stays (on a multi-line value's last line)
            comment = re.search(r"\s#[^\"']*$", removed[-1])
            if comment:
                assert added[0].endswith(comment.group())


def _get(data, path):
    for p in path:
        data = data[p]
    return data


def test_comment_stays_on_changed_multiline_value():
    text = '[steps.a]\ncommand = [\n  "x",  # first\n  "y",\n]   # the argv\nretries = 1\n'
    out = edited(text, lambda d: d["steps"]["a"].update(command=["z"]))
    assert out == '[steps.a]\ncommand = ["z"]   # the argv\nretries = 1\n'


# ---------------------------------------------------------------- keys added and removed


def test_add_a_key_after_the_tables_last_key():
    out = edited(WEBSITE, lambda d: d["steps"]["fetch"].update(retries=1, cache=True))
    assert hunks(WEBSITE, out) == [([], ["retries = 1\n", "cache = true\n"])]
    assert out.index("cache = true") < out.index("[steps.count]")


def test_added_key_keeps_the_tables_indent():
    text = "[flow]\n  name = 'x'\n\n[steps.a]\n    call = 'm:f'\n"
    out = edited(text, lambda d: d["steps"]["a"].update(retries=2))
    assert out == "[flow]\n  name = 'x'\n\n[steps.a]\n    call = 'm:f'\n    retries = 2\n"


def test_remove_a_key_and_a_multiline_array():
    out = edited(RELEASE, lambda d: d["steps"]["changes"].pop("command"))
    [(removed, added)] = hunks(RELEASE, out)
    assert added == [] and removed[0] == "command = [\n" and removed[-1] == "]\n" and len(removed) == 4
    out = edited(WEBSITE, lambda d: d["inputs"].pop("limit"))
    assert hunks(WEBSITE, out) == [(["limit = 10\n"], [])]


def test_add_a_key_to_a_table_without_keys():
    out = edited("[flow]\nname = 'x'\n\n[steps.a]\n# nothing yet\n\n[steps.b]\n",
                 lambda d: d["steps"]["a"].update(call="m:f"))
    assert out == "[flow]\nname = 'x'\n\n[steps.a]\ncall = \"m:f\"\n# nothing yet\n\n[steps.b]\n"


# ---------------------------------------------------------------- steps added, removed, renamed


def test_add_a_step_is_appended():
    out = edited(WEBSITE, lambda d: d["steps"].update({"new one": {"call": "m:f", "depends_on": ["fetch"]}}))
    assert out == WEBSITE + '\n[steps."new one"]\ncall = "m:f"\ndepends_on = ["fetch"]\n'


def test_remove_a_step_keeps_the_next_steps_comments():
    out = edited(RELEASE, lambda d: d["steps"].pop("notes"))
    assert out == RELEASE.replace("# A Python function: writes the release notes into its working directory.\n"
                                  '[steps.notes]\ncall = "tasks:write_notes"\n\n', "")
    assert "# A program reading the file the previous step wrote; plain text output.\n[steps.checksum]" in out


def test_remove_the_last_steps():
    out = edited(RELEASE, lambda d: d["steps"].pop("publish"))
    assert out == RELEASE[:RELEASE.index("\n# Fan in")]
    out = edited(RELEASE, lambda d: [d["steps"].pop(k) for k in ("size", "publish")])
    assert out == RELEASE[:RELEASE.index("\n# A number")]
    out = edited(WEBSITE, lambda d: [d["steps"].pop(k) for k in ("fetch", "count")])
    assert out == WEBSITE.replace(WEBSITE[WEBSITE.index("[steps.fetch]"):WEBSITE.index("[steps.top-words]")], "")


def test_rename_a_step_keeps_its_place_and_comments():
    def rename(d):
        d["steps"] = {("download" if k == "fetch" else k): v for k, v in d["steps"].items()}
        d["steps"]["count"]["depends_on"] = ["download"]
        d["steps"]["top-words"]["inputs"]["text"] = "download"
    out = edited(WEBSITE, rename)
    assert [h for h in hunks(WEBSITE, out)] == [
        (["[steps.fetch]\n"], ["[steps.download]\n"]),
        (['depends_on = ["fetch"]\n'], ['depends_on = ["download"]\n']),
        (['inputs = { text = "fetch" }              # parameter `text` gets the output of `fetch`\n'],
         ['inputs = { text = "download" }              # parameter `text` gets the output of `fetch`\n'])]
    out = edited(WEBSITE, lambda d: d.update(steps={("top words!" if k == "top-words" else k): v
                                                    for k, v in d["steps"].items()}))
    assert hunks(WEBSITE, out) == [(
        ["[steps.top-words]                        # a step name need not be an identifier\n"],
        ['[steps."top words!"]                        # a step name need not be an identifier\n'])]


def test_a_step_replaced_by_another_is_not_a_rename():
    def replace(d):
        del d["steps"]["top-words"]
        d["steps"]["other"] = {"command": ["true"]}
    out = edited(WEBSITE, replace)
    assert "top_words" not in out and out.endswith('\n[steps.other]\ncommand = ["true"]\n')


def test_missing_inputs_table_goes_before_the_steps():
    text = "# my flow\n[flow]\nname = 'x'\n\n# the first step\n[steps.a]\ncall = 'm:f'\n"
    out = edited(text, lambda d: d.update(inputs={"n": 1}))
    assert out == "# my flow\n[flow]\nname = 'x'\n\n[inputs]\nn = 1\n\n# the first step\n[steps.a]\ncall = 'm:f'\n"
    out = edited("[steps.a]\ncall = 'm:f'\n", lambda d: d.update(flow={"name": "x"}))
    assert out == '[flow]\nname = "x"\n\n[steps.a]\ncall = \'m:f\'\n'


def test_tables_and_root_keys_added_and_removed():
    out = edited(WEBSITE, lambda d: d.pop("inputs"))
    assert "[inputs]" not in out and "url =" not in out and "[steps.fetch]" in out
    out = edited(WEBSITE, lambda d: d.update({"$schema": "flowfile.schema.json"}))
    assert hunks(WEBSITE, out) == [([], ['"$schema" = "flowfile.schema.json"\n', "\n"])]
    assert out.index('"$schema"') < out.index("[flow]")
    text = '"$schema" = "a.json"  # for editors\n[flow]\nname = "x"\n'
    assert edited(text, lambda d: d.update({"$schema": "b.json"})) == \
        '"$schema" = "b.json"  # for editors\n[flow]\nname = "x"\n'
    assert edited(text, lambda d: d.pop("$schema")) == '[flow]\nname = "x"\n'
    assert edited(text, lambda d: d.update(extra=1)) == \
        '"$schema" = "a.json"  # for editors\nextra = 1\n[flow]\nname = "x"\n'


def test_no_change_is_the_same_text():
    for path in EXAMPLES:
        text = path.read_text(encoding="utf-8")
        assert edit_text(text, "toml", tomllib.loads(text)) == (text, False)


def test_empty_file():
    new = {"flow": {"name": "x"}, "steps": {"a": {"call": "m:f"}}}
    out, rewritten = save("", new)
    assert out == '[flow]\nname = "x"\n\n[steps.a]\ncall = "m:f"\n' and not rewritten


# ---------------------------------------------------------------- hostile names and values


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_step_names(name):
    text = dump_toml({"flow": {"name": "x"}, "steps": {"a": {"call": "m:f"}, name: {"call": "m:g"}}})
    out = edited(text, lambda d: d["steps"][name].update(retries=1))
    assert hunks(text, out) == [([], ["retries = 1\n"])]
    out = edited(text, lambda d: d["steps"].pop(name))
    assert out == '[flow]\nname = "x"\n\n[steps.a]\ncall = "m:f"\n'
    out = edited(text, lambda d: d.update(steps={name: {"call": "m:f"}, "a": {"call": "m:g"}}))
    assert len(hunks(text, out)) == 2
    out = edited(text, lambda d: d["steps"]["a"].update(inputs={name: "a", "x": name}))
    assert hunks(text, out)[0][1][0].startswith("inputs = { ")


def test_hand_written_quoted_headers_and_keys():
    text = ("[ steps . 'lit#eral]' ]   # odd\ncall = 'm:f'\n\n"
            "[\"steps\".\"a \\\" b\"]\n\"call\" = \"m:g\"\n\n"
            "[steps.\"\\u00e9t\u00e9\"]\n'retries' = 1 # one\n")
    data = tomllib.loads(text)
    assert set(data["steps"]) == {"lit#eral]", 'a " b', "été"}
    out = edited(text, lambda d: d["steps"]["a \" b"].update(call="m:h"))
    assert hunks(text, out) == [(['"call" = "m:g"\n'], ['"call" = "m:h"\n'])]
    out = edited(text, lambda d: d["steps"]["été"].update(retries=2))
    assert hunks(text, out) == [(["'retries' = 1 # one\n"], ["'retries' = 2 # one\n"])]
    out = edited(text, lambda d: d["steps"].pop("lit#eral]"))
    assert out == text[text.index('["steps"'):]


def test_strings_holding_comment_and_quote_characters():
    text = ('[flow]\nname = "a # b" # c\n\n[inputs]\n'
            'doc = """\nline one # not a comment\n[steps.fake]\nx = \'\'\' """\n'
            "raw = '''\n\"\"\" ] } # '''  # after\n"
            'esc = "\\" # \\\\"\n'
            'arr = [ "]", \'#\', [ "[", { a = "}" } ] ] # c\n'
            "last = 1\n\n[steps.a]\ncall = 'm:f'\n")
    data = tomllib.loads(text)
    assert list(data["inputs"]) == ["doc", "raw", "esc", "arr", "last"]
    for key, value in [("last", 2), ("esc", "e"), ("arr", []), ("raw", "r"), ("doc", "d\n#")]:
        out = edited(text, lambda d: d["inputs"].update({key: value}))
        [(removed, added)] = hunks(text, out)
        assert len(added) == 1 and removed[0].startswith(key)
    out = edited(text, lambda d: d["inputs"].pop("doc"))
    assert out == text.replace('doc = """\nline one # not a comment\n[steps.fake]\nx = \'\'\' """\n', "")
    out = edited(text, lambda d: d["inputs"].update(new='"""\n# x\'\'\''))
    assert hunks(text, out) == [([], ['new = "\\"\\"\\"\\n# x\'\'\'"\n'])]


TRICKY = r'''# top
"$schema" = 'x' # s
[flow]
name = """a""""" # a run of quotes closes it
d1 = 1979-05-27 07:32:00Z  # a date with a space
d2 = 1979-05-27T00:32:00.999999-07:00
lt = 07:32:00
hx = 0xDEAD_BEEF
fl = +inf
e = 1_000.5e-3
[inputs]
ml = """\
   line \
   continued #"""
lit = QQQaQQQQQ
arr = [
  [1, 2], # c ]
  [ "]" ,
    '[' ], # "
  { a = [1,
     2] },
]
emptyarr = [
]
it = { a.b = 1, "c d" = { e = '}' } }
[steps."x.y"]
call = "m:f"
arr2 = [ # a comment right after the bracket
  1
  , 2 ]
[steps.'z']
[steps.w]
v = 1
'''.replace("Q", "'")


def test_every_key_of_a_tricky_file():
    data = tomllib.loads(TRICKY)
    assert data["flow"]["name"] == 'a""' and data["inputs"]["lit"] == "a''"
    assert data["inputs"]["ml"] == "line continued #"
    tables = [("flow",), ("inputs",)] + [("steps", name) for name in data["steps"]]
    for table in tables:
        for key in _get(data, table):
            for change in [lambda t: t.update({key: ["new", 1]}), lambda t: t.pop(key)]:
                new = copy.deepcopy(data)
                change(_get(new, table))
                out, rewritten = save(TRICKY, new)
                assert not rewritten and len(hunks(TRICKY, out)) == 1
        out = edited(TRICKY, lambda d: _get(d, table).update(added=1))
        assert hunks(TRICKY, out) == [([], ["added = 1\n"])]
    for name in data["steps"]:
        edited(TRICKY, lambda d: d["steps"].pop(name))


def test_values_of_every_type_round_trip():

    values = [True, False, 0, -(2**63), 2**63 - 1, 1.5, -0.0, 1e300, 5e-324, math.inf, -math.inf, math.nan,
              "", "tab\t nul\x00 del\x7f esc\x1b \u2028 é ✓ \U0001f600", [], [1, "a", [True]], {},
              {"a b": {"c": [1.0]}, "": 1}, datetime.date(2024, 1, 2),
              datetime.datetime(2024, 1, 2, 3, 4, 5, 6), datetime.time(1, 2, 3)]
    text = WEBSITE
    for v in values:
        text, rewritten = save(text, {**tomllib.loads(text), "inputs": {"v": v, "limit": 10}})
        assert not rewritten
    assert dump_toml_value(math.nan) == "nan" and dump_toml_value(-math.inf) == "-inf"


def test_types_are_kept():
    for old, new in [(1, 1.0), (1, True), (0.0, -0.0), ("1", 1), ([1], [1.0])]:
        text = dump_toml({"inputs": {"x": old}})
        out, _ = save(text, {"inputs": {"x": new}})
        assert same(tomllib.loads(out)["inputs"]["x"], new)


# ---------------------------------------------------------------- line endings


def test_crlf_files_stay_crlf():
    text = WEBSITE.replace("\n", "\r\n")
    def change(d):
        d["steps"]["count"]["retries"] = 5
        d["steps"]["fetch"]["cache"] = True
        del d["inputs"]["limit"]
        d["steps"]["x y"] = {"call": "m:f"}
    out = edited(text, change)
    assert "\n" not in out.replace("\r\n", "")
    assert len(hunks(text, out)) == 4 and out.endswith('\r\n[steps."x y"]\r\ncall = "m:f"\r\n')


def test_no_final_newline_is_kept():
    text = WEBSITE.rstrip("\n")
    for change in [lambda d: d["steps"]["top-words"].update(call="m:x"),
                   lambda d: d["steps"]["top-words"].update(cache=True),
                   lambda d: d["steps"]["top-words"].pop("inputs"),
                   lambda d: d["steps"].update(extra={"call": "m:f"}),
                   lambda d: d["steps"].pop("top-words")]:
        out = edited(text, change)
        assert not out.endswith("\n")
        assert len(hunks(text + "\n", out + "\n")) == 1
    out = edited(text.replace("\n", "\r\n"), lambda d: d["steps"].update(extra={"call": "m:f"}))
    assert out.endswith('\r\n[steps.extra]\r\ncall = "m:f"')


# ---------------------------------------------------------------- full rewrites


@pytest.mark.parametrize("text", [
    'steps.a.call = "m:f"\n[flow]\nname = "x"\n',
    'steps = { a = { call = "m:f" } }\n[flow]\nname = "x"\n',
    '[flow]\nname = "x"\n[steps]\na.call = "m:f"\n',
    '[flow]\nname = "x"\n[steps.a]\ncall = "m:f"\n[steps.a.inputs]\nx = "y"\n',
    '[flow]\nname = "x"\n[steps.a]\ninputs.x = "y"\n',
    '[flow]\nname = "x"\n[[extra]]\nn = 1\n[steps.a]\ncall = "m:f"\n',
    'flow = { name = "x" }\n[steps.a]\ncall = "m:f"\n',
    '[flow.sub]\nn = 1\n[steps.a]\ncall = "m:f"\n',
])
def test_shapes_it_cannot_edit_are_rewritten_whole(text):
    new = copy.deepcopy(tomllib.loads(text))
    new["steps"]["a"]["retries"] = 2
    out, rewritten = save(text, new)
    assert rewritten and out == dump_toml(new)


def test_a_full_rewrite_keeps_line_endings():
    text = 'steps.a.call = "m:f"\r\n[flow]\r\nname = "x"'
    out, rewritten = save(text, {"flow": {"name": "y"}, "steps": {"a": {"call": "m:f"}}})
    assert rewritten and out == '[flow]\r\nname = "y"\r\n\r\n[steps.a]\r\ncall = "m:f"'


def test_the_safety_net(monkeypatch):
    from microdag.ui import _edit
    text = '[flow]\nname = "x"\n[steps.a]\ncall = "m:f"\n'
    new = {"flow": {"name": "y"}, "steps": {"a": {"call": "m:f"}}}
    # an in-place edit that would not read back as the new data is not returned
    monkeypatch.setattr(_edit._TomlEdit, "result", lambda self, nl: self.s)
    out, rewritten = save(text, new)
    assert rewritten
    # nor is a full rewrite that would not
    monkeypatch.setattr(_edit, "dump_toml", lambda data: '[flow]\nname = "z"\n')
    with pytest.raises(ValueError, match="cannot be written as TOML that reads back the same"):
        edit_text(text, "toml", new)


def test_data_changing_shape_is_rewritten_whole():
    text = dump_toml({"flow": {"name": "x"}, "steps": {"a": {"call": "m:f"}}})
    for new in [{"flow": "x", "steps": {"a": {}}}, {"flow": {"name": "x"}, "steps": {"a": "m:f"}},
                {"flow": {"name": "x"}, "steps": {}}, {"flow": {"name": "x"}, "steps": []}]:
        out, rewritten = save(text, new)
        assert rewritten


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("kind", ["toml", "json"])
@pytest.mark.parametrize("new, words", [
    ({"steps": {"a": {"call": "m:\ud800"}}}, ["steps.a.call", "surrogate", "U+D800"]),
    ({"steps": {"a\udfff": {"call": "m:f"}}}, ["surrogate", "U+DFFF"]),
    ({"steps": {"a": {"inputs": {"\udc80": "b"}}}}, ["steps.a.inputs", "surrogate"]),
    ({"steps": {"a": {"x": {1: "b"}}}}, ["steps.a.x", "key 1 is not a string"]),
    ({"steps": {"a": {"x": {1, 2}}}}, ["steps.a.x", "set"]),
    ({"steps": {"a": {"x": b"bytes"}}}, ["steps.a.x", "bytes"]),
    ({"steps": {"a": {"x": [object()]}}}, ["steps.a.x[0]", "object"]),
    ({"inputs": {"x": (1, 2)}}, ["inputs.x", "tuple"]),
])
def test_values_that_cannot_be_written(kind, new, words):
    with pytest.raises(ValueError) as e:
        edit_text(WEBSITE if kind == "toml" else "{}", kind, new)
    for w in words:
        assert w in str(e.value)


def test_none_nesting_and_nan_are_refused_where_they_have_no_form():
    with pytest.raises(ValueError, match=r"inputs\.url: None .*leave the key out"):
        edit_text(WEBSITE, "toml", {**tomllib.loads(WEBSITE), "inputs": {"url": None}})
    deep: list = []
    for _ in range(100):
        deep = [deep]
    for kind in ("toml", "json"):
        with pytest.raises(ValueError, match="nested more than 64"):
            edit_text("", kind, {"inputs": {"x": deep}})
    with pytest.raises(ValueError, match=r"inputs\.t: a time of day with a time zone"):
        edit_text("", "toml", {"inputs": {"t": datetime.time(1, tzinfo=datetime.timezone.utc)}})
    with pytest.raises(ValueError, match=r"inputs\.x: nan has no JSON form"):
        edit_text("{}", "json", {"inputs": {"x": math.nan}})
    assert json.loads(edit_text("{}", "json", {"inputs": {"x": None}})[0]) == {"inputs": {"x": None}}


def test_broken_files_and_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="not valid TOML"):
        edit_text("[flow\n", "toml", {})
    with pytest.raises(ValueError, match="not valid JSON"):
        edit_text("{", "json", {})
    with pytest.raises(ValueError, match="unknown flow file kind 'yaml'"):
        edit_text("", "yaml", {})
    with pytest.raises(ValueError, match="not list"):
        edit_text("", "toml", [])  # type: ignore[arg-type]


# ---------------------------------------------------------------- JSON


def test_json_in_the_dumped_layout_is_a_one_line_diff():
    data = tomllib.loads(WEBSITE)
    for layout in [{"indent": 2}, {"indent": 4}, {"indent": "\t"}, {}, {"separators": (",", ":")},
                   {"indent": 2, "ensure_ascii": True}]:
        for end in ["\n", "", "\r\n"]:
            text = json.dumps({"$schema": "x.json", **data, "é": "✓"}, **layout) + end
            if end == "\r\n":
                text = text.replace("\n", "\r\n")
            new = copy.deepcopy(json.loads(text))
            new["steps"]["count"]["retries"] = 3
            out, rewritten = save(text, new, "json")
            assert not rewritten and out.endswith(end)
            assert len(hunks(text, out)) == 1 and len(hunks(text, out)[0][0]) == 1
            assert edit_text(text, "json", json.loads(text)) == (text, False)


def test_hand_formatted_json_is_rewritten_and_says_so():
    text = (ROOT / "examples/website/website.json").read_text(encoding="utf-8")
    new = json.loads(text)
    new["steps"]["count"]["retries"] = 3
    out, rewritten = save(text, new, "json")
    assert rewritten and out == json.dumps(new, indent=2, ensure_ascii=False) + "\n"
    assert edit_text(text, "json", json.loads(text)) == (text, False)


def test_json_empty_file():
    out, rewritten = save("", {"flow": {"name": "x"}}, "json")
    assert out == '{"flow": {"name": "x"}}\n'


# ---------------------------------------------------------------- properties

names = st.one_of(st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True),
                  st.text(st.characters(blacklist_categories=("Cs",)), max_size=6),
                  st.sampled_from(ODD_NAMES))
scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(),
                    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
                    st.sampled_from(['a # b', '"""', "'''", "x\ny", "]", "}"]))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(names, c, max_size=3),
                      max_leaves=5)


def flow_docs(values: "st.SearchStrategy[Any]") -> "st.SearchStrategy[dict[str, Any]]":
    """Flow documents whose inputs and options are drawn from ``values``."""
    return st.fixed_dictionaries({
        "flow": st.fixed_dictionaries({"name": st.text(max_size=5)}),
        "inputs": st.dictionaries(names, values, max_size=3),
        "steps": st.dictionaries(names, st.dictionaries(names, values, max_size=3), min_size=1, max_size=4),
    }, optional={"$schema": st.just("flowfile.schema.json")})


docs = flow_docs(values)


def _spaces(draw):
    return draw(st.sampled_from(["", " ", "  ", "\t"]))


def render(draw, doc):
    """`doc` as TOML written by hand: random quoting, spacing, comments, blank
    lines, multi-line arrays and strings. Returns the text and `where`: for
    each table, its header's line index; for each (table path, key), its first
    and last line index, its text up to the value and its comment."""
    lines, where = [], {}

    def key(k):
        choices = [dump_toml_value(k)]
        if re.fullmatch(r"[A-Za-z0-9_-]+", k):
            choices.append(k)
        if all(" " <= c != "'" and c != "\x7f" for c in k):
            choices.append(f"'{k}'")
        return draw(st.sampled_from(choices))

    def value(v, top):
        text = dump_toml_value(v)
        if isinstance(v, str):
            forms = [[text], ['"""' + text[1:-1] + '"""'], ['"""', text[1:-1] + '"""']]
            if all(" " <= c != "'" and c != "\x7f" or c == "\t" for c in v):
                forms += [[f"'{v}'"], ["'''", v + "'''"]]
            return draw(st.sampled_from(forms))
        if isinstance(v, list) and v and top and draw(st.booleans()):
            items = [value(x, False) for x in v]
            out = ["["]
            for item in items:
                out += ["    " + item[0], *item[1:]]
                out[-1] += "," + draw(st.sampled_from(["", "  # an item, ] # \"", " #"]))
            return out + ["]"]
        return [text]

    def trivia():
        for _ in range(draw(st.integers(0, 2))):
            lines.append(draw(st.sampled_from(["", "# a comment [steps.x] = 1", "   # indented", "#"])))

    def entries(path, table):
        for k, v in table.items():
            trivia()
            first, text = len(lines), value(v, True)
            head = _spaces(draw) + key(k) + _spaces(draw) + "= "
            comment = draw(st.sampled_from(["", "  # why", " #", "\t# x = 1 ]"]))
            lines.extend([head + text[0], *text[1:]])
            lines[-1] += comment
            where[path + (k,)] = (first, len(lines) - 1, head, comment)

    trivia()
    if "$schema" in doc:
        entries((), {"$schema": doc["$schema"]})
    for path, table in [(("flow",), doc["flow"]), (("inputs",), doc["inputs"])] + \
            [(("steps", n), o) for n, o in doc["steps"].items()]:
        trivia()
        s = _spaces(draw)
        lines.append("[" + s + (s + "." + s).join(key(p) for p in path) + s + "]" +
                     draw(st.sampled_from(["", "  # table"])))
        where[path] = len(lines) - 1
        entries(path, table)
    trivia()
    nl = draw(st.sampled_from(["\n", "\r\n"]))
    end = draw(st.sampled_from([nl, ""]))
    return nl.join(lines) + end, where


def mutate(draw, doc):
    new = copy.deepcopy(doc)
    for op in draw(st.lists(st.sampled_from(
            ["change", "add", "remove", "add_step", "remove_step", "rename", "inputs", "schema"]),
            min_size=1, max_size=4)):
        tables = [new["flow"]] + ([new["inputs"]] if "inputs" in new else []) + list(new["steps"].values())
        table = draw(st.sampled_from(tables))
        if op == "change" and table:
            table[draw(st.sampled_from(sorted(table)))] = draw(values)
        elif op == "add":
            table[draw(names)] = draw(values)
        elif op == "remove" and table:
            del table[draw(st.sampled_from(sorted(table)))]
        elif op == "add_step":
            new["steps"][draw(names)] = draw(st.dictionaries(names, values, max_size=3))
        elif op == "remove_step" and new["steps"]:
            del new["steps"][draw(st.sampled_from(sorted(new["steps"])))]
        elif op == "rename" and new["steps"]:
            was, now = draw(st.sampled_from(sorted(new["steps"]))), draw(names)
            new["steps"] = {(now if k == was else k): v for k, v in new["steps"].items()}
        elif op == "inputs":
            new.pop("inputs") if "inputs" in new else new.update(inputs={"x": 1})
        elif op == "schema":
            new.pop("$schema") if "$schema" in new else new.update({"$schema": "s.json"})
    return new


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_edit_of_any_file_parses_to_the_new_data(data):
    doc = data.draw(docs)
    text, _ = render(data.draw, doc)
    assert same(tomllib.loads(text), doc)
    new = mutate(data.draw, doc)
    out, rewritten = save(text, new)
    # only a flow without steps (no [steps] header left to hold them) needs a full rewrite
    assert not rewritten or not new["steps"]
    assert out.endswith("\n") == text.endswith("\n")
    if "\r\n" in text:
        assert "\n" not in out.replace("\r\n", "")
    else:
        assert "\r\n" not in out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_one_key_edit_touches_only_that_key(data):
    doc = data.draw(docs)
    text, where = render(data.draw, doc)
    keys = [p for p in where if isinstance(where[p], tuple)]
    path = data.draw(st.sampled_from(keys))
    new = copy.deepcopy(doc)
    table = _get(new, path[:-1])
    op = data.draw(st.sampled_from(["change", "remove", "add"]))
    some = values.filter(lambda v: path[:-1] or not isinstance(v, dict))  # a root key holds no table
    if op == "change":
        table[path[-1]] = data.draw(some.filter(lambda v: not same(v, table[path[-1]])))
    elif op == "remove":
        del table[path[-1]]
    else:
        added = data.draw(names.filter(lambda k: k not in table))
        table[added] = data.draw(some)
    out, rewritten = save(text, new)
    assert not rewritten and out.endswith("\n") == text.endswith("\n")
    nl = "\r\n" if "\r\n" in text else "\n"
    before, after = lines(text.removesuffix(nl) + nl), lines(out.removesuffix(nl) + nl)
    first, last, head, comment = where[path]
    if op == "change":  # its lines became one, with its key and comment, every other line is the same
        assert after[:first] == before[:first] and after[first + 1:] == before[last + 1:]
        assert after[first].startswith(head) and after[first].rstrip("\r\n").endswith(comment)
    elif op == "remove":
        expected = before[:first] + before[last + 1:]
        if not text.endswith("\n"):  # the file still ends without a line break: no blank line before it
            while expected and not expected[-1].strip():
                expected.pop()
        assert after == expected
    else:  # one line after the table's last key (or its header)
        at = 1 + max([where[p][1] for p in keys if p[:-1] == path[:-1]])
        assert len(after) == len(before) + 1 and after[:at] + after[at + 1:] == before
        assert same(tomllib.loads(after[at]), {added: table[added]})


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(st.characters(blacklist_categories=("Cs",)), max_size=8))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(names, c, max_size=3),
                           max_leaves=5)
json_docs = flow_docs(json_values)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_json_edits(data):
    doc = data.draw(json_docs)
    indent = data.draw(st.sampled_from([None, 2, 4, "\t"]))
    nl = data.draw(st.sampled_from(["\n", "\r\n"]))
    text = (json.dumps(doc, indent=indent, ensure_ascii=data.draw(st.booleans())) +
            data.draw(st.sampled_from(["", "\n"]))).replace("\n", nl)
    new = copy.deepcopy(doc)
    scalar = [(s, k) for s, o in new["steps"].items() for k, v in o.items() if not isinstance(v, (list, dict))]
    if scalar:  # a scalar changed to another: one line (the whole line of a one-line file)
        s, k = data.draw(st.sampled_from(scalar))
        new["steps"][s][k] = data.draw(json_scalars.filter(lambda v: not same(v, new["steps"][s][k])))
        out, rewritten = save(text, new, "json")
        assert not rewritten and out.endswith(nl) == text.endswith(nl)
        assert [(len(r), len(a)) for r, a in hunks(text, out)] == [(1, 1)]
    new["steps"][data.draw(names)] = data.draw(st.dictionaries(names, json_values, max_size=2))
    save(text, new, "json")
