"""The parts of a converter (``_typed``): one node per kind of annotation.

A node converts one part of a value: ``dump`` and ``load`` raise :class:`Bad`,
to which each container on the way out adds its step of the path (so a value
that converts pays for no path); ``collect`` appends every problem as
``(path, problem)``; ``accepts`` says whether a value is of the node's type
(to pick a union's member); a ``plain`` node dumps a value as it is (its
``load`` still checks it: a stored ``int`` field that reads ``"12"`` is
damage, not a value).
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["ANY", "PLAIN", "Bad", "Dict", "Fields", "Items", "Model", "Node", "Plain", "Refused", "Scalar", "Tuple",
           "Union", "kind"]


class Bad(Exception):
    """A problem deep in a value; each container on the way out adds its step to ``path``."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        self.path: list[str] = []

    def where(self) -> str:
        return "".join(reversed(self.path))


def kind(value: "Any") -> str:
    text = repr(value)
    return f"{type(value).__name__} ({text if len(text) <= 40 else text[:37] + '...'})"



class Node:
    __slots__ = ("name", "plain")

    def __init__(self, name: str, plain: bool = False) -> None:
        self.name = name
        self.plain = plain

    def dump(self, value: "Any") -> "Any":
        return value

    def load(self, value: "Any") -> "Any":
        return value

    def accepts(self, value: "Any") -> bool:
        return True

    def collect(self, value: "Any", path: str, out: "list[tuple[str, str]]") -> None:
        try:
            self.load(value)
        except Bad as bad:
            out.append((path + bad.where(), bad.problem))


ANY = Node("Any", plain=True)


class Plain(Node):
    """``str``, ``int``, ``float``, ``bool``, ``None`` or a ``Literal``: checked on load only."""

    __slots__ = ("test",)

    def __init__(self, name: str, test: "Callable[[Any], bool]") -> None:
        super().__init__(name, plain=True)
        self.test = test

    def load(self, value: "Any") -> "Any":
        if not self.test(value):
            raise Bad(f"expected {self.name}, not {kind(value)}")
        return value

    def accepts(self, value: "Any") -> bool:
        return self.test(value)


PLAIN = {
    str: Plain("str", lambda v: type(v) is str),
    int: Plain("int", lambda v: type(v) is int),
    float: Plain("float", lambda v: type(v) is float or type(v) is int),
    bool: Plain("bool", lambda v: type(v) is bool),
    type(None): Plain("None", lambda v: v is None),
}


class Scalar(Node):
    """A class kept as one JSON scalar (an ``Enum``, ``datetime``, ``Decimal``, ``bytes``...)."""

    __slots__ = ("cls", "to", "back", "exact")

    def __init__(self, cls: type, to: "Callable[[Any], Any]", back: "Callable[[Any], Any]",
                 exact: bool = True) -> None:
        super().__init__(cls.__name__)
        self.cls, self.to, self.back, self.exact = cls, to, back, exact

    def accepts(self, value: "Any") -> bool:
        return type(value) is self.cls if self.exact else isinstance(value, self.cls)

    def dump(self, value: "Any") -> "Any":
        if not self.accepts(value):
            raise Bad(f"expected {self.name}, not {kind(value)}")
        return self.to(value)

    def load(self, value: "Any") -> "Any":
        try:
            return self.back(value)
        except Exception as exc:
            detail = f" ({exc})" if str(exc) else ""
            raise Bad(f"expected {self.name}, not {kind(value)}{detail}") from None


