"""Flows whose text is odd where an Argo manifest carries it (tests/test_argo.py):
step names a command line could read as options, names too long for a file
name once encoded, braces, and text Argo would read as its template syntax."""

import microdag

from argosteps import numbers, square


def total(xs):
    return sum(xs)


def echo(x, label="{x} }}"):
    return [x, label]


LONG = "step-" + "x" * 295  # 300 ASCII characters
CJK = "日本語の長いステップの名前" * 2 + "でもまだ続きます"  # 30 characters, 270 bytes percent-encoded

odd = microdag.Flow("odd-names")
odd.add("-h", numbers)
odd.add("--plan", total, inputs={"xs": "-h"})
odd.add(LONG, square, map="x", inputs={"x": "-h"})
odd.add(CJK, total, inputs={"xs": LONG})
odd.add("a{b}", echo, inputs={"x": CJK})
odd.add("}}x", total, inputs={"xs": "-h"})
odd.add("-", lambda plan, braces: [plan, braces], inputs={"plan": "--plan", "braces": "a{b}"})

templated = microdag.Flow("templated")
templated.add("{{workflow.uid}}", lambda: 1)
templated.add("a{{=sprig.trim('x')}}", lambda: 2)
templated.add("b", lambda where="{{workflow.name}}": where)
