"""POST /predict with a small JSON body, answered in front of FastAPI.

Once the model runs from its exported graph, a one-row request cost the server ~0.4 ms of
CPU, most of it the framework: its middleware (telemetry, body limits, errors), the Request
object, routing, the query parsed into a dependency (py-spy under wrk at 64 connections).
`ServeApp` answers the requests that are the bulk of a busy server's work — JSON, no query,
a declared length up to HOT_BYTES — before all of that, reading them within the same limits
and answering with the same JSON and the same errors; everything else (uploads, ?explain=,
large bodies, other paths) goes to FastAPI, whose OpenAPI schema still describes /predict.
"""
from __future__ import annotations

from typing import AsyncIterator, Awaitable, Callable

import orjson
from fastapi import FastAPI

from scaletrain.serve.http import error_answer, read_bounded
from scaletrain.serve.limits import Limits

HOT_BYTES = 64 * 1024  # larger bodies are parsed off the event loop by the app (serve/app.py)


class ClientGone(Exception):
    """The client closed the connection before its body arrived: nothing to answer."""


class ServeApp(FastAPI):
    """FastAPI with `hot(body) -> answer` in front, for the small JSON requests to POST /predict."""

    hot: Callable[[bytes], Awaitable[dict]] | None = None
    limits: Limits = Limits()

    async def __call__(self, scope, receive, send) -> None:
        length = _hot_length(scope) if self.hot is not None else None
        if length is None:
            await super().__call__(scope, receive, send)
            return
        try:
            status, answer = 200, await self.hot(await read_bounded(_chunks(receive), length, self.limits))
        except ClientGone:
            return
        except Exception as exc:  # noqa: BLE001 - every failure answered as the app answers it (error_answer)
            status, answer = error_answer(exc)
        body = orjson.dumps(answer)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _hot_length(scope) -> str | None:
    """The declared length of a request this path answers, else None."""
    if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST" or scope["query_string"]:
        return None
    kind = length = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            kind = value.split(b";")[0].strip().lower()
        elif name == b"content-length":
            length = value.decode("latin-1")
    if kind != b"application/json" or length is None or not length.isdigit() or int(length) > HOT_BYTES:
        return None
    return length


async def _chunks(receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        yield message.get("body", b"")
        if not message.get("more_body"):
            return
