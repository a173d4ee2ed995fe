"""What a flow file's keys may hold: its rules, in JSON Schema keywords.

``_flowfile`` checks a parsed flow file against these (with
``_schema.problem``, the package's one schema checker); the shipped
``flowfile.schema.json`` says the same, and a test keeps them equal.
"""

from ._steps import MAX_SECONDS, TRIGGERS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DECLARATION", "FLOW_OPTIONS", "JSON_TYPES", "KINDS", "SECONDS", "STEP_OPTIONS", "TOP_KEYS", "WORDS"]

#: Keys of the document's top level (``$schema`` lets editors find the schema).
TOP_KEYS = ("$schema", "flow", "inputs", "pools", "rates", "steps")
#: Keys of ``[flow]``.
FLOW_OPTIONS: "dict[str, dict[str, Any]]" = {"name": {"type": "string", "minLength": 1}}
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
#: Every key a step accepts, with its rule in JSON Schema keywords.  The
#: shipped schema's step properties say the same (a test keeps them equal).
STEP_OPTIONS: "dict[str, dict[str, Any]]" = {
    "call": {"type": "string", "pattern": rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$"},
    "python": {"type": "string", "minLength": 1},
    "command": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    "output": {"enum": ["text", "json", "lines"]},
    "depends_on": {"type": "array", "items": {"type": "string"}},
    "inputs": {"type": "object", "additionalProperties": {"type": "string"}},
    "retries": {"type": "integer", "minimum": 0},
    "retry_delay": {"type": "number", "minimum": 0, "maximum": MAX_SECONDS},
    "retry_backoff": {"type": "number", "minimum": 1},
    "retry_max_delay": {"type": "number", "minimum": 0, "maximum": MAX_SECONDS},
    "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_SECONDS},
    "priority": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    "trigger": {"enum": list(TRIGGERS)},
    "map": {"type": "string", "minLength": 1},
    "batch_size": {"type": "integer", "minimum": 1},
    "key": {"type": "string", "minLength": 1},
    "cache": {"type": "boolean"},
    "cache_ttl": {"type": "number", "exclusiveMinimum": 0},
    "uses": {"anyOf": [{"type": "string", "minLength": 1},
                       {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}}]},
}
#: The keys of a typed input's declaration, and the types it may name.
DECLARATION = {"type", "default", "description", "enum", "allow_inf_nan"}
JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")

#: How a rule reads in a flow file's terms where ``_schema.describe``'s words
#: (written for Python values) would not say it that way.
WORDS = {
    "call": 'a string "module:function" (e.g. "steps:fetch")',
    "command": "a non-empty list of strings",
    "python": "a string of Python code defining the step's function",
    "depends_on": "a list of strings",
    "inputs": 'a table of parameter = "step name"',
    "uses": 'a pool or rate name, or a table of name = units (an integer >= 1)',
}


#: The keys that say what a step runs: exactly one of them.
KINDS = ("call", "python", "command")

#: The options that are seconds (their rule's words end with " s").
SECONDS = ("timeout", "retry_delay", "retry_max_delay", "cache_ttl")
