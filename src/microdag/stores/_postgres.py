"""The PostgreSQL store: runs kept in a database that several machines share.

The tables are the SQLite store's (``_sqlite_file``), in the schema
``microdag`` of the database, with PostgreSQL's types (``BYTEA`` for encoded
data, ``DOUBLE PRECISION`` for times), plus ``blobs``: encoded outputs of
64 KiB and more, once each by their SHA-256, written in the transaction that
commits the first record naming them.  What the store does with the tables
(group commit, rows read back as records, prune) is ``_sql``'s; this module
connects, makes the schema, keeps blobs and holds claims.

- **Schema**: made on first use in one transaction under
  ``pg_advisory_xact_lock`` (two processes opening a new database at once
  both succeed), versioned in ``meta`` (``app``, ``schema``, ``codec``); a
  newer schema is a :class:`StoreError`.
- **Text**: PostgreSQL's ``TEXT`` holds neither NUL nor lone surrogates
  (file names that are not UTF-8); such a value, or one that starts with
  :data:`MARK`, is kept as :data:`MARK` and the hex of its UTF-8 bytes
  (surrogates kept), and read back whole (:func:`_pt`, :func:`_ps`).
- **Claims**: a run's claim is the ``owners`` row (its token, for ``owner``)
  and a session advisory lock held by the claiming store's connection while
  it owns the run.  The lock ends with the connection, so a process that died
  on any machine lets go of its runs without a clock or a pid; a claim finds
  a run free when it can take the lock.  (The PID check the file stores use
  cannot see other machines.)
- **Connections**: one per store object (autocommit; transactions are
  explicit), guarded by the store's lock.  A dropped connection (a server
  restart) is reconnected once, for up to ``timeout`` seconds, and the
  statement or transaction run again (every write is an upsert); then a
  :class:`StoreError` names the server, never its password.

psycopg (the ``postgres`` extra) is imported here only: opening a
``postgresql://`` spec is the first use.
"""

import time

from .._errors import StoreError
from .._records import check_run_id
from ._codec import settle_codec
from ._files import checksum, new_owner
from ._sql import OWNERS, TASK_UPDATES, SQLStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .._records import RunInfo
    from ._postgres_queue import PostgresQueue

__all__ = ["SCHEMA", "PostgresStore"]

SCHEMA = 1
#: The prefix of a text value kept as hex (see the module docs).
MARK = "\x7f"

_TABLES = """
CREATE SCHEMA IF NOT EXISTS microdag;
CREATE TABLE IF NOT EXISTS microdag.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS microdag.runs (
    id TEXT PRIMARY KEY, flow TEXT NOT NULL, fingerprint TEXT NOT NULL, inputs BYTEA NOT NULL,
    status TEXT NOT NULL, started DOUBLE PRECISION NOT NULL, finished DOUBLE PRECISION, source TEXT, code TEXT,
    limits TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_flow ON microdag.runs (flow, started);
CREATE TABLE IF NOT EXISTS microdag.tasks (
    run_id TEXT NOT NULL, step TEXT NOT NULL, item INTEGER NOT NULL, seq BIGINT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL, started DOUBLE PRECISION, finished DOUBLE PRECISION,
    error_type TEXT, error_message TEXT, traceback TEXT, output BYTEA, output_ref TEXT, key TEXT,
    waited DOUBLE PRECISION,
    PRIMARY KEY (run_id, step, item)
);
CREATE INDEX IF NOT EXISTS tasks_by_seq ON microdag.tasks (run_id, seq);
CREATE INDEX IF NOT EXISTS tasks_by_ref ON microdag.tasks (output_ref) WHERE output_ref IS NOT NULL;
CREATE TABLE IF NOT EXISTS microdag.cache (
    key TEXT PRIMARY KEY, output BYTEA, output_ref TEXT, created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS microdag.owners (run_id TEXT PRIMARY KEY, owner TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS microdag.graphs (fingerprint TEXT PRIMARY KEY, graph TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS microdag.attempts (
    run_id TEXT NOT NULL, step TEXT NOT NULL, item INTEGER NOT NULL, attempt INTEGER NOT NULL,
    started DOUBLE PRECISION NOT NULL, finished DOUBLE PRECISION NOT NULL, error_type TEXT NOT NULL,
    error_message TEXT NOT NULL, PRIMARY KEY (run_id, step, item, attempt)
);
CREATE TABLE IF NOT EXISTS microdag.logs (
    run_id TEXT NOT NULL, step TEXT NOT NULL, item INTEGER NOT NULL, attempt INTEGER NOT NULL,
    text TEXT NOT NULL, PRIMARY KEY (run_id, step, item, attempt)
);
CREATE TABLE IF NOT EXISTS microdag.blobs (sha TEXT PRIMARY KEY, data BYTEA NOT NULL);
"""