class Items(Node):
    """``list[X]``, ``tuple[X, ...]``, ``set[X]``, ``frozenset[X]``: a JSON list."""

    __slots__ = ("item", "make")

    def __init__(self, make: type, item: Node) -> None:
        super().__init__(f"{make.__name__}[{item.name}]", plain=make is list and item.plain)
        self.make, self.item = make, item

    def accepts(self, value: "Any") -> bool:
        return type(value) is self.make

    def dump(self, value: "Any") -> "Any":
        if type(value) is not self.make:
            raise Bad(f"expected {self.name}, not {kind(value)}")
        item = self.item
        given: Any = value  # (type() narrowed value)
        if item.plain:
            out = list(given)
        else:
            out = []
            for k, v in enumerate(given):
                try:
                    out.append(item.dump(v))
                except Bad as bad:
                    bad.path.append(f"[{k}]")
                    raise
        if self.make is set or self.make is frozenset:
            try:
                out.sort()
            except TypeError:
                pass  # (items that do not sort keep the set's order)
        return out

    def load(self, value: "Any") -> "Any":
        if type(value) is not list:
            raise Bad(f"expected {self.name} (a JSON list), not {kind(value)}")
        item = self.item
        if item is ANY:
            return value if self.make is list else self.make(value)
        out = []
        for k, v in enumerate(value):
            try:
                out.append(item.load(v))
            except Bad as bad:
                bad.path.append(f"[{k}]")
                raise
        return out if self.make is list else self.make(out)

    def collect(self, value: "Any", path: str, out: "list[tuple[str, str]]") -> None:
        if type(value) is not list:
            out.append((path, f"expected {self.name} (a JSON list), not {kind(value)}"))
            return
        for k, v in enumerate(value):
            self.item.collect(v, f"{path}[{k}]", out)


class Tuple(Node):
    """``tuple[X, Y]``: a JSON list of that length."""

    __slots__ = ("items",)

    def __init__(self, items: "list[Node]") -> None:
        super().__init__(f"tuple[{', '.join(i.name for i in items)}]")
        self.items = items

    def accepts(self, value: "Any") -> bool:
        return type(value) is tuple and len(value) == len(self.items)

    def dump(self, value: "Any") -> "Any":
        if not self.accepts(value):
            raise Bad(f"expected {self.name}, not {kind(value)}")
        return [self._at(k, node.dump, v) for k, (node, v) in enumerate(zip(self.items, value))]

    def load(self, value: "Any") -> "Any":
        if type(value) is not list or len(value) != len(self.items):
            raise Bad(f"expected {self.name} (a JSON list of {len(self.items)}), not {kind(value)}")
        return tuple(self._at(k, node.load, v) for k, (node, v) in enumerate(zip(self.items, value)))

    @staticmethod
    def _at(k: int, how: "Callable[[Any], Any]", v: "Any") -> "Any":
        try:
            return how(v)
        except Bad as bad:
            bad.path.append(f"[{k}]")
            raise

    def collect(self, value: "Any", path: str, out: "list[tuple[str, str]]") -> None:
        if type(value) is not list or len(value) != len(self.items):
            super().collect(value, path, out)
            return
        for k, (node, v) in enumerate(zip(self.items, value)):
            node.collect(v, f"{path}[{k}]", out)


class Dict(Node):
    """``dict[K, V]``: a JSON object; keys that are not text are kept as text."""

    __slots__ = ("key", "value")

    def __init__(self, key: Node, value: Node) -> None:
        super().__init__(f"dict[{key.name}, {value.name}]", plain=key is PLAIN[str] and value.plain)
        self.key, self.value = key, value

    def accepts(self, value: "Any") -> bool:
        return type(value) is dict

    def dump(self, value: "Any") -> "Any":
        if type(value) is not dict:
            raise Bad(f"expected {self.name}, not {kind(value)}")
        key, node = self.key, self.value
        out = {}
        for k, v in value.items():
            try:
                text = key.dump(k)
                if type(text) is not str:
                    text = str(text) if type(text) is int else None
                if text is None:
                    raise Bad(f"a key of {self.name} must be kept as text: {kind(k)} is not")
                out[text] = node.dump(v)
            except Bad as bad:
                bad.path.append(f"[{k!r}]")
                raise
        return out

    def load(self, value: "Any") -> "Any":
        if type(value) is not dict:
            raise Bad(f"expected {self.name} (a JSON object), not {kind(value)}")
        key, node = self.key, self.value
        out = {}
        for k, v in value.items():
            try:
                out[key.load(int(k) if key is PLAIN[int] and _integer(k) else k)] = node.load(v)
            except Bad as bad:
                bad.path.append(f"[{k!r}]")
                raise
        return out

    def collect(self, value: "Any", path: str, out: "list[tuple[str, str]]") -> None:
        if type(value) is not dict:
            super().collect(value, path, out)
            return
        for k, v in value.items():
            self.key.collect(int(k) if self.key is PLAIN[int] and _integer(k) else k, f"{path}[{k!r}]", out)
            self.value.collect(v, f"{path}[{k!r}]", out)


