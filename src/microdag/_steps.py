"""Step definitions: their options, checked once and shared, and a flow's steps as columns.

A step's definition is checked as it is added (names, callables, option
values): :class:`_Options` holds the twelve options of ``Flow.add`` (steps
given equal options share one object: ``_Options.shared``), :meth:`_Step.check`
and :meth:`_Step.check_many` check the rest, and :class:`_Steps` keeps a
flow's steps as one list per field, a step's id being its index in them
(a million steps are a few lists, not a million objects).  :class:`_Step` is
one step as code reads it.  What needs the whole flow is ``_plan``'s.
"""

from itertools import repeat
from operator import attrgetter

from ._compat import sched
from ._errors import FlowError
from ._nogc import NoGC

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from typing import Any

__all__ = ["MAX_SECONDS", "TRIGGERS", "_DEFAULTS", "_NO_BINDING", "_RETRY_ON", "_Options", "_Same",
           "_Step", "_Steps"]

#: Trigger rule names, in the kernel's numbering.
TRIGGERS = ("all_success", "all_done", "none_failed")
_RETRY_ON: "tuple[type[BaseException], ...]" = (Exception,)
#: The longest timeout or retry delay, in seconds (about 11.6 days): finite, and
#: within what every backend can wait for (``poll`` takes milliseconds in 32 bits).
MAX_SECONDS = 1_000_000
_LONGEST = f"at most {MAX_SECONDS:,} s (about 11.6 days)"


def _seconds(value: "Any", zero: bool = True) -> bool:
    """Whether ``value`` is a time a step can wait: a number from 0 (or above 0,
    without ``zero``) to :data:`MAX_SECONDS`; never infinite or NaN."""
    return _is_number(value) and (0 <= value if zero else 0 < value) and value <= MAX_SECONDS


def _uses(where: str, uses: "Any", problems: "list[str]") -> "tuple[tuple[str, int], ...]":
    """A step's ``uses`` (a pool or rate name for one unit, or name -> units)
    as ``(name, units)`` pairs by name; a problem noted when it is neither."""
    if uses is None:
        return ()
    if isinstance(uses, str):
        uses = {uses: 1}
    if not hasattr(uses, "items") or not all(
            isinstance(k, str) and k and _is_int(v) and v >= 1 for k, v in uses.items()):
        problems.append(f"{where}: uses must name a pool or rate, or map names to units (ints >= 1), "
                        f"not {uses!r}")
        return ()
    return tuple(sorted((k, int(v)) for k, v in uses.items()))


