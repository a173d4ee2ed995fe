"""The process pool's pipe to its workers: messages pickled once, framed, read and written whole.

A message is pickled with protocol 5 and ``multiprocessing``'s reducers, as
``Connection.send`` would pickle it (:func:`_pickler`, one pickler kept for
every call), and framed as ``Connection`` frames it (a big-endian length,
then the bytes), so either side may be a plain ``Connection``.  On POSIX
both sides write and read the pipe's descriptor themselves, one system call
each way for a small message (:func:`_sender`, :func:`_receiver`);
elsewhere they use ``send_bytes`` and ``recv_bytes``.  One message is in
flight each way at most (a worker runs one attempt at a time), so a read
never takes in part of the next one.  What the messages hold is
``process``'s (see its module docs).
"""

import io
import os
import struct
from multiprocessing.reduction import ForkingPickler

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection
    from typing import Any

__all__ = ["_pickler", "_receiver", "_sender"]

#: ``Connection``'s framing: the length of what follows (-1: an 8-byte length follows).
_LEN = struct.Struct("!i")
_BIG = struct.Struct("!Q")


def _pickler() -> "Callable[[Any], bytes]":
    """``pickle.dumps`` with protocol 5 and ``multiprocessing``'s reducers, as
    ``ForkingPickler.dumps`` pickles, through one ``ForkingPickler`` kept for
    every call (which builds its reducer table once, not at every call; it
    holds nothing between calls)."""
    buf = io.BytesIO()
    pickler = ForkingPickler(buf, 5)

    def dumps(obj: "Any") -> bytes:
        try:
            pickler.dump(obj)
            return buf.getvalue()
        finally:
            pickler.clear_memo()
            buf.seek(0)
            buf.truncate()

    return dumps


def _sender(conn: "Connection") -> "Callable[[bytes], None]":
    """What sends a message down ``conn``: on POSIX, ``os.write`` of its
    descriptor in ``Connection``'s framing (a big-endian length, then the
    bytes: one write for a small message); elsewhere ``send_bytes``."""
    if os.name != "posix":
        return conn.send_bytes
    fd = conn.fileno()
    write = os.write
    pack = _LEN.pack

    def send(data: bytes) -> None:
        n = len(data)
        if n <= 16384:
            data = pack(n) + data
            done = write(fd, data)
            if done < n + 4:  # (a signal cut the write short)
                _write_all(fd, data, done)
            return
        _write_all(fd, pack(n) if n <= 0x7FFFFFFF else pack(-1) + _BIG.pack(n), 0)
        _write_all(fd, memoryview(data), 0)

    return send


def _write_all(fd: int, data: "bytes | memoryview", done: int) -> None:
    view = memoryview(data)
    while done < len(view):
        done += os.write(fd, view[done:])


def _receiver(conn: "Connection") -> "Callable[[], bytes | bytearray | memoryview]":
    """What reads the next message from ``conn`` (``EOFError`` at its end):
    on POSIX one ``os.read`` for a small message, in ``Connection``'s framing;
    elsewhere ``recv_bytes``.  One message is in flight each way at most (a
    worker runs one attempt at a time), so a read never takes in part of the
    next one."""
    if os.name != "posix":
        return conn.recv_bytes
    fd = conn.fileno()
    read = os.read
    unpack = _LEN.unpack_from

    def recv() -> "bytes | bytearray | memoryview":
        data = read(fd, 65536)
        if len(data) > 4 and unpack(data)[0] == len(data) - 4:
            return memoryview(data)[4:]
        return _read_rest(fd, data)

    return recv


def _read_rest(fd: int, data: bytes) -> bytearray:
    """The message that ``data`` starts (a big one, or a read cut short)."""
    head = bytearray(data)
    while len(head) < 4 or (len(head) < 12 and _LEN.unpack_from(head)[0] == -1):
        more = os.read(fd, 12 - len(head) if len(head) >= 4 else 4 - len(head))
        if not more:
            raise EOFError
        head += more
    size = _LEN.unpack_from(head)[0]
    start = 4
    if size == -1:
        size = _BIG.unpack_from(head, 4)[0]
        start = 12
    out = bytearray(size)
    got = len(head) - start
    out[:got] = head[start:]
    view = memoryview(out)
    while got < size:
        n = os.readv(fd, [view[got:]])
        if not n:
            raise EOFError
        got += n
    return out