def _integer(text: str) -> bool:
    return text.lstrip("-").isdigit() and str(int(text)) == text  # (exactly as str(int) writes it)


class Fields(Node):
    """A dataclass, ``NamedTuple`` or ``TypedDict``: a JSON object of its fields."""

    __slots__ = ("cls", "fields", "required", "late", "kind")

    def __init__(self, cls: type, kind: str) -> None:
        super().__init__(cls.__name__)
        self.cls, self.kind = cls, kind
        self.fields: dict[str, Node] = {}
        self.required: frozenset[str] = frozenset()
        self.late: tuple[str, ...] = ()  # a dataclass's fields with init=False: set after __init__

    def accepts(self, value: "Any") -> bool:
        return isinstance(value, dict) if self.kind == "typeddict" else type(value) is self.cls

    def dump(self, value: "Any") -> "Any":
        if not self.accepts(value):
            raise Bad(f"expected {self.name}, not {kind(value)}")
        out = {}
        typeddict = self.kind == "typeddict"
        for name, node in self.fields.items():
            if typeddict:
                if name not in value:
                    continue
                v = value[name]
            else:
                v = getattr(value, name)
            if node.plain:
                out[name] = v
                continue
            try:
                out[name] = node.dump(v)
            except Bad as bad:
                bad.path.append(f".{name}")
                raise
        if typeddict and len(out) != len(value):
            raise Bad(f"{self.name} has no key {next(k for k in value if k not in out)!r}")
        return out

    def load(self, value: "Any") -> "Any":
        if type(value) is not dict:
            raise Bad(f"expected {self.name} (a JSON object), not {kind(value)}")
        fields = self.fields
        kw = {}
        for name, v in value.items():
            node = fields.get(name)
            if node is None:
                raise Bad(f"{self.name} has no field {name!r}")
            try:
                kw[name] = node.load(v)
            except Bad as bad:
                bad.path.append(f".{name}")
                raise
        if len(kw) < len(self.required) or not self.required.issubset(kw):
            raise Bad(f"{self.name} needs {', '.join(repr(n) for n in sorted(self.required - kw.keys()))}")
        if self.kind == "typeddict":
            return kw
        late = [(name, kw.pop(name)) for name in self.late if name in kw]
        try:
            made = self.cls(**kw)
        except Exception as exc:
            raise Bad(f"{self.name}(...) refused it: {type(exc).__name__}: {exc}") from None
        for name, v in late:
            object.__setattr__(made, name, v)
        return made

    def collect(self, value: "Any", path: str, out: "list[tuple[str, str]]") -> None:
        if type(value) is not dict:
            super().collect(value, path, out)
            return
        count = len(out)
        for name, v in value.items():
            node = self.fields.get(name)
            if node is None:
                out.append((path, f"{self.name} has no field {name!r}"))
            else:
                node.collect(v, f"{path}.{name}", out)
        missing = sorted(self.required - value.keys())
        if missing:
            out.append((path, f"{self.name} needs {', '.join(map(repr, missing))}"))
        if len(out) == count:
            super().collect(value, path, out)  # (what the constructor says)