class _Options:
    """A step's options, checked once and shared by every step given the same
    ones (a flow of a million steps with one set of options holds one).

    Raises:
        FlowError: an invalid value (every problem listed, naming the step
            ``where`` describes).
    """

    __slots__ = ("retries", "retry_delay", "retry_backoff", "retry_max_delay", "retry_on", "timeout",
                 "priority", "trigger", "map", "batch_size", "cache", "cache_ttl", "key", "uses")

    #: The default options (set below); a flow shares at most this many other sets.
    DEFAULT: "_Options"
    SHARED = 256

    def __init__(
        self,
        where: str,
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
        key: "str | Callable[[Any], Any] | None" = None,
        uses: "str | Mapping[str, int] | None" = None,
    ) -> None:
        problems: list[str] = []
        if not _is_int(retries) or retries < 0:
            problems.append(f"{where}: retries must be an int >= 0, not {retries!r}")
        if not _seconds(retry_delay):
            problems.append(f"{where}: retry_delay must be a number of seconds >= 0 and {_LONGEST}, "
                            f"not {retry_delay!r}")
        if not _is_number(retry_backoff) or retry_backoff < 1:
            problems.append(f"{where}: retry_backoff must be a number >= 1, not {retry_backoff!r}")
        if retry_max_delay is not None and not _seconds(retry_max_delay):
            problems.append(
                f"{where}: retry_max_delay must be a number of seconds >= 0 and {_LONGEST} or None, "
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
        if timeout is not None and not _seconds(timeout, zero=False):
            problems.append(f"{where}: timeout must be a number of seconds > 0 and {_LONGEST} or None, not {timeout!r}")
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
        if key is not None:
            if not (isinstance(key, str) and key) and not callable(key):
                problems.append(f"{where}: key must name an attribute of the items or be a callable "
                                f"item -> key, not {key!r}")
            elif map is None:
                problems.append(f"{where}: key needs map= (the parameter whose items it names)")
            elif batch_size is not None:
                problems.append(f"{where}: key goes with map= of one item a call, not with batch_size "
                                "(a batch is recorded as one unit, so its items could not be kept by key)")
        if not isinstance(cache, bool):
            problems.append(f"{where}: cache must be True or False, not {cache!r}")
        if cache_ttl is not None and (not _is_number(cache_ttl) or cache_ttl <= 0):
            problems.append(f"{where}: cache_ttl must be a number of seconds > 0 or None, not {cache_ttl!r}")
        if trigger not in TRIGGERS:
            problems.append(
                f"{where}: unknown trigger {trigger!r}: expected one of "
                + ", ".join(repr(t) for t in TRIGGERS)
            )
        held = _uses(where, uses, problems)
        if problems:
            raise FlowError(*problems)
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
        self.key = key
        #: ``(pool or rate name, units)`` pairs, by name; ``()``: none.
        self.uses = held

    @classmethod
    def shared(cls, known: "dict[tuple[Any, ...], _Options]", name: str, options: "tuple[Any, ...]") -> "_Options":
        """The checked ``options`` of step ``name``, the same object as for the
        steps given equal ones before (``known``: a flow's; the first step given
        them checks them; a flow shares at most :attr:`SHARED` sets).

        Raises:
            FlowError: an invalid value (naming step ``name``).
        """
        # Types count where equal values of two types are not equally valid
        # (``True == 1``, but ``retries=True`` is refused).
        key = options + tuple(map(type, options))
        try:
            opts = known.get(key)
            hashable = True
        except TypeError:  # an unhashable value: checked, not shared
            opts, hashable = None, False
        if opts is None:
            opts = cls(f"step {name!r}", *options)
            if hashable and len(known) < cls.SHARED:
                known[key] = opts
        return opts


#: The inputs of a step that binds none by name (shared; never changed).
_NO_BINDING: "dict[str, str]" = {}


class _Step:
    """One step's definition, as code reads it: its name, function, declared
    dependencies, parameter bindings and (shared) :class:`_Options`, whose
    fields it shows as its own (``step.retries``...).  A flow keeps its steps
    as columns (:class:`_Steps`); indexing them makes one of these."""

    __slots__ = ("name", "fn", "depends_on", "inputs", "opts")

    if TYPE_CHECKING:
        retries: int
        retry_delay: float
        retry_backoff: float
        retry_max_delay: float | None
        retry_on: tuple[type[BaseException], ...]
        timeout: float | None
        priority: int | None
        trigger: str
        map: str | None
        batch_size: int | None
        cache: bool
        cache_ttl: float | None
        key: "str | Callable[[Any], Any] | None"
        uses: tuple[tuple[str, int], ...]

    def __init__(
        self, name: str, fn: "Callable[..., Any]", depends_on: "tuple[str, ...]", inputs: "dict[str, str]",
        opts: _Options,
    ) -> None:
        self.name = name
        self.fn = fn
        self.depends_on = depends_on
        self.inputs = inputs
        self.opts = opts

    def __repr__(self) -> str:
        return f"<step {self.name!r}>"

    @staticmethod
    def check(
        name: str, fn: "Callable[..., Any]", depends_on: "Iterable[str]", inputs: "Mapping[str, str] | None"
    ) -> "tuple[tuple[str, ...], dict[str, str]]":
        """Step ``name``'s ``depends_on`` (a tuple, in order; a name given
        twice is still there twice: ``Flow.add`` and :meth:`_Steps.extend`
        keep it once) and ``inputs`` (a dict; the shared empty one when
        none), checked.

        Raises:
            FlowError: ``fn`` is not callable, or an entry is invalid (each listed).
        """
        if type(depends_on) is tuple or type(depends_on) is list:
            deps = tuple(depends_on)
            plain = inputs is None and callable(fn)
            for dep in deps:
                if type(dep) is not str:
                    plain = False
                    break
        else:
            plain = False
        if plain:
            binding = _NO_BINDING
        else:
            deps, binding = _Step._check(name, fn, depends_on, inputs)
        return deps, binding

    @staticmethod
    def _check(
        name: str, fn: "Callable[..., Any]", depends_on: "Iterable[str]", inputs: "Mapping[str, str] | None"
    ) -> "tuple[tuple[str, ...], dict[str, str]]":
        """:meth:`check`'s slow path: anything but a list or tuple of names
        and no ``inputs``."""
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
        if problems:
            raise FlowError(*problems)
        return deps, binding or _NO_BINDING

    @staticmethod
    def check_many(
        names: "list[str]", fn: "Callable[..., Any]", depends_on: "list[Any] | None", inputs: "list[Any] | None"
    ) -> "tuple[list[tuple[str, ...]], list[dict[str, str]] | None]":
        """:meth:`check` of the steps ``names`` of ``fn``, with
        ``depends_on[k]`` and ``inputs[k]`` (``Flow.add_many``): a list at a
        time where the entries are plain (lists or tuples of names, no
        ``inputs``), one by one where not.  Returns the dependencies (tuples;
        a name may still be there twice, which :meth:`_Steps.extend` mends)
        and the inputs (``None``: none) per step.

        Raises:
            FlowError: ``fn`` is not callable, or an entry is invalid (each listed).
        """
        if not callable(fn):
            raise FlowError(f"add_many: {fn!r} is not callable (the steps {names[0]!r}...)")
        n = len(names)
        with NoGC():
            if depends_on is None:
                deps: list[tuple[str, ...]] = [()] * n
            else:
                deps = sched.name_tuples(depends_on) or []  # (None: not lists or tuples of names)
            if inputs is not None and inputs.count(None) == n:
                inputs = None
            if deps and inputs is None:
                return deps, None  # (a name given twice in an entry is dropped by _Steps.extend)
            problems: list[str] = []
            deps, bindings = [], []
            for k, name in enumerate(names):  # one by one, each with its checks
                try:
                    d, b = _Step.check(name, fn, () if depends_on is None else depends_on[k],
                                       None if inputs is None else inputs[k])
                except FlowError as exc:
                    problems.extend(exc.problems)
                else:
                    deps.append(d)
                    bindings.append(b)
            if problems:
                raise FlowError(*problems)
            return deps, bindings


class _Steps:
    """A flow's steps as columns, one list per field (ids are list indexes):
    ``names``, ``fns``, ``deps`` (tuples of names, each once), ``inputs``
    (dicts; the shared empty one when none), ``opts`` (:class:`_Options`,
    shared) and ``ids``: the ids of ``deps``, found when the step was added
    (``None`` when one was not defined yet; the plan then looks them up).
    A plan keeps the flow's lists, which the flow copies before it changes
    them again.  ``steps[i]`` makes a :class:`_Step` (a view: equal fields,
    a new object)."""

    __slots__ = ("names", "fns", "deps", "inputs", "opts", "ids")

    def __init__(
        self, names: "list[str]", fns: "list[Callable[..., Any]]", deps: "list[tuple[str, ...]]",
        inputs: "list[dict[str, str]]", opts: "list[_Options]", ids: "list[tuple[int, ...] | None]",
    ) -> None:
        self.names = names
        self.fns = fns
        self.deps = deps
        self.inputs = inputs
        self.opts = opts
        self.ids = ids

    def __len__(self) -> int:
        return len(self.fns)

    def copy(self) -> "_Steps":
        """New lists with the same steps."""
        return _Steps(list(self.names), list(self.fns), list(self.deps), list(self.inputs), list(self.opts),
                      list(self.ids))

    def extend(
        self, index: "dict[str, int]", flow: str, names: "list[str]", fn: "Callable[..., Any]",
        deps: "list[tuple[str, ...]]", inputs: "list[dict[str, str]] | None", opts: _Options,
    ) -> None:
        """Add the checked steps ``names`` of ``fn`` and ``opts`` (``deps``,
        ``inputs``: one per name; ``None``: no inputs), and their ids to
        ``index`` (the flow's name index, here extended in place).  A
        dependency named twice in ``deps[k]`` is kept once (``deps`` is
        changed in place).

        Raises:
            FlowError: a name is empty, given twice or taken (nothing is added).
        """
        first = len(self.fns)
        n = len(names)
        try:
            with NoGC():
                ids, again = sched.number(index, first, names, deps)
            if "" in index:
                raise KeyError("")
        except BaseException as exc:  # a name given twice, taken or empty (or anything else): undo
            index.clear()
            index.update(zip(self.names, range(first)))
            if isinstance(exc, KeyError):
                raise FlowError(*_name_problems(names, self.names, flow)) from None
            raise
        for k in again:
            d = deps[k]
            if len(set(d)) != len(d):
                deps[k] = tuple(dict.fromkeys(d))
                found = ids[k]
                ids[k] = None if found is None else tuple(dict.fromkeys(found))
        self.names.extend(names)
        self.fns.extend(repeat(fn, n))
        self.deps.extend(deps)
        self.inputs.extend(repeat(_NO_BINDING, n) if inputs is None else inputs)
        self.opts.extend(repeat(opts, n))
        self.ids.extend(ids)

    def __getitem__(self, i: int) -> _Step:
        return _Step(self.names[i], self.fns[i], self.deps[i], self.inputs[i], self.opts[i])

    def __iter__(self) -> "Iterator[_Step]":
        return map(_Step, self.names, self.fns, self.deps, self.inputs, self.opts)


def _name_problems(names: "list[str]", taken: "list[str]", flow: str) -> "list[str]":
    """What is wrong with the new step ``names`` of flow ``flow``, whose steps are ``taken``."""
    problems = ["a step name must be a non-empty string, not ''"] if "" in names else []
    counts: dict[str, int] = {}
    for x in names:
        counts[x] = counts.get(x, 0) + 1
    problems.extend(f"step {x!r} is given more than once to add_many" for x, c in counts.items() if c > 1 and x)
    problems.extend(f"step {x!r} is defined more than once in flow {flow!r}" for x in set(taken) & counts.keys())
    return problems


class _Same:
    """A read-only list of ``n`` times one ``value``: a per-step column that
    is the same for every step (8 bytes a step less than a list)."""

    __slots__ = ("value", "n")

    def __init__(self, value: "Any", n: int) -> None:
        self.value = value
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> "Any":
        if -self.n <= i < self.n:
            return self.value
        raise IndexError(i)

    def __iter__(self) -> "Iterator[Any]":
        return repeat(self.value, self.n)

    def __contains__(self, value: object) -> bool:
        return self.n > 0 and self.value == value


for _option in _Options.__slots__:  # step.retries is step.opts.retries...
    setattr(_Step, _option, property(attrgetter("opts." + _option)))
del _option


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value



#: The options' defaults, in ``_Options``' order (``Flow.add`` compares with them first).
_DEFAULTS = (0, 0.0, 2.0, None, _RETRY_ON, None, None, "all_success", None, None, False, None, None, None)
_Options.DEFAULT = _Options("the defaults", *_DEFAULTS)
