"""Compiling a flow: step definitions, signatures, binding, retry policy, the plan.

A step's definition (:class:`_Step`) is checked as it is added (names,
callables, option values); what needs the whole flow (dependencies on steps
defined later, cycles, parameters bound to steps) is checked when the flow is
compiled into a :class:`_Plan`, before any step runs.  The plan is what the
runner takes: the graph and its kernel, per step its function, how it is
called, its retry policy and its flags.  It is cached by the flow and reused
by every run until a step is added.

Binding, per parameter of a step's function:

1. ``inputs={"param": "step"}`` binds it to that step's output;
2. else a parameter named like a step receives that step's output;
3. else it is a flow input, given to ``run``; a default makes it optional.

``depends_on`` adds order-only dependencies, except that a ``**kwargs``
parameter receives the outputs of every declared dependency not already
bound to a named parameter, keyed by step name.

Retry policy: each step gets a :class:`Retry` when the flow compiles (steps
with equal options share one), whose ``delay(exc, attempt)`` says how long to
wait before the next attempt, or ``None`` for no retry.  It is the only place
that decides retries, for steps and map items alike.
"""

from ._compat import sched
from ._errors import FlowError
from ._graph import Graph

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

__all__ = ["NO_DEFAULT", "TRIGGERS", "Retry", "_Plan", "_Step"]

#: The default of a flow input that has none (it is required).
NO_DEFAULT = object()
#: Trigger rule names, in the kernel's numbering.
TRIGGERS = ("all_success", "all_done", "none_failed")
_RETRY_ON: "tuple[type[BaseException], ...]" = (Exception,)
#: The longest timeout or retry delay, in seconds (about 11.6 days): finite, and
#: within what every backend can wait for (``poll`` takes milliseconds in 32 bits).
MAX_SECONDS = 1_000_000


