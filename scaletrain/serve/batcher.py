"""Concurrent requests micro-batched into one pass: the requests that arrived while the last
batch was being computed go together (up to `max_rows` rows; `wait_ms` > 0 also waits that
long for more — by default none, so a lone request is never delayed); requests of the same
columns (or image shape) are concatenated, checked, encoded and predicted once, and each gets
its own share back.

Encoding is batched too, not just the forward pass: for single-row requests the per-call cost
of the table transform (pandas) is ~5 ms of the ~5.5 ms a request takes in process, so batching
only the model would leave a server at ~100 requests/s on 2 cores.

A request fails alone: each was validated before it joined, and if a batch of several still
fails, its requests are run again one by one so that each gets its own answer (measured before
this: one client sending a lone surrogate turned 316 of 400 other clients' requests into 500s)."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable

from scaletrain.data.sources import Source, batch_key, concat_sources
from scaletrain.errors import ScaletrainError
from scaletrain.serve.limits import RequestError

log = logging.getLogger("scaletrain.serve")


@dataclass
class Pending:
    source: Source | list  # a source, or validated records (a batch's are concatenated)
    future: asyncio.Future

    @property
    def rows(self) -> int:
        return len(self.source)

    @property
    def key(self) -> tuple:
        return ("records",) if isinstance(self.source, list) else batch_key(self.source)


class MicroBatcher:
    """`await batcher.submit(source)` -> process(source)'s answer for that request's rows.

    `process(source or records) -> (values, probabilities or None, findings)` runs in a worker
    thread on the concatenated sources (or records), and `split(answer, start, end)` cuts out
    one request's part there too."""

    def __init__(self, process: Callable, split: Callable, max_rows: int = 256, wait_ms: float = 0.0,
                 inline_rows: int = 0):
        self.process, self.split = process, split
        self.max_rows, self.wait = max_rows, wait_ms / 1000
        # a lone request of validated records up to this many rows is predicted on the event loop:
        # from the exported graph that takes ~0.1 ms, less than a worker thread's hand-off (one
        # connection: p50 0.41 -> 0.34 ms, 2,380 -> 2,852 requests/s); concurrent ones keep the
        # thread, so that parsing the next requests overlaps the model
        self.inline_rows = inline_rows
        self.queue: asyncio.Queue[Pending] = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.calls = self.rows = 0  # for /health: how well requests are being batched
        self.rows_in_flight = 0  # for /health: rows being predicted now (a busy server, and the batching test)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def submit(self, source: Source | list):
        pending = Pending(source, asyncio.get_running_loop().create_future())
        await self.queue.put(pending)
        return await pending.future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.wait
            while sum(p.rows for p in batch) < self.max_rows:
                timeout = deadline - loop.time()
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), timeout) if timeout > 0
                                 else self.queue.get_nowait())
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
            groups: dict[tuple, list[Pending]] = {}
            for p in batch:
                groups.setdefault(p.key, []).append(p)
            for group in groups.values():
                await self._run(group)
            del batch, groups, group, p  # while idle, hold no request's rows (a burst's memory goes back)

    def _answers(self, group: list[Pending]) -> list:
        """Each request's answer (or the exception refusing its rows), computed in a worker
        thread: building 100,000 rows' answers on the event loop would stall it for ~0.2 s."""
        if isinstance(group[0].source, list):
            answer = self.process([r for p in group for r in p.source])
        else:
            answer = self.process(concat_sources([p.source for p in group]))
        answers, start = [], 0
        for p in group:
            try:
                answers.append(self.split(answer, start, start + p.rows))
            except Exception as exc:  # this request's rows refused (strict), the others answered
                answers.append(exc)
            start += p.rows
        return answers

    async def _run(self, group: list[Pending]) -> None:
        try:  # in a worker thread (the event loop keeps accepting requests meanwhile), or inline when small
            lone = len(group) == 1 and group[0].rows <= self.inline_rows and isinstance(group[0].source, list)
            if lone:
                answers = self._answers(group)
            else:
                self.rows_in_flight = sum(p.rows for p in group)
                try:
                    answers = await asyncio.to_thread(self._answers, group)
                finally:
                    self.rows_in_flight = 0
        except Exception as exc:
            if len(group) > 1:  # one request's rows spoiled the batch: each one alone gets its own answer
                for p in group:
                    await self._run([p])
                return
            self._fail(group[0], exc)
            return
        self.calls, self.rows = self.calls + 1, self.rows + sum(p.rows for p in group)
        for p, answer in zip(group, answers):
            if p.future.done():  # a client that went away
                continue
            if isinstance(answer, Exception):
                p.future.set_exception(answer)
            else:
                p.future.set_result(answer)

    @staticmethod
    def _fail(pending: Pending, exc: Exception) -> None:
        """A request that fails on its own: its rows are what the model cannot take (422); the
        server's log keeps the details of anything unforeseen."""
        if pending.future.done():
            return
        if not isinstance(exc, (RequestError, ScaletrainError)):
            log.warning("a request's rows could not be predicted", exc_info=exc)
            exc = RequestError(422, f"these rows could not be predicted ({type(exc).__name__}: {str(exc)[:200]}); check "
                                    "their values against GET /metadata")
        pending.future.set_exception(exc)
