"""Compiling a flow into the plan every run takes.

A step's definition is checked as it is added (``_steps``); what needs the
whole flow (dependencies on steps defined later, cycles, parameters bound to
steps) is checked when the flow is compiled into a :class:`_Plan`, before
any step runs.  The plan is what the
runner takes: the graph and its kernel, per step its function, how it is
called, its retry policy and its flags.  It is cached by the flow and reused
by every run until a step is added.

How parameters bind lives in ``_binding``; when a failed attempt is retried,
in ``_retry``; what it knows of its inputs and types, in ``_plantypes``.
Here: the plan, its flags, and the digests of a flow's structure and of its
steps' code.
"""

import marshal
from itertools import repeat
from operator import is_

from ._binding import NO_DEFAULT, _FEW, _check_edges, _layout_each, _layout_together, _Signature
from ._compat import sched, sha256
from ._errors import CycleError, FlowError
from ._graph import Graph
from ._nogc import NoGC
from ._plantypes import _Typed
from ._retry import _retry_policies
from ._steps import TRIGGERS, _Same, _Steps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

__all__ = ["NO_DEFAULT", "_Plan"]  # (NO_DEFAULT is binding's, used here too)

#: A byte of flags with the kernel's KEEP bit set (``bytes.translate`` sets it on every step).
_WITH_KEEP = bytes(b | sched.KEEP for b in range(256))