class _Step:
    """One step's definition (as given; checked for types and ranges)."""

    __slots__ = (
        "name",
        "fn",
        "depends_on",
        "inputs",
        "retries",
        "retry_delay",
        "retry_backoff",
        "retry_max_delay",
        "retry_on",
        "timeout",
        "priority",
        "trigger",
        "map",
        "batch_size",
        "cache",
        "cache_ttl",
    )

    def __init__(
        self,
        name: str,
        fn: "Callable[..., Any]",
        depends_on: "Iterable[str]" = (),
        inputs: "Mapping[str, str] | None" = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        retry_backoff: float = 2.0,
        retry_max_delay: "float | None" = None,
        retry_on: "type[BaseException] | tuple[type[BaseException], ...]" = _RETRY_ON,
        timeout: "float | None" = None,
        priority: "int | None" = None,
        trigger: str = "all_success",
        map: "str | None" = None,
        batch_size: "int | None" = None,
        cache: bool = False,
        cache_ttl: "float | None" = None,
    ) -> None:
        problems: list[str] = []
        where = f"step {name!r}"
        if not callable(fn):
            problems.append(f"{where}: {fn!r} is not callable")
        if isinstance(depends_on, str):
            depends_on = (depends_on,)
        try:
            deps = tuple(depends_on)
        except TypeError:
            problems.append(f"{where}: depends_on must be step names, not {depends_on!r}")
            deps = ()
        for dep in deps:
            if not isinstance(dep, str):
                problems.append(f"{where}: depends_on entry {dep!r} is not a step name")
        binding: dict[str, str] = {}
        if inputs is not None:
            if not hasattr(inputs, "items"):
                problems.append(f"{where}: inputs must map parameter names to step names")
            else:
                for param, source in inputs.items():
                    if not isinstance(param, str) or not isinstance(source, str):
                        problems.append(
                            f"{where}: inputs entry {param!r}: {source!r} must map a "
                            "parameter name to a step name"
                        )
                    else:
                        binding[param] = source
        if not _is_int(retries) or retries < 0:
            problems.append(f"{where}: retries must be an int >= 0, not {retries!r}")
        if not _is_number(retry_delay) or not 0 <= retry_delay <= MAX_SECONDS:
            problems.append(f"{where}: retry_delay must be a number from 0 to {MAX_SECONDS:,}, not {retry_delay!r}")
        if not _is_number(retry_backoff) or retry_backoff < 1:
            problems.append(f"{where}: retry_backoff must be a number >= 1, not {retry_backoff!r}")
        if retry_max_delay is not None and (
            not _is_number(retry_max_delay) or not 0 <= retry_max_delay <= MAX_SECONDS
        ):
            problems.append(
                f"{where}: retry_max_delay must be a number from 0 to {MAX_SECONDS:,} or None, "
                f"not {retry_max_delay!r}"
            )
        if isinstance(retry_on, type):
            retry_on = (retry_on,)
        if retry_on is not _RETRY_ON and (
            not isinstance(retry_on, tuple)
            or not all(isinstance(t, type) and issubclass(t, BaseException) for t in retry_on)
        ):
            problems.append(
                f"{where}: retry_on must be an exception class or a tuple of them, not {retry_on!r}"
            )
            retry_on = (Exception,)
        if timeout is not None and (not _is_number(timeout) or not 0 < timeout <= MAX_SECONDS):
            problems.append(
                f"{where}: timeout must be a number of seconds > 0 and at most {MAX_SECONDS:,} "
                f"(about 11.6 days) or None, not {timeout!r}"
            )
        if priority is not None and (
            not _is_int(priority) or not -(2**31) <= priority < 2**31
        ):
            problems.append(f"{where}: priority must be a 32-bit int or None, not {priority!r}")
        if map is not None and (not isinstance(map, str) or not map):
            problems.append(f"{where}: map must name a parameter, not {map!r}")
        if batch_size is not None:
            if not _is_int(batch_size) or batch_size < 1:
                problems.append(f"{where}: batch_size must be an int >= 1, not {batch_size!r}")
            elif map is None:
                problems.append(f"{where}: batch_size needs map= (the parameter to map over)")
        if not isinstance(cache, bool):
            problems.append(f"{where}: cache must be True or False, not {cache!r}")
        if cache_ttl is not None and (not _is_number(cache_ttl) or cache_ttl <= 0):
            problems.append(f"{where}: cache_ttl must be a number of seconds > 0 or None, not {cache_ttl!r}")
        if trigger not in TRIGGERS:
            problems.append(
                f"{where}: unknown trigger {trigger!r}: expected one of "
                + ", ".join(repr(t) for t in TRIGGERS)
            )
        if problems:
            raise FlowError(*problems)
        self.name = name
        self.fn = fn
        self.depends_on = deps
        self.inputs = binding
        self.retries = int(retries)
        self.retry_delay = float(retry_delay)
        self.retry_backoff = float(retry_backoff)
        self.retry_max_delay = None if retry_max_delay is None else float(retry_max_delay)
        self.retry_on = retry_on
        self.timeout = None if timeout is None else float(timeout)
        self.priority = priority
        self.trigger = trigger
        self.map = map
        self.batch_size = batch_size
        self.cache = cache
        self.cache_ttl = None if cache_ttl is None else float(cache_ttl)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


_FUNCTION = type(_is_int)
_CO_VARKEYWORDS = 0x08
_CO_COROUTINE = 0x80


class _Signature:
    """What binding needs from a function's signature (cached per function)."""

    __slots__ = ("params", "names", "var_kw", "positional_only", "is_async")

    def __init__(self, fn: "Callable[..., Any]") -> None:
        if type(fn) is _FUNCTION and not hasattr(fn, "__wrapped__") and not hasattr(fn, "__signature__"):
            self._from_code(fn)  # the common case, without importing inspect
            return
        import inspect

        sig = inspect.signature(fn)
        params: list[tuple[str, object]] = []
        var_kw = False
        positional_only: list[str] = []
        for p in sig.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                var_kw = True
            elif p.kind is p.VAR_POSITIONAL:
                continue
            elif p.kind is p.POSITIONAL_ONLY:
                if p.default is p.empty:
                    positional_only.append(p.name)
            else:
                params.append((p.name, NO_DEFAULT if p.default is p.empty else p.default))
        self.params = tuple(params)
        self.is_async = inspect.iscoroutinefunction(fn)
        self.names = frozenset(p for p, _ in params)
        self.var_kw = var_kw
        self.positional_only = tuple(positional_only)

    def _from_code(self, fn: "Any") -> None:
        """What :func:`inspect.signature` would say of a plain function."""
        code = fn.__code__
        n_pos = code.co_argcount
        n_posonly = code.co_posonlyargcount
        n_kwonly = code.co_kwonlyargcount
        names = code.co_varnames
        defaults = fn.__defaults__ or ()
        first_default = n_pos - len(defaults)
        kwdefaults = fn.__kwdefaults__ or {}
        params: list[tuple[str, object]] = []
        positional_only: list[str] = []
        for k in range(n_pos):
            default = defaults[k - first_default] if k >= first_default else NO_DEFAULT
            if k < n_posonly:
                if default is NO_DEFAULT:
                    positional_only.append(names[k])
            else:
                params.append((names[k], default))
        for name in names[n_pos : n_pos + n_kwonly]:
            params.append((name, kwdefaults.get(name, NO_DEFAULT)))
        self.params = tuple(params)
        self.is_async = bool(code.co_flags & _CO_COROUTINE)
        self.names = frozenset(p for p, _ in params)
        self.var_kw = bool(code.co_flags & _CO_VARKEYWORDS)
        self.positional_only = tuple(positional_only)


