"""What every app of `scaletrain serve` shares: errors as JSON, and a request body read within
its byte and time limits."""
from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from scaletrain.errors import ScaletrainError
from scaletrain.serve.limits import Limits, RequestError

log = logging.getLogger("scaletrain.serve")


def answer_errors(app: FastAPI) -> None:
    """Errors as JSON `{"error": ...}`: a RequestError with its status, a ScaletrainError as 422,
    anything else as a 500 that says so (the traceback goes to the server's log only)."""
    @app.exception_handler(RequestError)
    @app.exception_handler(ScaletrainError)
    @app.exception_handler(Exception)
    async def _error(request: Request, exc: Exception):
        status, answer = error_answer(exc)
        return JSONResponse(answer, status_code=status)

    @app.exception_handler(HTTPException)  # starlette's own (a malformed multipart body, an unknown path)
    async def _http_error(request: Request, exc: HTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return JSONResponse({"error": "; ".join(str(e.get("msg")) for e in exc.errors()[:5])}, status_code=422)


def error_answer(exc: Exception) -> tuple[int, dict]:
    """(status, JSON body) of a request that failed with `exc`."""
    if isinstance(exc, RequestError):
        return exc.status, {"error": exc.message}
    if isinstance(exc, ScaletrainError):
        return 422, {"error": str(exc)}
    log.error("predict failed", exc_info=exc)
    return 500, {"error": f"internal error ({type(exc).__name__}); the server's log has the details"}


async def body_of(request: Request, limits: Limits) -> bytes:
    """A FastAPI request's body, read within the limits (read_bounded)."""
    return await read_bounded(request.stream(), request.headers.get("content-length"), limits)


async def read_bounded(chunks: AsyncIterator[bytes], declared: str | None, limits: Limits) -> bytes:
    """A request body from its chunks, refused with 413 past the byte limit (`declared` in its
    Content-Length, or as it streams in) and with 408 when it takes longer than the read limit
    to arrive (a slow client holds a connection, not the server)."""
    if declared and declared.isdigit() and int(declared) > limits.body_bytes:
        raise RequestError(413, f"request body of {int(declared):,} bytes is over the limit of {limits.body_bytes:,} "
                                "(--max-body-mb); send fewer rows per request")
    parts, size = [], 0
    try:
        async with asyncio.timeout(limits.read_seconds):
            async for chunk in chunks:
                size += len(chunk)
                if size > limits.body_bytes:
                    raise RequestError(413, f"request body over the limit of {limits.body_bytes:,} bytes (--max-body-mb); "
                                            "send fewer rows per request")
                parts.append(chunk)
    except TimeoutError:
        raise RequestError(408, f"the request body did not arrive within {limits.read_seconds:g} s "
                                "(--read-timeout)") from None
    return b"".join(parts)
