"""Internal: how much of a request the dashboard reads.

How much of a request the dashboard reads: bodies up to :data:`MAX_BODY` bytes however they
are sent (with a Content-Length or in chunks), JSON nested up to :data:`MAX_JSON_DEPTH` levels.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException

from jobkit.dashboard.security import ASGIApp, Message, Receive, Scope, Send

#: The largest request body the dashboard reads (a form or a JSON API call), in bytes.
MAX_BODY = 256 * 1024
#: The deepest JSON the dashboard parses: a body's or a form field's (params themselves may
#: nest 64 levels, :data:`jobkit.limits.MAX_DEPTH`; the factory says so per parameter).
MAX_JSON_DEPTH = 100


class BodyTooLarge(HTTPException):
    """A request body over :data:`MAX_BODY`: answered 413 by the app's error handler."""

    def __init__(self) -> None:
        super().__init__(413, f"the body is over {MAX_BODY} bytes")


class BodyLimit:
    """ASGI middleware: no request body over :data:`MAX_BODY` bytes is read.

    ASGI middleware: 413 for a body declared over :data:`MAX_BODY` before anything reads it;
    a body sent without a Content-Length (chunked) is counted as it is read, and reading it
    past the limit raises :class:`BodyTooLarge` in whatever was reading it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = _refusal(scope)
            if refused is not None:
                await send({"type": "http.response.start", "status": refused[0],
                            "headers": [(b"content-type", b"text/plain"),
                                        (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": refused[1].encode()})
                return
            receive = _counted(receive)
        await self.app(scope, receive, send)


def _refusal(scope: Scope) -> tuple[int, str] | None:
    """The status and reason to refuse a request for its declared length, or ``None``."""
    declared = [value for name, value in scope.get("headers", []) if name == b"content-length"]
    if len(declared) > 1 or (declared and not declared[0].isdigit()):
        return 400, "a single Content-Length of digits is expected"
    if declared and int(declared[0]) > MAX_BODY:
        return 413, f"the body is over {MAX_BODY} bytes"
    return None


def _counted(receive: Receive) -> Receive:
    """``receive``, raising :class:`BodyTooLarge` once the body read passes :data:`MAX_BODY`."""
    read = 0

    async def counted() -> Message:
        nonlocal read
        message = await receive()
        if message["type"] == "http.request":
            read += len(message.get("body", b""))
            if read > MAX_BODY:
                raise BodyTooLarge
        return message

    return counted


def has_body(headers: Any) -> bool:
    """Whether a request sends a body.

    A Content-Length other than 0, or any Transfer-Encoding (``headers`` as Starlette's)."""
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


class TooDeep(ValueError):
    """JSON nested deeper than :data:`MAX_JSON_DEPTH` levels."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")


def load_json(text: str | bytes, what: str) -> Any:
    """``text`` parsed as JSON, refused when it nests too deep.

    ``text`` parsed as JSON; ``TooDeep`` (naming ``what``) when it nests deeper than
    :data:`MAX_JSON_DEPTH` levels, ``ValueError`` when it is not JSON.

    The depth is checked before parsing, without recursion: Python's parser recurses once per
    level, so 60,000 levels would end in a ``RecursionError``."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH and _depth(data) > MAX_JSON_DEPTH:
        raise TooDeep(what)
    return json.loads(text)


def _depth(data: bytes) -> int:
    """How deeply the arrays and objects of JSON text nest.

    How deeply the arrays and objects of JSON text nest (brackets in strings not counted;
    text that is not JSON gets some number, and the parser its own error)."""
    deepest = depth = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest
