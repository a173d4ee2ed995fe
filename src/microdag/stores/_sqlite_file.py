"""Opening an SQLite store's file: checks, the schema, and reading where it cannot be written.

:func:`connect` opens ``path`` and returns the connection and whether it is
read-only.  Before it changes anything it checks the file: a file that is not
SQLite, an SQLite database of another application, or a newer schema is
refused with :class:`StoreError` and left as it was.  A new file gets the
tables below and ``meta`` rows (``app = microdag``, ``schema``); an older
file gets the tables it lacks.  The database runs in WAL mode with
``synchronous=FULL``.

Where the file or its folder cannot be written (a read-only mount, another
user's store), or when asked to, the file is opened for reading only
(``mode=ro``), and where SQLite cannot even make the WAL's index file there,
as an immutable file; writing then fails with :class:`StoreError`.
"""

import os
import time

from .._errors import StoreError
from ._codec import settle_codec

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3

__all__ = ["SCHEMA", "connect"]

SCHEMA = 1

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, flow TEXT NOT NULL, fingerprint TEXT NOT NULL, inputs BLOB NOT NULL,
    status TEXT NOT NULL, started REAL NOT NULL, finished REAL, source TEXT, code TEXT,
    limits TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_flow ON runs (flow, started);
CREATE TABLE IF NOT EXISTS tasks (
    run_id TEXT NOT NULL, step TEXT NOT NULL, item INTEGER NOT NULL, seq INTEGER NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL, started REAL, finished REAL,
    error_type TEXT, error_message TEXT, traceback TEXT, output BLOB, output_ref TEXT, key TEXT, waited REAL,
    PRIMARY KEY (run_id, step, item)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, output BLOB, output_ref TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS owners (run_id TEXT PRIMARY KEY, owner TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS graphs (fingerprint TEXT PRIMARY KEY, graph TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL, step TEXT NOT NULL, item INTEGER NOT NULL, attempt INTEGER NOT NULL,
    started REAL NOT NULL, finished REAL NOT NULL, error_type TEXT NOT NULL, error_message TEXT NOT NULL,
    PRIMARY KEY (run_id, step, item, attempt)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS logs (
    run_id TEXT NOT NULL, step TEXT NOT NULL, item INTEGER NOT NULL, attempt INTEGER NOT NULL,
    text TEXT NOT NULL, PRIMARY KEY (run_id, step, item, attempt)
) WITHOUT ROWID;
"""


def connect(
    path: str, timeout: float, readonly: bool, codec: "str | None"
) -> "tuple[sqlite3.Connection, bool, str]":
    """The store file ``path``, checked (and made or upgraded unless read-only):
    ``(connection, read-only, codec)``.  A new store records ``codec`` (default
    ``"json"``); an existing one is opened with the codec it records (see
    ``_codec.settle_codec``).

    Raises:
        StoreError: it is not a usable microdag store, or ``codec`` is not its codec.
    """
    import sqlite3  # (import time: sqlite3 loads on first use)

    try:
        db = None
        if not readonly:
            try:
                db, is_readonly = _open(path, timeout, codec or "json"), False
            except sqlite3.OperationalError as exc:
                if not os.path.exists(path) or not _cannot_write(exc):
                    raise
        if db is None:
            db, is_readonly = _open_readonly(path, timeout), True
        try:
            recorded = dict(db.execute("SELECT key, value FROM meta").fetchall()).get("codec")
            return db, is_readonly, settle_codec(codec, recorded, path)
        except BaseException:
            db.close()
            raise
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path!r} is not a usable microdag store: {exc}") from None


def _cannot_write(exc: BaseException) -> bool:
    """Whether an SQLite error says the file or its folder cannot be written."""
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def _open(path: str, timeout: float, codec: str) -> "sqlite3.Connection":
    import sqlite3  # (import time: sqlite3 loads on first use)

    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        deadline = time.monotonic() + timeout
        while True:  # another process may be creating the file, or switching it to WAL
            try:
                _check_and_create(db, path, codec)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        db.execute("SELECT COUNT(*) FROM runs").fetchone()
    except BaseException:
        db.close()
        raise
    return db


def _open_readonly(path: str, timeout: float) -> "sqlite3.Connection":
    """Open for reading only (``mode=ro``); in a folder where SQLite cannot
    make the WAL's index file, as an immutable file (no one may be writing)."""
    import sqlite3  # (import time: sqlite3 loads on first use)
    from urllib.parse import quote  # (import time: urllib.parse loads on first use)

    if not os.path.exists(path):
        raise StoreError(f"no store at {path!r}")
    uri = "file:" + quote(os.path.abspath(path))
    for mode in ("?mode=ro", "?immutable=1"):
        try:
            db = sqlite3.connect(uri + mode, uri=True, timeout=timeout, isolation_level=None,
                                 check_same_thread=False)
        except sqlite3.OperationalError as exc:
            if mode == "?immutable=1" or not _cannot_write(exc):
                raise
            continue
        try:
            if not _check_meta(db, path):
                raise StoreError(f"{path!r} is not a microdag store (it has no tables)")
            db.execute("SELECT COUNT(*) FROM runs").fetchone()
            return db
        except sqlite3.OperationalError as exc:
            db.close()
            if mode == "?immutable=1" or not _cannot_write(exc):
                raise
    raise AssertionError("unreachable")


def _check_meta(db: "sqlite3.Connection", path: str) -> "set[str]":
    """The tables of the file, after checking it is a microdag store of a schema this reads."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables:
        if "meta" not in tables:
            raise StoreError(f"{path!r} is an SQLite database, but not a microdag store")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("app") != "microdag":
            raise StoreError(f"{path!r} is an SQLite database, but not a microdag store")
        schema = int(meta.get("schema", "0"))
        if schema > SCHEMA:
            raise StoreError(
                f"{path!r} has store schema {schema}, newer than this microdag's "
                f"({SCHEMA}): upgrade microdag to use it"
            )
    return tables


def _check_and_create(db: "sqlite3.Connection", path: str, codec: str) -> None:
    import sqlite3  # (import time: sqlite3 loads on first use)

    tables = _check_meta(db, path)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    if tables and not {"cache", "owners", "logs", "graphs", "attempts"} <= tables:  # made before these existed
        db.executescript(_TABLES)
    if tables:  # columns added since: made where missing (a change of the schema, not of the data)
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        for column in ("source", "code", "limits"):  # (limits: a run's pools and rates)
            if column not in columns:
                db.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")
        columns = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
        if "key" not in columns:  # a keyed map item's key
            db.execute("ALTER TABLE tasks ADD COLUMN key TEXT")
        if "waited" not in columns:  # the seconds a task waited for its pools and rates
            db.execute("ALTER TABLE tasks ADD COLUMN waited REAL")
    if not tables:
        try:
            db.executescript(
                "BEGIN IMMEDIATE;" + _TABLES
                + f"INSERT OR IGNORE INTO meta VALUES ('app', 'microdag'), ('schema', '{SCHEMA}'),"
                + f" ('codec', '{codec}');"
                + "COMMIT;"
            )
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot create store {path!r}: {exc}") from None