class _Plan(_Typed):
    """A compiled flow: graph, kernel and per-step call layout (ids = graph ids).

    ``kwnames[i]`` lists the keyword names step ``i`` is called with: first
    those bound to the outputs of ``argdeps[i]``, then its flow inputs
    (``input_params[i]``: ``(param, input, default)`` triples, in order).
    """

    __slots__ = (
        "graph",
        "steps",
        "fns",
        "dep_kwnames",
        "argdeps",
        "input_params",
        "inputs",
        "has_priority",
        "has_triggers",
        "maps",
        "is_async",
        "retry",
        "busy",
        "_sinks",
        "_flags",
        "_fingerprint",
        "_code",
        "declared",
        "declared_types",
        "_options",
        "options",
    )

    def __init__(self, steps: _Steps, index: "dict[str, int] | None" = None) -> None:
        """Compile ``steps`` (``index``: their names to ids, which the graph
        keeps; made here when not given).

        Raises:
            FlowError: every problem of the flow; CycleError: a cycle.
        """
        with NoGC():
            self._compile(steps, dict(zip(steps.names, range(len(steps)))) if index is None else index)

    def _compile(self, steps: _Steps, index: "dict[str, int]") -> None:
        problems: list[str] = []
        fn_list = steps.fns
        if fn_list and all(map(is_, fn_list, repeat(fn_list[0]))):  # one function for every step
            fns = {id(fn_list[0]): fn_list[0]}
        else:
            fns = dict(zip(map(id, fn_list), fn_list))  # each distinct function, by id
        signatures: dict[int, _Signature | Exception] = {}
        for key, fn in fns.items():
            try:
                signatures[key] = _Signature(fn)
            except (TypeError, ValueError) as exc:  # (said for each step of it, by _layout_each)
                signatures[key] = exc
        options = set(steps.opts)  # each distinct set of options (they hash by identity)
        layout = _layout_together(steps, fns, signatures, options) if len(fns) <= _FEW else None
        if layout is None:
            layout = _layout_each(steps, index, signatures, problems)
        deps_of, kwnames, sources, inputs_of, is_async = layout
        if not problems:
            _check_edges(steps, kwnames, sources, index, fns, signatures, problems)  # type: ignore[arg-type]
        try:
            graph = Graph._of(steps.names, index, deps_of, steps.ids if deps_of is steps.deps else None)
        except FlowError as exc:
            problems.extend(exc.problems)
        except CycleError:
            if not problems:
                raise
        if problems:
            raise FlowError(*problems)
        self.graph = graph
        self.steps = steps
        self.options = steps.opts
        self.fns = fn_list
        self.dep_kwnames = kwnames
        ids = graph._deps  # (the same tuples where the steps giving outputs are the dependencies)
        if sources is deps_of:
            self.argdeps = ids
        elif isinstance(sources, _Same):  # no step is passed anything (the kernel's loop wants a list)
            self.argdeps = [()] * len(steps)
        else:
            self.argdeps = [ids[i] if src is deps_of[i] else tuple(index[d] for d in src)
                            for i, src in enumerate(sources)]
        self.input_params = inputs_of
        all_inputs: dict[str, list[int]] = {}
        if not isinstance(inputs_of, _Same) or inputs_of.value:  # (_Same of nothing: no step takes an input)
            for i, taken in enumerate(inputs_of):
                for _, name, _ in taken:
                    all_inputs.setdefault(name, []).append(i)
        self.inputs = all_inputs
        self._options = options
        self.has_priority = any(o.priority is not None for o in options)
        self.has_triggers = any(o.trigger != "all_success" for o in options)
        self.maps = [i for i, s in enumerate(steps) if s.map is not None] if any(
            o.map is not None for o in options) else []
        self.configure(graph.kernel)
        self.is_async = is_async
        self.retry = _retry_policies(steps, options)
        self.busy = False
        self._sinks: list[int] | None = None
        self._flags: dict[tuple[bool, bool], bytes] = {}
        self._fingerprint: str | None = None
        self._code: dict[str, str] | None = None
        #: Input name -> the JSON Schema a flow file declares for it (``Flow`` sets it).
        self.declared: dict[str, dict[str, Any]] = {}
        #: Input name -> the class a flow file names as its type (``[inputs] x = {type = "mod:Class"}``).
        self.declared_types: dict[str, Any] = {}
        self._untyped()

    def configure(self, kernel: "Any") -> None:
        """Give ``kernel`` the steps' priorities and trigger rules."""
        if self.has_priority:
            kernel.set_priorities([s.priority or 0 for s in self.steps])
        if self.has_triggers:
            kernel.set_triggers([TRIGGERS.index(s.trigger) for s in self.steps])

    # -- steps that add steps ---------------------------------------------------

    def grown(self, kernel: "Any") -> "_Plan":
        """A copy of this plan for one run whose steps add steps: its per-step
        lists and its graph (names, name index, dependency ids; ``kernel``,
        the run's) are its own, so that :meth:`append` changes that run only
        and the flow's plan stays the static flow's."""
        new = _Plan.__new__(_Plan)
        for slot in (*_Plan.__slots__, *_Typed.__slots__):
            setattr(new, slot, getattr(self, slot))
        steps = new.steps = self.steps.copy()
        new.options, new.fns = steps.opts, steps.fns
        new.dep_kwnames = list(self.dep_kwnames)
        new.argdeps = list(self.argdeps)
        new.input_params = list(self.input_params)
        new.inputs = {name: list(ids) for name, ids in self.inputs.items()}
        new.maps = list(self.maps)
        new.is_async = list(self.is_async)
        new.retry = list(self.retry)
        new._options = set(self._options)
        new._flags = {}
        new.graph = self.graph._for_run(kernel)
        new._typed_grown()
        return new

    def renew_kernel(self) -> None:
        """Give the plan a fresh kernel (the run that leased its own grew it)."""
        kernel = self.graph._kernel = self.graph._new_kernel()
        self.configure(kernel)

    def bind(self, name: str, fn: "Callable[..., Any]", deps: "tuple[str, ...]", binding: "dict[str, str]",
             opts: "Any") -> "tuple[Any, ...]":
        """A step to add to a plan made by :meth:`grown` (``_Step.check``'s
        ``deps`` and ``binding``, checked ``opts``), its parameters bound by
        name as a flow's are (``_binding``), to every step of the plan: what
        :meth:`append` takes.  Changes nothing.

        Returns:
            ``(step, dependency ids, keyword names, ids of the steps passed,
            inputs, is_async)``: ``inputs`` as ``input_params``' entries.

        Raises:
            FlowError: its name is taken, it depends on itself or on a step
                that is not there, or a parameter cannot be bound (every
                problem listed).
        """
        index = self.graph._index
        if name in index:
            raise FlowError(f"step {name!r} is already a step of this run")
        one = _Steps([name], [fn], [deps], [binding], [opts], [None])
        signature: "_Signature | Exception"
        try:
            signature = _Signature(fn)
        except (TypeError, ValueError) as exc:  # (worded by _layout_each)
            signature = exc
        problems: list[str] = []
        if name in deps:
            problems.append(f"step {name!r} depends on itself")
        index[name] = len(self.fns)
        try:
            deps_of, kwnames, sources, inputs_of, is_async = _layout_each(one, index, {id(fn): signature}, problems)
        finally:
            del index[name]
        if problems:
            raise FlowError(*problems)
        ids = tuple(index[d] for d in deps_of[0])
        return (one, ids, kwnames[0], tuple(index[src] for src in sources[0]), inputs_of[0], is_async[0])

    def append(self, bound: "tuple[Any, ...]") -> int:
        """Add the step :meth:`bind` bound; its id."""
        one, ids, kwnames, argdeps, inputs, is_async = bound
        step = one[0]
        i = len(self.fns)
        graph = self.graph
        graph._index[step.name] = i
        graph._names.append(step.name)  # type: ignore[attr-defined]
        graph._deps.append(ids)
        steps = self.steps
        steps.names.append(step.name)
        steps.fns.append(step.fn)
        steps.deps.append(step.depends_on)
        steps.inputs.append(step.inputs)
        steps.opts.append(step.opts)
        steps.ids.append(tuple(map(graph._index.__getitem__, step.depends_on)))
        self.dep_kwnames.append(kwnames)
        self.argdeps.append(argdeps)
        self.input_params.append(inputs)
        for _, input_name, _ in inputs:
            self.inputs.setdefault(input_name, []).append(i)
        self.is_async.append(is_async)
        self.retry.append(_retry_policies(one, {step.opts})[0])
        self._options.add(step.opts)
        self.has_triggers = self.has_triggers or step.opts.trigger != "all_success"
        if step.opts.map is not None:
            self.maps.append(i)
        self._flags = {}
        self._typed_added(i)
        return i

    def flags(self, slow_all: bool, keep: "list[int] | None") -> bytes:
        """The scheduler's per-step flags for a run (see ``drive``).

        ``SLOW``: the step needs the runner's careful path (a timeout, a map,
        an async function, or ``slow_all`` for hooks and debug logging);
        ``KEEP``: its output is kept (every step when ``keep`` is ``None``).
        The two usual cases (keep all, keep the sinks) are cached.
        """
        usual = keep is None or keep is self._sinks
        key = (slow_all, keep is None)
        if usual and key in self._flags:
            return self._flags[key]
        n = len(self.steps)
        slow, keep_bit = sched.SLOW, sched.KEEP
        if slow_all:
            flags = bytearray([slow]) * n
        else:
            careful = {id(o) for o in self._options
                       if o.timeout is not None or o.map is not None or o.cache}
            flags = bytearray(n)
            if careful:
                for i, o in enumerate(self.options):
                    if id(o) in careful:
                        flags[i] = slow
            if True in self.is_async:
                for i, a in enumerate(self.is_async):
                    if a:
                        flags[i] = slow
        if keep is None:
            flags = flags.translate(_WITH_KEEP)
        else:
            for i in keep:
                flags[i] |= keep_bit
        out = bytes(flags)
        if usual:
            self._flags[key] = out
        return out

    def code(self) -> "dict[str, str] | None":
        """Step name -> :func:`code_digest` of its function's code, for flows of up to
        ``CODE_LIMIT`` steps (``None`` beyond: kept with each durable run, so
        that a resume can tell when a finished step's code changed)."""
        if self._code is None and len(self.steps) <= CODE_LIMIT:
            seen: dict[int, str] = {}  # flows often reuse one function
            code = {}
            for step in self.steps:
                digest = seen.get(id(step.fn))
                if digest is None:
                    digest = seen[id(step.fn)] = code_digest(step.fn, defaults=False)
                code[step.name] = digest
            self._code = code
        return self._code

    def fingerprint(self) -> str:
        """A digest of the flow's structure: steps, dependencies, bindings, maps (and their keys), triggers.

        Retry, timeout and priority options and the functions' code are left
        out: changing them does not stop a run from being resumed.  Each
        part is a column serialised whole (``marshal`` format 2: no
        references, no interning, the same bytes for equal values in any
        process), so a million steps take a fraction of a second.
        """
        if self._fingerprint is not None:
            return self._fingerprint
        import json  # (import time: json loads on first use)

        n = len(self.steps)
        triples: dict[int, tuple[Any, ...] | None] = {}  # options -> their structural part, when not the default
        for o in self._options:
            shape: tuple[Any, ...] = (o.map, o.batch_size, o.trigger)
            if o.key is not None:  # (what identifies a map's items; an unkeyed step's shape is as before)
                shape += (o.key if isinstance(o.key, str) else True,)
            triples[id(o)] = None if shape == (None, None, "all_success") else shape
        names, deps, kw, argdeps = self.graph.names, self.graph._deps, self.dep_kwnames, self.argdeps
        with NoGC():
            columns: list[Any] = [
                names,
                deps,
                # keyword names and the steps passed: b"=" where they are the dependencies (names, ids)
                b"=" if _dep_names(kw, self.steps.deps, names, deps) else list(kw),
                b"=" if argdeps is deps or list(argdeps) == deps else list(argdeps),
                [] if isinstance(self.input_params, _Same) and not self.input_params.value else
                [(i, tuple((p, name) for p, name, _ in ins)) for i, ins in enumerate(self.input_params) if ins],
                [] if not any(triples.values()) else
                [(i, t) for i, t in enumerate(map(triples.__getitem__, map(id, self.options))) if t is not None],
            ]
            digest = sha256(b"microdag flow structure, format 2: %d steps\n" % n)
            for column in columns:
                try:
                    digest.update(marshal.dumps(column, 2))
                except ValueError:  # (a name of a str subclass, which marshal refuses)
                    digest.update(json.dumps(column).encode())
        self._fingerprint = digest.hexdigest()[:32]
        return self._fingerprint

    def made(self, fingerprint: str) -> bool:
        """Whether a run recorded with ``fingerprint`` ran a flow of this
        structure (the fingerprint of :meth:`fingerprint`, or of the first
        format, which runs recorded before it carry)."""
        return fingerprint == self.fingerprint() or fingerprint == self._first_fingerprint()

    def _first_fingerprint(self) -> str:
        """The first format of :meth:`fingerprint`: one JSON list per step
        (name, dependency names, keyword names, bound inputs, map, batch
        size, trigger)."""
        import json  # (import time: json loads on first use)

        names = self.graph.names
        with NoGC():
            shape = [
                [name, [names[j] for j in d] if d else [], list(kw), [[p, n] for p, n, _ in ins] if ins else [],
                 o.map, o.batch_size, o.trigger]
                for name, d, kw, ins, o in zip(names, self.graph._deps, self.dep_kwnames, self.input_params,
                                               self.options)
            ]
            return str(sha256(json.dumps(shape).encode()).hexdigest()[:32])

    def graph_json(self) -> str:
        """The structure a store keeps for reports: names and dependency indices."""
        import json  # (import time: json loads on first use)

        names = [str(name) for name in self.graph.names]
        return json.dumps({"nodes": names, "deps": [list(d) for d in self.graph._deps]})

    def limited(self) -> bool:
        """Whether some step uses a pool or a rate."""
        return any(o.uses for o in self._options)

    def sinks(self) -> list[int]:
        """Ids of the steps no other step depends on."""
        if self._sinks is None:
            used = bytearray(len(self.steps))
            for deps in self.graph._deps:
                for j in deps:
                    used[j] = 1
            self._sinks = [i for i, u in enumerate(used) if not u]
        return self._sinks