class Model(Node):
    """A Pydantic v2 model: its own JSON mode, validated strictly."""

    __slots__ = ("cls",)

    def __init__(self, cls: type) -> None:
        super().__init__(cls.__name__)
        self.cls = cls

    def accepts(self, value: "Any") -> bool:
        return type(value) is self.cls

    def dump(self, value: "Any") -> "Any":
        if type(value) is not self.cls:
            raise Bad(f"expected {self.name}, not {kind(value)}")
        model: Any = value  # (type() narrowed value)
        return model.model_dump(mode="json")

    def validate(self, data: "bytes | str", path: str) -> "Any":
        """The model from JSON text, or a list of ``(path, problem)`` (Pydantic's errors)."""
        try:
            return self.cls.model_validate_json(data, strict=True)  # type: ignore[attr-defined]
        except ValueError as exc:  # (pydantic's ValidationError is one)
            errors = getattr(exc, "errors", None)
            if errors is None:
                return [(path, str(exc))]
            return [(path + "".join(f"[{p}]" if type(p) is int else f".{p}" for p in e.get("loc", ())),
                     e.get("msg", "invalid")) for e in errors()]

    def load(self, value: "Any") -> "Any":
        found = self.validate(_json_text(value), "")
        if isinstance(found, list):
            bad = Bad(found[0][1])
            bad.path.append(found[0][0])
            raise bad
        return found

    def collect(self, value: "Any", path: str, out: "list[tuple[str, str]]") -> None:
        found = self.validate(_json_text(value), path)
        if isinstance(found, list):
            out.extend(found)


def _json_text(value: "Any") -> str:
    import json  # (import time: json loads on first use)

    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return "null"  # (not JSON: the model says what it wanted)


class Union(Node):
    """``X | Y``: ``X | None`` and unions of plain JSON as they are; any other tagged."""

    __slots__ = ("members", "tagged", "nullable")

    def __init__(self, members: "list[Node]", nullable: bool) -> None:
        names = [m.name for m in members] + (["None"] if nullable else [])
        super().__init__(" | ".join(names), plain=all(m.plain for m in members))
        self.members = members
        self.nullable = nullable
        self.tagged: dict[str, Node] | None = None
        if not self.plain and len(members) > 1:
            self.tagged = {m.name: m for m in members}

    def accepts(self, value: "Any") -> bool:
        return (value is None and self.nullable) or any(_accepts(m, value) for m in self.members)

    def dump(self, value: "Any") -> "Any":
        if value is None and self.nullable:
            return None
        if self.tagged is None:
            return self.members[0].dump(value)
        for m in self.members:
            if _accepts(m, value):
                try:
                    return {"type": m.name, "value": m.dump(value)}
                except Bad:
                    continue
        raise Bad(f"expected {self.name}, not {kind(value)}")

    def load(self, value: "Any") -> "Any":
        if value is None and self.nullable:
            return None
        tagged = self.tagged
        if tagged is None:
            if len(self.members) == 1:
                return self.members[0].load(value)
            for m in self.members:  # (plain members: the first that takes it)
                try:
                    return m.load(value)
                except Bad:
                    continue
            raise Bad(f"expected {self.name}, not {kind(value)}")
        if type(value) is not dict or value.keys() != {"type", "value"} or type(value["type"]) is not str \
                or value["type"] not in tagged:
            raise Bad(f"expected {self.name} as {{\"type\": one of {sorted(tagged)}, \"value\": ...}}, "
                       f"not {kind(value)}")
        return tagged[value["type"]].load(value["value"])

    def collect(self, value: "Any", path: str, out: "list[tuple[str, str]]") -> None:
        if self.tagged is not None and type(value) is dict and value.keys() == {"type", "value"} \
                and type(value["type"]) is str and value["type"] in self.tagged:
            self.tagged[value["type"]].collect(value["value"], path, out)
        elif len(self.members) == 1 and value is not None:
            self.members[0].collect(value, path, out)
        else:
            super().collect(value, path, out)


def _accepts(node: Node, value: "Any") -> bool:
    try:
        return bool(node.accepts(value))
    except Bad:
        return False


class Refused(Node):
    """An annotation that cannot be kept (a union whose members share a name): refused at once."""

    __slots__ = ("why",)

    def __init__(self, name: str, why: str) -> None:
        super().__init__(name)
        self.why = why

    def dump(self, value: "Any") -> "Any":
        raise Bad(self.why)

    load = dump


