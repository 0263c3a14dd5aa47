"""Length-prefixed messages on a file descriptor (every channel in the sandbox; both sides).

A frame is a 4-byte big-endian length and that many bytes. The host and the supervisor exchange
JSON bodies (:func:`send_json`, :func:`recv_json`); the judge and the candidate exchange the
binary bodies of :mod:`gcop_env.sandbox.wire.codec`.
"""

import json
import os
import struct

_HEADER = struct.Struct(">I")


def write_all(fd, data):
    """Write every byte of ``data`` to ``fd`` (a blocking descriptor)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_exact(fd, n):
    """``n`` bytes from ``fd``, or None at end of file before them."""
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def send_frame(fd, body):
    write_all(fd, _HEADER.pack(len(body)) + body)


def recv_frame(fd, limit):
    """The next frame's body from ``fd``; None at end of file (before or inside the frame);
    ValueError for a frame longer than ``limit`` bytes (nothing of it is read)."""
    header = read_exact(fd, 4)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > limit:
        raise ValueError("a frame of %d bytes, over the limit of %d" % (size, limit))
    return read_exact(fd, size)


def send_json(fd, message):
    body = json.dumps(message).encode("utf-8")
    write_all(fd, _HEADER.pack(len(body)) + body)


def recv_json(fd):
    """The next JSON message on ``fd``, or None at end of file."""
    header = read_exact(fd, 4)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    body = read_exact(fd, size)
    if body is None:
        return None
    return json.loads(body.decode("utf-8"))