#: A group of task records in one statement: a column array each, sent in
#: binary (a row per record costs the server a statement each; arrays as
#: text cost the client a quoting pass per value).
_UPSERT_COLUMNS = f"""
INSERT INTO tasks (run_id, step, item, seq, status, attempts, started, finished,
                   error_type, error_message, traceback, output, output_ref, key, waited)
SELECT * FROM unnest(%b::text[], %b::text[], %b::integer[], %b::bigint[], %b::text[], %b::integer[],
                     %b::float8[], %b::float8[], %b::text[], %b::text[], %b::text[], %b::bytea[], %b::text[],
                     %b::text[], %b::float8[])
{TASK_UPDATES}
"""

# Advisory lock keys: one namespace, hashed by the server.
_KEY = "hashtextextended(?, 0)"


def _pt(value: "Any") -> "Any":
    """A value to bind as text (see the module docs)."""
    if value.__class__ is str and ("\x00" in value or value[:1] == MARK or not value.isascii()):
        try:
            if "\x00" not in value and value[:1] != MARK:
                value.encode()
                return value
        except UnicodeEncodeError:
            pass
        return MARK + value.encode("utf-8", "surrogatepass").hex()
    return value


def _ps(value: "Any") -> "Any":
    """A text column's value as read: the ``str`` that :func:`_pt` kept."""
    if value.__class__ is str and value[:1] == MARK:
        try:
            return bytes.fromhex(value[1:]).decode("utf-8", "surrogatepass")
        except ValueError:
            return value
    return value


def _ptexts(column: "tuple[Any, ...]") -> "tuple[Any, ...]":
    """A text column as read (:func:`_ps` of each value, when one needs it)."""
    if any(v.__class__ is not str or v[:1] == MARK for v in column if v is not None):
        return tuple(map(_ps, column))
    return column


def public_name(conninfo: str) -> str:
    """``postgresql://user@host:port/db`` for a conninfo or URL: what messages
    name (never the password)."""
    from psycopg.conninfo import conninfo_to_dict  # (the postgres extra)

    try:
        parts = conninfo_to_dict(conninfo)
    except Exception:
        return "postgresql://?"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = str(parts.get("host") or "")
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


class _Connection:
    """A psycopg connection with :mod:`sqlite3`'s ``execute``/``executemany``:
    ``?`` marks parameters, as in ``_sql``'s SQL text."""

    def __init__(self, conninfo: str, timeout: float) -> None:
        import psycopg  # (the postgres extra: imported when a PostgreSQL store is opened)

        self.conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=max(1, int(timeout)))
        self.conn.execute("SET search_path TO microdag")
        self._sql: dict[str, str] = {}

    def _q(self, sql: str) -> str:
        q = self._sql.get(sql)
        if q is None:
            q = self._sql[sql] = sql.replace("?", "%s")
        return q

    def execute(self, sql: str, params: "tuple[Any, ...]" = ()) -> "Any":
        return self.conn.execute(self._q(sql), params or None)

    def executemany(self, sql: str, rows: "list[tuple[Any, ...]]") -> None:
        with self.conn.cursor() as cur:
            cur.executemany(self._q(sql), rows)

    @property
    def broken(self) -> bool:
        return bool(self.conn.broken or self.conn.closed)

    def close(self) -> None:
        self.conn.close()


class PostgresStore(SQLStore):
    """Runs kept in a PostgreSQL database (the ``postgres`` extra: psycopg 3).

    Args:
        conninfo: a ``postgresql://user@host:port/db`` URL or a libpq
            conninfo (``"host=... dbname=..."``); the tables are made in the
            schema ``microdag`` on first use.
        codec: ``"json"`` or ``"pickle"`` (trusted data only); default: the
            codec the database records (a new one: ``"json"``).
        timeout: seconds to wait for the server (connecting, reconnecting).

    Raises:
        StoreError: the server cannot be reached, the database keeps a newer
            schema or another codec.
    """

    _BEGIN = "BEGIN"
    _ASCII_SAFE = False  # (NUL is ASCII: every text goes through _pt)
    _t = staticmethod(_pt)
    _s = staticmethod(_ps)
    _texts = staticmethod(_ptexts)

    def __init__(self, conninfo: str, codec: "str | None" = None, timeout: float = 10.0) -> None:
        super().__init__(codec)
        self.conninfo = conninfo
        self.path = public_name(conninfo)
        self.readonly = False
        self._timeout = timeout
        self._pending_blobs: dict[str, bytes] = {}
        self._locked: set[str] = set()  # runs whose session lock this connection holds
        try:
            import psycopg  # (the postgres extra: a clear error where it is not installed)
        except ImportError:
            raise StoreError(
                f"store {self.path!r} needs psycopg: pip install 'microdag[postgres]'"
            ) from None
        self._db = self._connect()
        self.codec = self._schema(codec)

    # -- connecting --------------------------------------------------------------------

    def _connect(self) -> _Connection:
        import psycopg  # (the postgres extra)

        deadline = time.monotonic() + self._timeout
        while True:
            try:
                return _Connection(self.conninfo, self._timeout)
            except psycopg.OperationalError as exc:
                if time.monotonic() >= deadline:
                    raise StoreError(f"cannot connect to store {self.path!r}: {_first_line(exc)}") from None
                time.sleep(0.2)

    def _schema(self, codec: "str | None") -> str:
        """Check the schema (made on first use) and settle the codec."""
        import psycopg  # (the postgres extra)

        db = self._db
        try:
            meta = self._meta(db)
            if meta.get("schema") is None:
                with db.conn.transaction():
                    db.execute(f"SELECT pg_advisory_xact_lock({_KEY})", ("microdag schema",))
                    meta = self._meta(db)  # (another process may have made it meanwhile)
                    if meta.get("schema") is None:
                        db.conn.execute(_TABLES)
                        db.executemany("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                                       [("app", "microdag"), ("schema", str(SCHEMA)), ("codec", codec or "json")])
                        meta = self._meta(db)
        except psycopg.Error as exc:
            db.close()
            raise StoreError(f"cannot open store {self.path!r}: {_first_line(exc)}") from None
        if meta.get("app") != "microdag":
            db.close()
            raise StoreError(f"{self.path!r} has a schema 'microdag' that is not a microdag store")
        schema = int(meta.get("schema", "0"))
        if schema > SCHEMA:
            db.close()
            raise StoreError(
                f"{self.path!r} has store schema {schema}, newer than this microdag's ({SCHEMA}): "
                "upgrade microdag to use it"
            )
        try:
            # Columns added since (no change of data): a keyed map item's key, the
            # seconds a task waited for its pools and rates, a run's pools and rates.
            if len(db.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = 'microdag'"
                              " AND (table_name = 'tasks' AND column_name IN ('key', 'waited')"
                              " OR table_name = 'runs' AND column_name = 'limits')").fetchall()) < 3:
                with db.conn.transaction():
                    db.execute(f"SELECT pg_advisory_xact_lock({_KEY})", ("microdag schema",))
                    db.execute("ALTER TABLE microdag.tasks ADD COLUMN IF NOT EXISTS key TEXT")
                    db.execute("ALTER TABLE microdag.tasks ADD COLUMN IF NOT EXISTS waited DOUBLE PRECISION")
                    db.execute("ALTER TABLE microdag.runs ADD COLUMN IF NOT EXISTS limits TEXT")
        except psycopg.Error as exc:
            db.close()
            raise StoreError(f"cannot open store {self.path!r}: {_first_line(exc)}") from None
        try:
            return settle_codec(codec, meta.get("codec"), self.path)
        except BaseException:
            db.close()
            raise

    @staticmethod
    def _meta(db: _Connection) -> "dict[str, str]":
        if db.execute("SELECT to_regclass('microdag.meta')").fetchone()[0] is None:
            return {}
        return dict(db.execute("SELECT key, value FROM meta").fetchall())

    def _errors(self) -> "tuple[type[BaseException], type[BaseException]]":
        import psycopg  # (the postgres extra)

        return psycopg.Error, psycopg.IntegrityError

    def _lost(self) -> "type[BaseException]":
        import psycopg  # (the postgres extra)

        return psycopg.OperationalError

    def _fresh(self, db: _Connection) -> "_Connection | None":
        """A new connection in place of ``db`` if it dropped (a server restart), else ``None``."""
        if not db.broken:
            return None
        try:
            db.close()
        except Exception:
            pass  # (it is gone already)
        return self._connect()

    def _reconnect(self) -> bool:
        db = self._fresh(self._db)
        if db is None:
            return False
        self._db = db
        for run_id in list(self._locked):  # the claims the dropped session held, taken again where free
            if not self._db.execute(f"SELECT pg_try_advisory_lock({_KEY})", (_run_key(run_id),)).fetchone()[0]:
                self._locked.discard(run_id)
        return True

    # -- blobs ---------------------------------------------------------------------------

    def _put_blob(self, data: bytes) -> str:
        ref = checksum(data)
        self._pending_blobs[ref] = data  # (committed with the first record naming it)
        return ref

    def _has_pending(self) -> bool:
        return bool(self._pending_blobs) or super()._has_pending()

    def _before_writes(self, db: "Any") -> None:
        if self._pending_blobs:  # prune's exclusive lock waits for this transaction
            db.execute(f"SELECT pg_advisory_xact_lock_shared({_KEY})", ("microdag blobs",))
            db.executemany("INSERT INTO blobs VALUES (?, ?) ON CONFLICT (sha) DO NOTHING",
                           list(self._pending_blobs.items()))

    def _upsert_tasks(self, db: "Any", rows: "list[tuple[Any, ...]]") -> None:
        last: dict[tuple[Any, Any, Any], tuple[Any, ...]] = {}
        for row in rows:  # one row per task (a statement may not update a row twice): the last, first seq
            key = row[:3]
            before = last.get(key)
            last[key] = row if before is None else (*row[:3], before[3], *row[4:])
        columns = list(map(list, zip(*last.values())))
        for k in (6, 7, 14):  # the times and waits: an array holds one type (a time saved as an int is a float, as in SQLite)
            if set(map(type, columns[k])) - {float, type(None)}:
                columns[k] = [None if v is None else float(v) for v in columns[k]]
        db.conn.execute(_UPSERT_COLUMNS, columns)

    def _committed(self) -> None:
        self._pending_blobs.clear()

    def _read_blob(self, ref: str, what: str) -> bytes:
        rows = self._read("SELECT data FROM blobs WHERE sha = ?", (ref,))
        if not rows:
            raise StoreError(f"{what} is lost: its blob {ref} is missing from store {self.path!r}")
        data = bytes(rows[0][0])
        if checksum(data) != ref:
            raise StoreError(f"{what} is damaged: blob {ref} in store {self.path!r} does not match its SHA-256")
        return data

    def _drop_blobs(self, db: "Any") -> "Callable[[], None]":
        db.execute(f"SELECT pg_advisory_xact_lock({_KEY})", ("microdag blobs",))
        db.execute(
            "DELETE FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.output_ref = b.sha)"
            " AND NOT EXISTS (SELECT 1 FROM cache c WHERE c.output_ref = b.sha)"
        )
        return lambda: None

    # -- claims --------------------------------------------------------------------------

    def _lock_owner(self, db: "Any", run_id: str) -> None:
        db.execute(f"SELECT pg_advisory_xact_lock({_KEY})", ("microdag owner " + _pt(run_id),))

    def begin(self, info: "RunInfo") -> None:
        check_run_id(info.id)
        with self._lock:
            self._take_lock(info.id)
            try:
                super().begin(info)
            except BaseException:
                self._let_go(info.id)
                raise

    def _take_lock(self, run_id: str) -> bool:
        """Take run ``run_id``'s session lock if it is free; whether this connection holds it."""
        if run_id not in self._locked:
            got = self._retrying(lambda: self._db.execute(f"SELECT pg_try_advisory_lock({_KEY})",
                                                          (_run_key(run_id),)).fetchone()[0])
            if not got:
                return False
            self._locked.add(run_id)
        return True

    def _let_go(self, run_id: str) -> None:
        if run_id in self._locked:
            self._locked.discard(run_id)
            if not self._db.broken:
                self._db.execute(f"SELECT pg_advisory_unlock({_KEY})", (_run_key(run_id),))

    def claim(self, run_id: str, force: bool = False) -> None:
        self.run_info(run_id)
        token = new_owner()
        key = _pt(run_id)
        with self._lock:
            ours = run_id in self._claims  # (a run this object holds is not free)

            def take(db: "Any") -> "tuple[str | None, bool]":
                self._lock_owner(db, run_id)
                row = db.execute("SELECT owner FROM owners WHERE run_id = ?", (key,)).fetchone()
                free = not ours and self._take_lock(run_id)
                if free or force:
                    db.execute(OWNERS, (key, token))
                return (None if row is None else row[0]), free or force

            before, took = self._writing(take)
        if not took:
            raise StoreError(
                f"run {run_id!r} is live in another process or run ({before}); wait for it, or "
                "resume it with force if that process is gone"
            )
        self._claims[run_id] = token

    def release(self, run_id: str) -> None:
        try:
            super().release(run_id)
        finally:
            with self._lock:
                self._let_go(run_id)

    def live(self, run_id: str) -> bool:
        """On the work queue, or its claim's session lock held by a connection
        of any machine (``pg_locks``: the lock is looked at, never taken)."""
        if self.shared(run_id):
            return True
        rows = self._read(
            f"SELECT count(*) FROM pg_locks, (SELECT {_KEY} AS k) AS run WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = ((run.k >> 32) & 4294967295)::oid AND objid = (run.k & 4294967295)::oid"
            " AND objsubid = 1", (_run_key(run_id),))
        return bool(rows[0][0])

    # -- the rest --------------------------------------------------------------------------

    def queue(self) -> "PostgresQueue":
        from ._postgres_queue import PostgresQueue  # (runs shared with workers only)

        return PostgresQueue(self)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._locked.clear()

    def __repr__(self) -> str:
        return f"PostgresStore({self.path!r})"


def _run_key(run_id: str) -> str:
    return "microdag run " + str(_pt(run_id))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
