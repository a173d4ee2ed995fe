"""Durable run state: one small interface, three stores.

A store keeps, per run, its id, flow name, the fingerprint of the flow's
structure, its inputs, status and timestamps; per task (a step, or one item of
a map step) its status, attempts, timings, error (type, message, traceback)
and encoded output.  The runner talks to a store only through :class:`Store`
and never knows which one it is.

- :class:`MemoryStore`: in this process only (tests, warm serverless
  functions);
- :class:`JSONStore`: a directory, one subdirectory per run, every file
  written atomically (temporary file, fsync, ``os.replace``);
- :class:`SQLiteStore`: one SQLite file (WAL, a busy timeout, a schema-version
  table): the reference;
- :class:`PostgresStore`: a PostgreSQL database that several machines and
  flows share (the ``postgres`` extra: psycopg, imported when one is opened).
  The two SQL stores share what they do with their tables (``_sql``).

Outputs are encoded by the store's codec: ``"json"`` (the default: JSON
values only, so a resumed run sees exactly what the first one produced) or
``"pickle"`` (any picklable value; trusted data only, since unpickling runs
code).  Encoded outputs of 64 KiB and more are kept once each, by their
SHA-256, beside the run records.
"""

from ._base import RunInfo, Store, StoreError, TaskRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._json import JSONStore
    from ._memory import MemoryStore
    from ._postgres import PostgresStore
    from ._sqlite import SQLiteStore

__all__ = [
    "JSONStore",
    "MemoryStore",
    "PostgresStore",
    "RunInfo",
    "SQLiteStore",
    "Store",
    "StoreError",
    "TaskRecord",
    "open_store",
]


def open_store(spec: "str | Store", *, codec: "str | None" = None, readonly: bool = False) -> Store:
    """A store from a spec: a :class:`Store` (returned as is), ``"memory"``,
    ``"json:DIR"``, ``"sqlite:PATH"``, a path ending in ``.db``,
    ``.sqlite`` or ``.sqlite3``, or a PostgreSQL URL
    (``postgresql://user@host:port/db`` or ``postgres://...``); any of them
    may end in ``?codec=json`` or ``?codec=pickle`` (as ``codec=`` does; in a
    URL, ``codec=`` may be one of its parameters).  With ``readonly``, an SQLite store
    is opened for reading only (where its file or folder cannot be written,
    it is anyway).

    Raises:
        ValueError: the spec names no kind of store, or an unknown codec.
        StoreError: the file or directory cannot be used as a store, or does
            not keep the codec asked for.
    """
    if isinstance(spec, Store):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"a store spec is a string or a Store, not {type(spec).__name__}")
    spec, codec = _codec_of(spec, codec)
    if spec == "memory":
        from ._memory import MemoryStore  # (only the store asked for loads)

        return MemoryStore(codec=codec)
    if spec.startswith("json:"):
        from ._json import JSONStore  # (only the store asked for loads)

        return JSONStore(spec[5:], codec=codec)
    if spec.startswith(_POSTGRES):
        from ._postgres import PostgresStore  # (only the store asked for loads: psycopg with it)

        return PostgresStore(spec, codec=codec)
    from ._sqlite import SQLiteStore  # (only the store asked for loads: sqlite3 with it)

    if spec.startswith("sqlite:"):
        return SQLiteStore(spec[7:], codec=codec, readonly=readonly)
    if spec.endswith((".db", ".sqlite", ".sqlite3")):
        return SQLiteStore(spec, codec=codec, readonly=readonly)
    raise ValueError(
        f"unknown store spec {spec!r}: expected 'memory', 'json:DIR', 'sqlite:PATH', "
        "a path ending in .db, .sqlite or .sqlite3, or 'postgresql://user@host:port/db' "
        "(any of them may end in ?codec=json or ?codec=pickle)"
    )


def spec_parts(spec: str) -> "tuple[str, str, str]":
    """A store spec cut into its scheme (``"json:"``, ``"sqlite:"`` or ``""``),
    the path it names (``""`` for ``"memory"`` and a server's URL, which is
    all scheme) and its ``?codec=`` suffix: ``scheme + path + suffix == spec``."""
    cut = spec.rfind("?codec=")
    base, suffix = (spec, "") if cut < 0 else (spec[:cut], spec[cut:])
    if base == "memory":
        return "", "", suffix
    if base.startswith(_POSTGRES):
        return base, "", suffix
    scheme = next((s for s in ("json:", "sqlite:") if base.startswith(s)), "")
    return scheme, base[len(scheme):], suffix


def _codec_of(spec: str, codec: "str | None") -> "tuple[str, str | None]":
    """``spec`` without its ``?codec=NAME`` suffix (in a PostgreSQL URL: its
    ``codec=NAME`` parameter), and the codec it asks for."""
    base, mark, query = spec.rpartition("?")
    if mark and spec.startswith(_POSTGRES):  # the URL's other parameters are the server's
        params = query.split("&")
        named_ones = [p for p in params if p.startswith("codec=")]
        if not named_ones:
            return spec, codec
        rest = "&".join(p for p in params if not p.startswith("codec="))
        base, query = base + ("?" + rest if rest else ""), named_ones[-1]
    elif not mark or not query.startswith("codec="):
        return spec, codec
    named = query[len("codec="):]
    if named not in ("json", "pickle"):
        raise ValueError(f"unknown codec {named!r} in store spec {spec!r}: expected 'json' or 'pickle'")
    if codec is not None and codec != named:
        raise ValueError(f"store spec {spec!r} asks for codec {named!r}, but codec {codec!r} was given")
    return base, named


#: How a PostgreSQL store's spec begins (a libpq URL).
_POSTGRES = ("postgresql://", "postgres://")

# The stores load on first use: a run needs one of them at most.
_STORES = {"JSONStore": "_json", "MemoryStore": "_memory", "PostgresStore": "_postgres", "SQLiteStore": "_sqlite"}


def __getattr__(name: str) -> object:
    module = _STORES.get(name)
    if module is None:
        raise AttributeError(f"module 'microdag.stores' has no attribute {name!r}")
    value = getattr(__import__(f"{__name__}.{module}", fromlist=[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