def _dep_names(
    kwnames: "Sequence[tuple[str, ...]]", given: "list[tuple[str, ...]]", names: "Sequence[str]",
    deps: "list[tuple[int, ...]]",
) -> bool:
    """Whether every step's keyword names are the names of its dependencies
    ``deps`` (as for steps of ``**kwargs``; ``given``: the steps' own
    ``depends_on``, which ``kwnames`` is when the flow was laid out together)."""
    if kwnames is given:
        return True
    if isinstance(kwnames, _Same):
        return kwnames.value == () and not any(deps)
    return all(kw == tuple(map(names.__getitem__, d)) for kw, d in zip(kwnames, deps))


#: Flows of at most this many steps keep a digest of each step's code with their runs.
CODE_LIMIT = 10_000


def code_digest(fn: "Callable[..., Any]", defaults: bool = True) -> str:
    """A digest of what ``fn`` runs: its code, and with ``defaults`` its default
    values (a ``functools.partial``'s keywords too).  A callable without code
    of its own is described by its ``__microdag_code__`` (what it runs,
    without defaults: a flow file's command step has one), else its qualified
    name.  Editing what is digested changes the digest.

    The cache keys outputs with the defaults (they change what a step
    returns); a resume compares the code alone, as a run records its inputs'
    values, defaults included.  Only what the code does counts: not its
    name, file or line numbers (see :func:`_what_code_does`).
    """
    digest = sha256()
    described = getattr(fn, "__microdag_code__", None)
    code = getattr(fn, "__code__", None)
    if described is not None and not defaults:
        digest.update(str(described).encode("utf-8", "surrogatepass"))
    elif code is not None:
        digest.update(marshal.dumps(_what_code_does(code)))
        if defaults:
            values = [getattr(fn, attr, None) for attr in ("__defaults__", "__kwdefaults__", "keywords")]
            digest.update(canonical(values))
    else:
        digest.update(repr(getattr(fn, "__qualname__", fn)).encode("utf-8", "surrogatepass"))
    return str(digest.hexdigest()[:16])


def _what_code_does(code: "Any") -> "tuple[Any, ...]":
    """A code object's instructions, names and constants (nested code objects
    likewise), without its name, file and line numbers: moving a function, or
    editing the lines above it, does not change what it does."""
    consts = tuple(_what_code_does(c) if hasattr(c, "co_code") else c for c in code.co_consts)
    return (code.co_code, consts, code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars,
            code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags)


def canonical(value: "Any") -> bytes:
    """``value`` as bytes for a digest: its JSON, else its pickle, else its repr."""
    import json  # (import time: json loads on first use)

    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        import pickle  # (import time: pickle loads on first use)

        try:
            return pickle.dumps(value, protocol=4)
        except Exception:
            return repr(value).encode()