def _check_edges(
    steps: "Sequence[_Step]", bound: "list[list[tuple[str, str]]]", problems: "list[str]"
) -> None:
    """A problem for each parameter whose annotation a dependency's return
    annotation can never satisfy (``-> str`` feeding ``count: int``; a map
    parameter item-wise); see ``_schema.clash`` for what counts as sure."""
    from ._schema import MISSING, annotations, clash, item_type

    by_name = {s.name: s for s in steps}
    hints: dict[int, dict[str, Any]] = {}

    def of(fn: "Callable[..., Any]") -> "dict[str, Any]":
        out = hints.get(id(fn))
        if out is None:
            out = hints[id(fn)] = annotations(fn)
        return out

    for step, pairs in zip(steps, bound):
        if not pairs:
            continue
        wanted_all = of(step.fn)
        if not wanted_all:
            continue
        for param, source in pairs:
            wanted = wanted_all.get(param, MISSING)
            if wanted is MISSING:
                continue
            producer = by_name[source]
            produced = of(producer.fn).get("return", MISSING)
            if producer.map is not None and producer.batch_size is None and produced is not MISSING:
                produced = list[produced]  # type: ignore[valid-type]  # a map step's output: the list of its calls'
            if step.map == param:
                if step.batch_size is not None:
                    continue  # the parameter gets a batch: a list of items
                produced = item_type(produced)
            if clash(produced, wanted):
                what = (f"the items of what step {source!r} returns are" if step.map == param
                        else f"what step {source!r} returns is")
                problems.append(
                    f"step {step.name!r}: parameter {param!r} is annotated {_type_name(wanted)}, but "
                    f"{what} annotated {_type_name(produced)}"
                )


def _type_name(ann: object) -> str:
    if isinstance(ann, type):
        return ann.__qualname__
    return "None" if ann is None else repr(ann).replace("typing.", "")


def _no_signature() -> _Signature:
    """A signature with no parameters, for a function whose own cannot be read."""
    sig = _Signature.__new__(_Signature)
    sig.params, sig.names, sig.var_kw, sig.positional_only, sig.is_async = (), frozenset(), False, (), False
    return sig


class Retry:
    """When a failed attempt is tried again, and after how long.

    Args:
        retries: attempts after the first, at most.
        base: seconds before the first retry; each next one waits
            ``backoff`` times longer, at most ``max_delay`` (jitter: each delay
            is drawn from ``[d/2, d)``).
        on: the exception classes that are retried.
    """

    __slots__ = ("retries", "base", "backoff", "max_delay", "on")

    def __init__(
        self,
        retries: int = 0,
        base: float = 0.0,
        backoff: float = 2.0,
        max_delay: "float | None" = None,
        on: "tuple[type[BaseException], ...]" = _RETRY_ON,
    ) -> None:
        self.retries = retries
        self.base = base
        self.backoff = backoff
        self.max_delay = max_delay
        self.on = on

    def delay(self, exc: BaseException, attempt: int) -> "float | None":
        """Seconds to wait before the attempt after ``attempt`` (1 for the
        first), which raised ``exc``; ``None`` when there is no retry."""
        if attempt > self.retries or not isinstance(exc, self.on):
            return None
        delay = self.base * self.backoff ** (attempt - 1)
        if self.max_delay is not None:
            delay = min(delay, self.max_delay)
        if delay <= 0:
            return 0.0
        import random

        return delay * (0.5 + random.random() / 2)  # equal jitter: [delay/2, delay)

    def __repr__(self) -> str:
        return f"<Retry retries={self.retries} delay={self.base:g} backoff={self.backoff:g}>"


