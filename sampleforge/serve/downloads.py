"""Sending a stored file that is already open: HTTP range requests (RFC 9110 §14), HEAD and validators.

Starlette's ``FileResponse`` handles ranges but opens its file by path while it answers; the download routes
open their files first (a DELETE racing a download gives 410 or the whole file, never a cut one), so this
module answers ranges from the open handle instead:

- no ``Range`` (or one that is ignored): ``200`` with the whole file and ``Accept-Ranges: bytes``;
- one range, ``bytes=first-last``, ``bytes=first-`` or the suffix ``bytes=-N``: ``206 Partial Content`` with
  ``Content-Range: bytes first-last/size`` (a ``last`` past the end is the end);
- a range starting at or past the end, or ``bytes=-0``: ``416`` with ``Content-Range: bytes */size``;
- several ranges: ``200`` with the whole file (RFC 9110 lets a server ignore ``Range``); so are another unit,
  a malformed header, ``last < first``, and an ``If-Range`` that does not match the file's ``ETag`` or
  ``Last-Modified`` (a file changed since the client's first part restarts from byte 0);
- ``HEAD``: the headers a ``GET`` without ``Range`` gets, no body (RFC 9110: ``Range`` is for GET only).
"""

from __future__ import annotations

import os
import re
from email.utils import formatdate
from typing import IO

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from sampleforge.serve.results import read_chunks

_SPEC = re.compile(r"([0-9]*)-([0-9]*)", re.ASCII)
_HUGE = 1 << 62  # any offset with 19+ digits: beyond every file (int() refuses very long digit strings)


class Unsatisfiable(Exception):
    """The range starts at or past the end of the file (or asks for its last 0 bytes)."""


def _offset(digits: str) -> int:
    return int(digits) if len(digits) < 19 else _HUGE


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The one span ``(start, stop)`` (stop exclusive) that a ``Range`` header asks of a ``size``-byte file, or
    None for the whole file (another unit, a syntax error, ``last < first``, several ranges). Raises
    Unsatisfiable when the range lies past the end."""
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in specs:
        return None
    m = _SPEC.fullmatch(specs.strip())
    if m is None or m[1] == m[2] == "":
        return None
    if m[1] == "":  # suffix: the last N bytes
        n = _offset(m[2])
        if n == 0 or size == 0:
            raise Unsatisfiable()
        return max(0, size - n), size
    start = _offset(m[1])
    if m[2] and _offset(m[2]) < start:
        return None
    if start >= size:
        raise Unsatisfiable()
    return start, size if m[2] == "" else min(_offset(m[2]) + 1, size)


def _if_range_matches(value: str, etag: str, last_modified: str) -> bool:
    """``If-Range`` holds the file's strong ETag or its exact Last-Modified date (weak tags never match)."""
    value = value.strip()
    return value == etag if value.startswith('"') else value == last_modified


def send_open_file(request: Request, f: IO[bytes], media_type: str, headers: dict[str, str]) -> Response:
    """Answer ``request`` (GET or HEAD) with the open file ``f`` (closed once sent, or at once for HEAD/416),
    honouring ``Range`` and ``If-Range`` as the module says; ``headers`` go on every answer (e.g.
    Content-Disposition)."""
    st = os.fstat(f.fileno())
    size = st.st_size
    etag = f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{size:x}"'  # result files never change in place: rewritten = new inode
    last_modified = formatdate(st.st_mtime, usegmt=True)
    out = {**headers, "Accept-Ranges": "bytes", "ETag": etag, "Last-Modified": last_modified}
    span = None
    wanted, if_range = request.headers.get("range"), request.headers.get("if-range")
    if request.method == "GET" and wanted is not None and (
            if_range is None or _if_range_matches(if_range, etag, last_modified)):
        try:
            span = byte_range(wanted, size)
        except Unsatisfiable:
            f.close()
            return JSONResponse(status_code=416, headers={"Accept-Ranges": "bytes", "Content-Range": f"bytes */{size}"},
                                content={"detail": f"range {wanted[:100]!r} not satisfiable: the file has {size} bytes"})
    start, stop = span if span is not None else (0, size)
    out["Content-Length"] = str(stop - start)
    if span is not None:
        out["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    status = 206 if span is not None else 200
    if request.method == "HEAD":
        f.close()
        return Response(status_code=status, headers=out, media_type=media_type)
    return StreamingResponse(read_chunks(f, start, stop), status_code=status, media_type=media_type, headers=out)
