"""The HTTP/1.1 protocol ``serve`` runs: uvicorn's httptools protocol, except that a request
it cannot parse is answered as the API answers bad input, with a JSON problem body.

uvicorn answers such requests itself, before any application code runs, with a plain-text
"Invalid HTTP request received." (a malformed or duplicated Content-Length, a raw non-ASCII
path, control characters in a header: found by fuzzing). Clients then get one error format.
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

_BODY = orjson.dumps(
    {
        "type": "urn:media-service:problem:bad_request",
        "status": 400,
        "code": "bad_request",
        "title": "Bad request",
        "detail": "the request is not valid HTTP/1.1",
    }
)


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's ``httptools`` protocol with a JSON problem for unparseable requests."""

    def send_400_response(self, msg: str) -> None:
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/problem+json\r\n",
                b"x-content-type-options: nosniff\r\n",
                b"content-length: " + str(len(_BODY)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                _BODY,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