def _retry_policies(steps: "Sequence[_Step]") -> "list[Retry]":
    """One :class:`Retry` per step; steps with the same options share one."""
    shared: dict[tuple[Any, ...], Retry] = {}
    out = []
    for s in steps:
        key = (s.retries, s.retry_delay, s.retry_backoff, s.retry_max_delay, s.retry_on)
        policy = shared.get(key)
        if policy is None:
            policy = shared[key] = Retry(*key)
        out.append(policy)
    return out


class _Plan:
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
        "_types",
    )

    def __init__(self, steps: "Sequence[_Step]") -> None:
        names = {s.name for s in steps}
        problems: list[str] = []
        deps_of: list[tuple[str, ...]] = []
        bound: list[list[tuple[str, str]]] = []  # (param, step)
        inputs_of: list[list[tuple[str, str, object]]] = []
        signatures: dict[int, _Signature] = {}  # flows often reuse one function
        is_async: list[bool] = []
        for step in steps:
            sig = signatures.get(id(step.fn))
            if sig is None:
                try:
                    sig = signatures[id(step.fn)] = _Signature(step.fn)
                except (TypeError, ValueError) as exc:  # some builtins have no signature
                    problems.append(
                        f"step {step.name!r}: cannot read the parameters of "
                        f"{_callable_name(step.fn)} ({exc}); wrap it in a def"
                    )
                    sig = _no_signature()
            pairs, ins = _bind(step, sig, names, problems)
            is_async.append(sig.is_async)
            if step.depends_on:
                seen = dict.fromkeys(source for _, source in pairs)
                for dep in step.depends_on:
                    if dep in names:
                        seen[dep] = None
                    else:
                        problems.append(f"step {step.name!r} depends on {dep!r}, which is not defined")
                deps_of.append(tuple(seen))
            else:
                deps_of.append(tuple(dict.fromkeys(source for _, source in pairs)))
            bound.append(pairs)
            inputs_of.append(ins)
        if not problems:
            _check_edges(steps, bound, problems)
        if problems:
            raise FlowError(*problems)
        self.graph = Graph(((s.name, d) for s, d in zip(steps, deps_of)), kind="step")
        index = self.graph._index
        self.steps = tuple(steps)
        self.fns = [s.fn for s in steps]
        self.dep_kwnames = [tuple(p for p, _ in pairs) for pairs in bound]
        self.argdeps = [tuple(index[src] for _, src in pairs) for pairs in bound]
        self.input_params = [tuple(ins) for ins in inputs_of]
        all_inputs: dict[str, list[int]] = {}
        for i, ins in enumerate(inputs_of):
            for _, name, _ in ins:
                all_inputs.setdefault(name, []).append(i)
        self.inputs = all_inputs
        self.has_priority = any(s.priority is not None for s in steps)
        self.has_triggers = any(s.trigger != "all_success" for s in steps)
        self.maps = [i for i, s in enumerate(steps) if s.map is not None]
        self.configure(self.graph.kernel)
        self.is_async = is_async
        self.retry = _retry_policies(steps)
        self.busy = False
        self._sinks: list[int] | None = None
        self._flags: dict[tuple[bool, bool], bytes] = {}
        self._fingerprint: str | None = None
        self._code: dict[str, str] | None = None
        #: Input name -> the JSON Schema a flow file declares for it (``Flow`` sets it).
        self.declared: dict[str, dict[str, Any]] = {}
        self._types: dict[str, dict[str, Any]] | None = None

    def configure(self, kernel: "Any") -> None:
        """Give ``kernel`` the steps' priorities and trigger rules."""
        if self.has_priority:
            kernel.set_priorities([s.priority or 0 for s in self.steps])
        if self.has_triggers:
            kernel.set_triggers([TRIGGERS.index(s.trigger) for s in self.steps])

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
        flags = bytearray(len(self.steps))
        slow, keep_bit = sched.SLOW, sched.KEEP
        for i, step in enumerate(self.steps):
            if slow_all or step.timeout is not None or step.map is not None or self.is_async[i] or step.cache:
                flags[i] = slow
        for i in range(len(flags)) if keep is None else keep:
            flags[i] |= keep_bit
        out = bytes(flags)
        if usual:
            self._flags[key] = out
        return out

    def input_types(self) -> "dict[str, dict[str, Any]]":
        """Input name -> its JSON Schema: declared by the flow file, else from
        the annotation of the first parameter that takes it (``{}``: any)."""
        if self._types is None:
            from ._schema import MISSING, annotations, item_type, schema_of

            seen: dict[int, dict[str, Any]] = {}
            types: dict[str, dict[str, Any]] = {}
            for i, ins in enumerate(self.input_params):
                for param, name, _ in ins:
                    if name in types and types[name]:
                        continue
                    if name in self.declared:
                        types[name] = self.declared[name]
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
                    else:
                        types[name] = {} if ann is MISSING else schema_of(ann)
            self._types = types
        return self._types

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
        """A digest of the flow's structure: steps, dependencies, bindings, maps, triggers.

        Retry, timeout and priority options and the functions' code are left
        out: changing them does not stop a run from being resumed.
        """
        if self._fingerprint is not None:
            return self._fingerprint
        import json

        from ._compat import sha256

        names = self.graph.names
        shape = [
            [
                s.name,
                [names[j] for j in self.graph._deps[i]],
                list(self.dep_kwnames[i]),
                [[p, n] for p, n, _ in self.input_params[i]],
                s.map,
                s.batch_size,
                s.trigger,
            ]
            for i, s in enumerate(self.steps)
        ]
        self._fingerprint = sha256(json.dumps(shape).encode()).hexdigest()[:32]
        return self._fingerprint

    def graph_json(self) -> str:
        """The structure a store keeps for reports: names and dependency indices."""
        import json

        names = [str(name) for name in self.graph.names]
        return json.dumps({"nodes": names, "deps": [list(d) for d in self.graph._deps]})

    def sinks(self) -> list[int]:
        """Ids of the steps no other step depends on."""
        if self._sinks is None:
            used = bytearray(len(self.steps))
            for deps in self.graph._deps:
                for j in deps:
                    used[j] = 1
            self._sinks = [i for i, u in enumerate(used) if not u]
        return self._sinks


def _bind(
    step: _Step, sig: _Signature, names: "set[str]", problems: "list[str]"
) -> "tuple[list[tuple[str, str]], list[tuple[str, str, object]]]":
    """Bind ``step``'s parameters (see the module docs); report problems."""
    pairs: list[tuple[str, str]] = []  # (param, source step)
    ins: list[tuple[str, str, object]] = []  # (param, input, default)
    mapped = step.inputs
    for p in sig.positional_only:
        problems.append(f"step {step.name!r}: positional-only parameter {p!r} cannot be bound by name")
    if step.map is not None and step.map not in sig.names:
        problems.append(
            f"step {step.name!r}: map={step.map!r} names no parameter of {_callable_name(step.fn)}"
        )
    for param, source in mapped.items():
        if source not in names:
            problems.append(
                f"step {step.name!r} maps parameter {param!r} to step {source!r}, which is not defined"
            )
        elif param not in sig.names and not sig.var_kw:
            problems.append(
                f"step {step.name!r}: inputs names {param!r}, which is not a parameter of "
                f"{_callable_name(step.fn)}"
            )
    for param, default in sig.params:
        if param in mapped:
            if mapped[param] in names:
                pairs.append((param, mapped[param]))
        elif param in names:
            if param == step.name:
                problems.append(
                    f"step {step.name!r}: parameter {param!r} names the step itself; "
                    "rename it or map it with inputs="
                )
            else:
                pairs.append((param, param))
        else:
            ins.append((param, param, default))
    if sig.var_kw:
        for param, source in mapped.items():
            if param not in sig.names and source in names:
                pairs.append((param, source))
        if step.depends_on:
            taken = {p for p, _ in pairs}
            taken.update(p for p, _, _ in ins)
            for dep in step.depends_on:
                if dep in names and dep not in taken and dep != step.name:
                    pairs.append((dep, dep))
                    taken.add(dep)
    return pairs, ins


def _callable_name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


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
    import marshal

    from ._compat import sha256

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
    import json

    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        import pickle

        try:
            return pickle.dumps(value, protocol=4)
        except Exception:
            return repr(value).encode()
