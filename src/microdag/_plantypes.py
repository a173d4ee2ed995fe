"""What a compiled flow knows of its inputs and of its steps' types.

:class:`_Typed` is the part of ``_plan._Plan`` about the run's inputs (which
the steps need, their JSON Schema, the given values checked and read into
their classes) and about typed outputs (the converters a JSON store writes a
step's output with, ``_typed``).  Each is worked out once per plan, when
first asked for, and kept: a plan is reused by every run of its flow.
"""

from ._binding import NO_DEFAULT
from ._errors import nearest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    from ._graph import Graph
    from ._steps import _Steps
    from ._typed import Converter, Outputs

__all__ = ["_Typed"]


class _Typed:
    """A plan's inputs and types (a base of ``_plan._Plan``, which holds the state)."""

    __slots__ = ("_types", "_annotations", "_converters", "_typed")

    if TYPE_CHECKING:  # (the plan's slots these methods read)
        graph: Graph[str]
        steps: _Steps
        fns: "list[Callable[..., Any]]"
        input_params: "list[tuple[tuple[str, str, Any], ...]]"
        declared: "dict[str, dict[str, Any]]"
        declared_types: "dict[str, Any]"

    def _untyped(self) -> None:
        """Nothing worked out yet (a plan just compiled)."""
        self._types: dict[str, dict[str, Any]] | None = None
        self._annotations: dict[str, Any] = {}
        self._converters: dict[str, Converter | None] = {}
        self._typed: Outputs | None = None

    def needed_inputs(self) -> "dict[str, bool]":
        """Every flow input, mapped to whether some step requires it (no default)."""
        out: dict[str, bool] = {}
        for ins in self.input_params:
            for _, name, default in ins:
                out[name] = out.get(name, False) or default is NO_DEFAULT
        return out

    def misspelt(self, given: "Iterable[str]" = ()) -> "dict[str, str]":
        """Required flow inputs that look like a misspelt step name, neither
        declared (``declared``) nor ``given``: input name -> the problem, naming
        the step, the parameter and the step it is most like."""
        out: dict[str, str] = {}
        seen = set(self.declared).union(given)  # (each input is looked at once)
        names = self.graph.names
        for i, params in enumerate(self.input_params):
            for param, input_name, default in params:
                if default is not NO_DEFAULT or input_name in seen:
                    continue
                seen.add(input_name)
                guess = nearest(input_name, names)
                if guess is not None:
                    out[input_name] = (f"parameter {param!r} of step {names[i]!r} matches no step; "
                                       f"did you mean step {guess!r}? (or declare it as a flow input)")
        return out

    def input_schema(self, title: str) -> "dict[str, Any]":
        """``Flow.input_schema``: a JSON Schema of the inputs (see there)."""
        import json  # (import time: json loads on first use)

        from ._schema import lift_defs  # (loaded by input_types already)

        types = self.input_types()
        defaults: dict[str, Any] = {}
        for ins in self.input_params:
            for _, name, default in ins:
                if default is not NO_DEFAULT and name not in defaults:
                    defaults[name] = default
        needed = self.needed_inputs()
        properties: dict[str, Any] = {}
        for name in sorted(needed):
            prop = dict(types.get(name, {}))
            if name in defaults:
                try:
                    json.dumps(defaults[name], allow_nan=False)
                    prop["default"] = defaults[name]
                except (TypeError, ValueError):
                    pass
            properties[name] = prop
        defs: dict[str, Any] = {}
        properties = lift_defs(properties, defs)  # (a model's nested models, named from the top)
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": title,
            "type": "object",
            "properties": properties,
            "required": sorted(name for name, required in needed.items() if required),
            "additionalProperties": False,
        }
        if defs:
            schema["$defs"] = defs
        return schema

    def typed_outputs(self, codec: str = "json") -> "Outputs":
        """The converters of the steps' outputs by their return annotations
        (``_typed.step_outputs``) for a store's ``codec``, read at the first
        run that keeps outputs as JSON; empty for the other codecs (their
        values are kept as they are) and for plain JSON outputs."""
        if codec != "json":
            return ({}, {})
        if self._typed is None:
            from ._typed import step_outputs  # (runs with a JSON store only)

            self._typed = step_outputs(self.steps)
        return self._typed

    def _typed_grown(self) -> None:
        """A plan made for a run whose steps add steps (``_Plan.grown``): its
        converters of outputs are its own, which :meth:`_typed_added` extends
        (the flow's plan keeps the static flow's)."""
        if self._typed is not None:
            self._typed = (dict(self._typed[0]), dict(self._typed[1]))

    def _typed_added(self, i: int) -> None:
        """Step ``i`` joined the plan (``_Plan.append``): the converters of its
        outputs join those worked out, in place, so that whoever holds them
        (a store's recorder, a worker's run) writes and reads it by its
        return annotation as it does the flow's steps."""
        if self._typed is not None:
            from ._typed import step_outputs  # (worked out already: the module is loaded)

            outs, units = step_outputs(self.steps, i)
            self._typed[0].update(outs)
            self._typed[1].update(units)

    def input_types(self) -> "dict[str, dict[str, Any]]":
        """Input name -> its JSON Schema: declared by the flow file, else from
        the annotation of the first parameter that takes it and says
        something (``{}``: any)."""
        if self._types is None:
            # (_schema loads with the first compile, not with a flow's definition)
            from ._schema import MISSING, annotations, item_type, schema_of, typed

            seen: dict[int, dict[str, Any]] = {}
            types: dict[str, dict[str, Any]] = {}
            annotated: dict[str, Any] = {}
            for i, ins in enumerate(self.input_params):
                for param, name, _ in ins:
                    if name in types and types[name]:
                        continue
                    if name in self.declared:
                        types[name] = self.declared[name]
                        if typed(self.declared_types.get(name)):
                            annotated[name] = self.declared_types[name]
                        continue
                    fn = self.fns[i]
                    hints = seen.get(id(fn))
                    if hints is None:
                        hints = seen[id(fn)] = annotations(fn)
                    ann = hints.get(param, MISSING)
                    step = self.steps[i]
                    if step.map == param:  # the input is the items; the parameter, one (or a batch)
                        item = item_type(ann) if step.batch_size is not None else ann
                        types[name] = {"type": "array"} if item is MISSING else {
                            "type": "array", "items": schema_of(item)}
                        ann = MISSING if item is MISSING else list[item]  # type: ignore[valid-type]
                    else:
                        types[name] = {} if ann is MISSING else schema_of(ann)
                    if typed(ann):
                        annotated[name] = ann
            self._annotations = annotated
            self._types = types
        return self._types

    def input_classes(self) -> "dict[str, Any]":
        """Input name -> the annotation that gives it its type in
        :meth:`input_types` (or the class a flow file declares), for the
        inputs whose values are turned into a class (``_schema.typed``)."""
        self.input_types()
        return self._annotations

    def checked_inputs(self, given: "Mapping[str, Any]", problems: "list[str]") -> "dict[str, Any]":
        """The flow inputs ``given`` (anything else in it kept as it is), each
        checked against its declared or annotated type, every problem into
        ``problems`` (``input 'x': ...``), and turned into the class its
        annotation names (``_typed``'s converter, compiled once), unless it
        already is of it (``_edges.fits``: passed as it is), or is a generator
        or a range given for a list (a map's items: not read ahead)."""
        from ._edges import fits  # (loaded by compiling the flow)
        from ._schema import problem  # (loaded by input_types)

        types = self.input_types()
        classes = self._annotations
        out = dict(given)
        for name, value in given.items():
            ann = classes.get(name)
            if ann is not None:
                if fits(ann, value) or getattr(ann, "__origin__", None) is list and _lazy(value):
                    continue
                convert = self.input_converter(name)
                if convert is not None:
                    try:
                        out[name] = convert.load(value)
                    except ValueError:  # (ConvertError) every problem of the value, not only the first
                        problems.extend(convert.problems(value) or [f"input {name!r}: cannot be read"])
                    continue
            schema = types.get(name)
            if schema:
                wrong = problem(schema, value)
                if wrong is not None:
                    problems.append(f"input {name!r}: {wrong}")
        return out

    def input_converter(self, name: str) -> "Converter | None":
        """The converter of input ``name``'s JSON into its class (``None``: plain JSON)."""
        if name not in self._converters:
            ann = self.input_classes().get(name)
            if ann is None:
                self._converters[name] = None
            else:
                from ._typed import converter  # (an input of a class only)

                self._converters[name] = converter(ann, f"input {name!r}")
        return self._converters[name]


def _lazy(value: "Any") -> bool:
    """Whether ``value`` is an iterable that is not held whole (a generator, a range)."""
    return hasattr(value, "__iter__") and not isinstance(value, (list, tuple, dict, str, bytes, set, frozenset))
